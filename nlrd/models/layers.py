"""Building blocks shared by the models."""

from __future__ import annotations

import torch
from torch import nn

#: Half-width of the latent boxes: encoders end in ``LATENT_BOUND * tanh(x / LATENT_BOUND)``.
LATENT_BOUND = 10.0


def bounded(x: torch.Tensor) -> torch.Tensor:
    """Squash to ``(-10, 10)`` while staying near identity around 0."""
    return LATENT_BOUND * torch.tanh(x / LATENT_BOUND)


def unbounded(z: torch.Tensor) -> torch.Tensor:
    """The inverse of ``bounded`` (clamped inside the box): where a latent was before the squash."""
    limit = 1.0 - 1e-6
    return LATENT_BOUND * torch.atanh((z / LATENT_BOUND).clamp(-limit, limit))


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers of the given widths with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)

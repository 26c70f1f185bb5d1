"""Projection head for the contrastive losses, and the encoder feature it may read instead of the latent.

InfoNCE compares unit vectors, not raw latents.  The paper's head reads the encoder's feature before the latent
(the official code's first fully connected feature of the embedding branch), so the contrastive loss shapes that
feature rather than the 32 numbers the decoder reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """``(..., in_dim)`` -> ``(..., out_dim)`` L2-normalised, through one hidden layer."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


def _last_layer(encoder: nn.Module) -> nn.Linear:
    """The linear layer that maps an image encoder's feature to its latent: the last module of its ``head``."""
    last = getattr(encoder, "head", None)
    last = last[-1] if isinstance(last, nn.Sequential) and len(last) else None
    if not isinstance(last, nn.Linear):
        raise ValueError(f"{type(encoder).__name__} has no head ending in a linear layer: no feature before its latent")
    return last


def feature_dim(encoder: nn.Module) -> int:
    """Width of the feature ``latent_and_feature`` returns for ``encoder``."""
    return _last_layer(encoder).in_features


def latent_and_feature(encoder: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``encoder(images)`` and, from the same pass, the feature its head's last linear layer maps to the latent
    (``small_cnn``: its 256-d hidden layer; ``resnet50``: the pooled ``layer3`` map), so the latent is computed
    exactly as ``encoder(images)`` computes it and gradients reach the encoder through both."""
    captured: list[torch.Tensor] = []
    hook = _last_layer(encoder).register_forward_pre_hook(lambda _layer, args: captured.append(args[0]))
    try:
        latent = encoder(images)
    finally:
        hook.remove()
    return latent, captured[0]

"""Relation transformer: maps the latent of an anchor to the latent of its related counterpart."""

from __future__ import annotations

import torch
from torch import nn

from nlrd.models.layers import bounded, mlp, unbounded


class RelationTransformer(nn.Module):
    """``T_r``: ``(..., dim)`` -> ``(..., dim)`` in ``(-10, 10)``, an MLP trained on mocap and then frozen.

    ``residual``: learn the change ``T_r(z) = bounded(unbounded(z) + f(z))`` with ``f`` starting at 0, so the
    transformer starts as the identity.  Most relations move a pose or a clip a little (a 5° rotation, a slower
    replay): a plain MLP must first learn to copy its input before it can learn that small change, and with the
    stage budgets here it closes only part of the gap (``nlrd.quality``).  The paper's transformer is a plain MLP.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (1024, 512), residual: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.residual = residual
        self.net = mlp((dim, *hidden, dim))
        if residual:
            last = self.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if self.residual:
            return bounded(unbounded(latent) + self.net(latent))
        return bounded(self.net(latent))

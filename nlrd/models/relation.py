"""Relation transformer: maps the latent of an anchor to the latent of its related counterpart."""

from __future__ import annotations

import torch
from torch import nn

from nlrd.models.layers import bounded, mlp


class RelationTransformer(nn.Module):
    """``T_r``: ``(..., dim)`` -> ``(..., dim)`` in ``(-10, 10)``, an MLP trained on mocap and then frozen."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (1024, 512)) -> None:
        super().__init__()
        self.dim = dim
        self.net = mlp((dim, *hidden, dim))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return bounded(self.net(latent))

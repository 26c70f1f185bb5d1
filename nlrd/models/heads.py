"""Projection head for the contrastive losses: InfoNCE compares unit vectors, not raw latents."""

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

"""Pose prior: an adversarial auto-encoder between 3D poses and a bounded 32-d latent box.

Every point of the box ``(-10, 10)^latent_dim`` should decode to a plausible pose, which is what lets the
later stages (motion embedding, relation transformers, image encoder) work purely in latent space.
"""

from __future__ import annotations

import torch
from torch import nn

from nlrd import skeleton
from nlrd.models.layers import bounded, mlp


class PosePrior(nn.Module):
    """Encoder ``E_p`` (pose -> z) and decoder ``D_p`` (z -> pose with canonical bone lengths)."""

    def __init__(self, latent_dim: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        n_in = skeleton.NUM_BONES * 3
        self.encoder = mlp((n_in, hidden, hidden, latent_dim))
        self.decoder = mlp((latent_dim, hidden, hidden, n_in))

    def encode(self, joints_mm: torch.Tensor) -> torch.Tensor:
        """``(..., 17, 3)`` poses in mm -> ``(..., latent_dim)`` latents in ``(-10, 10)``.

        Only bone directions enter, so the code ignores bone lengths and global scale.
        """
        directions = skeleton.to_bone_directions(joints_mm)
        return bounded(self.encoder(directions.flatten(-2)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., latent_dim)`` latents -> ``(..., 17, 3)`` root-relative poses in mm, canonical bone lengths."""
        directions = self.decoder(z).unflatten(-1, (skeleton.NUM_BONES, 3))
        return skeleton.from_bone_directions(directions)

    def forward(self, joints_mm: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``D_p(E_p(pose))``, ``(..., 17, 3)`` mm."""
        return self.decode(self.encode(joints_mm))


class PoseDiscriminator(nn.Module):
    """Real-vs-decoded critic in pose space: one whole-body logit per pose.

    It sees bone directions, not positions, so it cannot tell decoded poses (canonical bone lengths)
    from real ones (any lengths) by proportions alone.
    """

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = mlp((skeleton.NUM_BONES * 3, hidden, hidden, 1))

    def forward(self, joints_mm: torch.Tensor) -> torch.Tensor:
        """``(..., 17, 3)`` poses in mm -> ``(...,)`` logits (high = real)."""
        return self.net(skeleton.to_bone_directions(joints_mm).flatten(-2)).squeeze(-1)

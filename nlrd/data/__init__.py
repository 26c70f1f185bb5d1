"""Data types shared by the proxy world and the real-data loaders."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ClipSet:
    """Video clips and, when labelled, their poses.

    ``frames``: ``(N, T, 3, H, W)`` uint8 RGB.  ``poses``: ``(N, T, 17, 3)`` float32 root-relative mm,
    or ``None`` for unlabelled data.  ``fps``: frames per second of the clips.
    """

    frames: torch.Tensor
    poses: torch.Tensor | None = None
    fps: float = 30.0

    def __post_init__(self) -> None:
        if self.frames.dtype != torch.uint8 or self.frames.dim() != 5 or self.frames.shape[2] != 3:
            raise ValueError(
                f"frames must be uint8 (N, T, 3, H, W), got {self.frames.dtype} {tuple(self.frames.shape)}"
            )
        if self.poses is not None and tuple(self.poses.shape) != (*self.frames.shape[:2], 17, 3):
            raise ValueError(f"poses must be (N, T, 17, 3) matching frames, got {tuple(self.poses.shape)}")

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def clip_len(self) -> int:
        return self.frames.shape[1]

    def images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Clips as float images in [0, 1], ``(n, T, 3, H, W)``."""
        frames = self.frames if index is None else self.frames[index]
        return frames.float() / 255.0

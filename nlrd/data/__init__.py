"""Data types shared by the proxy world and the real-data loaders, and the loaders themselves.

Mocap (BVH, Human3.6M, and the pose tracks of 3DHP/3DPW) becomes :class:`PoseSequence`, and
:func:`stack_windows` turns many of them into the ``(N, L, 17, 3)`` float32 mm tensor the method trains on (the shape
of the proxy world's ``World.mocap``).  Labelled videos become :class:`ClipSet`.  Every loader raises
:class:`DatasetError` with the file and what was expected.  :class:`DataConfig` (``nlrd.data.sources``) says which
source, proxy or real, fills each part of the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nlrd.data.bvh import load_bvh, load_bvh_folder
from nlrd.data.errors import DatasetError
from nlrd.data.h36m import load_h36m_clips, load_h36m_poses
from nlrd.data.images import read_frames, square_box
from nlrd.data.mpi_inf_3dhp import EVAL_JOINTS_3DHP, VALID_JOINTS_3DHP, load_3dhp_clips, load_3dhp_test
from nlrd.data.pw3d import load_3dpw, load_3dpw_clips
from nlrd.data.safe_pickle import restricted_load
from nlrd.data.sequence import PoseSequence, stack_windows
from nlrd.data.sources import DataConfig, DataConfigError, DataSource

__all__ = [
    "EVAL_JOINTS_3DHP", "VALID_JOINTS_3DHP", "ClipSet", "DataConfig", "DataConfigError", "DataSource",
    "DatasetError", "PoseSequence", "load_3dhp_clips",
    "load_3dhp_test", "load_3dpw", "load_3dpw_clips", "load_bvh", "load_bvh_folder", "load_h36m_clips",
    "load_h36m_poses", "read_frames", "restricted_load", "square_box", "stack_windows",
]  # fmt: skip


@dataclass
class ClipSet:
    """Video clips and, when labelled, their poses.

    ``frames``: ``(N, T, 3, H, W)`` uint8 RGB.  ``poses``: ``(N, T, 17, 3)`` float32 root-relative mm,
    or ``None`` for unlabelled data.  ``fps``: frames per second of the clips.  ``eval_joints``: the joints whose
    ground truth is real and comparable (MPI-INF-3DHP has no feet: :data:`EVAL_JOINTS_3DHP`), or ``None`` for all 17;
    evaluation passes it to ``nlrd.metrics.evaluate_protocols`` as its joint subset.
    """

    frames: torch.Tensor
    poses: torch.Tensor | None = None
    fps: float = 30.0
    eval_joints: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.frames.dtype != torch.uint8 or self.frames.dim() != 5 or self.frames.shape[2] != 3:
            raise ValueError(
                f"frames must be uint8 (N, T, 3, H, W), got {self.frames.dtype} {tuple(self.frames.shape)}"
            )
        if self.poses is not None and tuple(self.poses.shape) != (*self.frames.shape[:2], 17, 3):
            raise ValueError(f"poses must be (N, T, 17, 3) matching frames, got {tuple(self.poses.shape)}")
        if self.eval_joints is not None:
            self.eval_joints = tuple(int(j) for j in self.eval_joints)
            if not self.eval_joints or len(set(self.eval_joints)) != len(self.eval_joints):
                raise ValueError(f"eval_joints must be distinct joint indices, got {self.eval_joints}")
            if not all(0 <= j < 17 for j in self.eval_joints):
                raise ValueError(f"eval_joints must index the 17 joints, got {self.eval_joints}")

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def clip_len(self) -> int:
        return self.frames.shape[1]

    def images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Clips as float images in [0, 1], ``(n, T, 3, H, W)``."""
        frames = self.frames if index is None else self.frames[index]
        return frames.float() / 255.0

"""The types every layer of the method shares: clips, the data of a run, the frozen stages, progress reports.

They live in one module below everything else (it imports only torch and the standard library), so the data
loaders, the proxy world, the trainers and the stage graph all import them downwards: the data stage fills a
:class:`World` from the proxy benchmark (``nlrd.world``) or real data sets (``nlrd.data``), pre-training turns it
into :class:`Stages`, and every training loop reports through a :data:`Report`.  ``nlrd.data`` and ``nlrd.world``
re-export :class:`ClipSet` and :class:`World` as part of their public surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import nn

#: A training loop's progress callback: it receives one dict of metrics per report.
Report = Callable[[dict], None]


@dataclass
class ClipSet:
    """Video clips and, when labelled, their poses.

    ``frames``: ``(N, T, 3, H, W)`` uint8 RGB.  ``poses``: ``(N, T, 17, 3)`` float32 root-relative mm,
    or ``None`` for unlabelled data.  ``fps``: frames per second of the clips.  ``eval_joints``: the joints whose
    ground truth is real and comparable (MPI-INF-3DHP has no feet: ``nlrd.data.mpi_inf_3dhp.EVAL_JOINTS_3DHP``), or
    ``None`` for all 17; evaluation passes it to ``nlrd.metrics.evaluate_protocols`` as its joint subset.
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


@dataclass
class World:
    """The data every stage trains and evaluates on: the proxy benchmark's, or real data sets' (``nlrd.data_stage``).

    ``mocap``: ``(M, 2 * clip_len, 17, 3)`` float32 mm, unpaired sequences (in the proxy: from all motion families).
    ``source``: labelled ``clip_len``-frame clips in the SOURCE domain.  ``target_train``: unlabelled
    ``2 * clip_len``-frame clips in the TARGET domain.  ``target_val``: labelled ``clip_len``-frame TARGET
    clips, for evaluation only.
    """

    mocap: torch.Tensor
    source: ClipSet
    target_train: ClipSet
    target_val: ClipSet


#: The parts of a World, in field order.
PARTS: tuple[str, ...] = tuple(f.name for f in fields(World))


class ClipPart(NamedTuple):
    """How a clip part of a :class:`World` is sized, wherever its clips come from (proxy or real).

    ``count``: the ``WorldConfig`` field giving its number of clips (the proxy renders that many, a real source reads
    at most that many).  ``multiple``: its clip length in units of T (``WorldConfig.clip_len``).  ``labelled``:
    whether the part keeps its poses (``target_train`` is the unlabelled data adaptation learns from).
    """

    count: str
    multiple: int
    labelled: bool


#: The clip parts of a World (every part but ``mocap``), in field order.
CLIP_PARTS: dict[str, ClipPart] = {
    "source": ClipPart("source_clips", 1, labelled=True),
    "target_train": ClipPart("target_clips", 2, labelled=False),
    "target_val": ClipPart("val_clips", 1, labelled=True),
}


@dataclass
class Stages:
    """Everything adaptation needs from pre-training, frozen.

    ``transformers`` maps a relation name (see ``nlrd.relations``) to its relation transformer.
    """

    prior: nn.Module
    motion: nn.Module
    transformers: dict[str, nn.Module]
    encoder: nn.Module

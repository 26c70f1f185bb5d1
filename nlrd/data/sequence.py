"""Pose sequences: what every mocap and labelled-video loader returns, and how they become training windows."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nlrd.data.errors import DatasetError
from nlrd.skeleton import NUM_JOINTS, ROOT

#: How far (mm) the stored pelvis may sit from the origin; root-relative joints put it at exactly 0.
_ROOT_TOLERANCE_MM = 1e-3
#: Relative difference below which two frame rates are the same rate.
_SAME_RATE = 1e-4
#: A camera frame (x right, y down, z forward: OpenCV's, used by 3DHP and 3DPW) -> ours (x right, y forward, z up).
#: A proper rotation (determinant +1): nothing is mirrored.
CAMERA_TO_OURS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _as_float32(value: torch.Tensor | np.ndarray, name: str, source: str) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).float()
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{source}: {name} is not numeric ({exc})") from exc


@dataclass
class PoseSequence:
    """One continuous 3D pose recording.

    ``joints``: ``(T, 17, 3)`` float32, root-relative mm, z up (pelvis at the origin).  ``fps``: frame rate.
    ``root``: ``(T, 3)`` float32 mm, the pelvis in the frame the joints are expressed in (the world frame for mocap,
    the camera frame for image datasets), z up, so ``joints + root[:, None]`` are absolute positions.
    ``source``: where it came from (file, and subject/action/sequence/frame range where relevant), used in errors.
    Arrays are converted to float32 tensors; shapes, finiteness and the root-relative invariant are checked.
    """

    joints: torch.Tensor
    fps: float
    root: torch.Tensor
    source: str

    def __post_init__(self) -> None:
        self.joints = _as_float32(self.joints, "joints", self.source)
        self.root = _as_float32(self.root, "root", self.source)
        if self.joints.dim() != 3 or tuple(self.joints.shape[1:]) != (NUM_JOINTS, 3) or self.joints.shape[0] < 1:
            raise DatasetError(f"{self.source}: joints must be (T, 17, 3) with T >= 1, got {tuple(self.joints.shape)}")
        if tuple(self.root.shape) != (self.joints.shape[0], 3):
            raise DatasetError(
                f"{self.source}: root must be (T, 3) = {(self.joints.shape[0], 3)}, got {tuple(self.root.shape)}"
            )
        try:
            fps = float(self.fps)
        except (TypeError, ValueError):
            fps = math.nan
        if not (math.isfinite(fps) and fps > 0):
            raise DatasetError(f"{self.source}: fps must be a positive number, got {self.fps!r}")
        self.fps = fps
        for name, values in (("joints", self.joints), ("root", self.root)):
            bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)
            if bad.any():
                frame = int(bad.nonzero()[0, 0])
                raise DatasetError(f"{self.source}: {name} has NaN or infinite values (first at frame {frame})")
        offset = self.joints[:, ROOT].abs().max().item()
        if offset > _ROOT_TOLERANCE_MM:
            raise DatasetError(f"{self.source}: joints must be root-relative, but the pelvis is {offset:.3g} mm off")

    @classmethod
    def from_positions(cls, positions: np.ndarray | torch.Tensor, fps: float, source: str) -> PoseSequence:
        """Build from absolute ``(T, 17, 3)`` mm z-up positions: the pelvis becomes ``root``, the rest root-relative."""
        absolute = _as_float32(positions, "positions", source).double()
        if absolute.dim() != 3 or tuple(absolute.shape[1:]) != (NUM_JOINTS, 3):
            raise DatasetError(f"{source}: positions must be (T, 17, 3), got {tuple(absolute.shape)}")
        root = absolute[:, ROOT]
        return cls(joints=(absolute - root[:, None]).float(), fps=fps, root=root.float(), source=source)

    def __len__(self) -> int:
        return self.joints.shape[0]

    @property
    def duration_s(self) -> float:
        """Time from the first to the last frame, in seconds."""
        return (len(self) - 1) / self.fps

    def resample(self, fps: float) -> PoseSequence:
        """The same motion at ``fps``, by linear interpolation in time; frames cover ``[0, duration_s]``.

        Rates within 0.01 % count as equal (file formats such as BVH store a rounded frame time): the frames are kept
        and only ``fps`` is set.
        """
        if not (math.isfinite(fps) and fps > 0):
            raise DatasetError(f"{self.source}: target fps must be a positive number, got {fps!r}")
        if math.isclose(fps, self.fps, rel_tol=_SAME_RATE):
            return self if fps == self.fps else PoseSequence(self.joints, fps, self.root, self.source)
        count = math.floor(self.duration_s * fps + _SAME_RATE) + 1
        position = (torch.arange(count, dtype=torch.float64) * (self.fps / fps)).clamp(max=len(self) - 1)
        lower = position.floor().long()
        upper = (lower + 1).clamp(max=len(self) - 1)
        weight = position - lower.double()

        def interpolate(values: torch.Tensor) -> torch.Tensor:
            v = values.double()
            w = weight.reshape(-1, *([1] * (v.dim() - 1)))
            return ((1 - w) * v[lower] + w * v[upper]).float()

        return PoseSequence(interpolate(self.joints), fps, interpolate(self.root), self.source)

    def windows(self, length: int, stride: int = 1) -> torch.Tensor:
        """All ``length``-frame windows, starts ``stride`` frames apart: ``(N, length, 17, 3)`` float32 mm."""
        starts = window_starts(len(self), length, stride)
        if not starts:
            raise DatasetError(f"{self.source}: {len(self)} frames, shorter than a clip of {length} frames")
        return self.joints.unfold(0, length, stride).permute(0, 3, 1, 2).contiguous()


def window_starts(num_frames: int, length: int, stride: int = 1) -> range:
    """First frames of the ``length``-frame windows of a ``num_frames`` sequence (empty when it is too short)."""
    if length < 1 or stride < 1:
        raise DatasetError(f"window length and stride must be >= 1, got length={length}, stride={stride}")
    return range(0, num_frames - length + 1, stride)


def stack_windows(
    sequences: Iterable[PoseSequence],
    length: int,
    stride: int = 1,
    skip_short: bool = False,
    limit: int | None = None,
) -> torch.Tensor:
    """Unpaired mocap in the shape the method consumes: every window of every sequence, ``(N, length, 17, 3)``.

    ``skip_short`` drops sequences shorter than ``length`` instead of raising (useful after splitting a recording
    at invalid frames); it still raises when no window is left.  ``limit``: at most that many windows, evenly
    spread over all of them and in the same order (a large mocap collection never has every window in memory).
    """
    if limit is not None and limit < 1:
        raise DatasetError(f"window limit must be >= 1 or None, got {limit}")
    chosen: list[tuple[PoseSequence, int]] = []
    seen = 0
    for sequence in sequences:
        seen += 1
        if skip_short and len(sequence) < length:
            continue
        starts = window_starts(len(sequence), length, stride)
        if not starts:
            raise DatasetError(f"{sequence.source}: {len(sequence)} frames, shorter than a clip of {length} frames")
        chosen += [(sequence, start) for start in starts]
    if not chosen:
        what = "no sequences were given" if seen == 0 else f"all {seen} sequences are shorter than {length} frames"
        raise DatasetError(f"cannot build {length}-frame windows: {what}")
    if limit is not None and limit < len(chosen):
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return torch.stack([sequence.joints[start : start + length] for sequence, start in chosen])


def contiguous_runs(mask: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive true entries of a 1-D mask (stop exclusive)."""
    flags = np.concatenate([[False], np.asarray(mask, dtype=bool).reshape(-1), [False]])
    edges = np.flatnonzero(flags[1:] != flags[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]

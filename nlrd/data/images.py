"""Image files -> uint8 frame tensors, and labelled frame sequences -> :class:`~nlrd.core.ClipSet`.

Frames are read with Pillow (no torchvision), converted to RGB, cropped to a square and resized to ``size x size``
with bilinear filtering.  A sequence's frames are either one image file per frame (:class:`ImageFiles`) or one video
file (:class:`nlrd.data.video.VideoFrames`, decoded with PyAV, the optional ``video`` extra); both crop and resize
the same way, through :func:`square_crop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from nlrd.core import ClipSet
from nlrd.data.errors import DatasetError
from nlrd.data.sequence import PoseSequence, window_starts

Box = tuple[float, float, float, float]


def square_box(points: np.ndarray, margin: float = 1.2) -> np.ndarray:
    """Square crop boxes around 2D points: ``(..., J, 2)`` px -> ``(..., 4)`` ``(left, top, right, bottom)`` px.

    The side is ``margin`` times the larger extent of the points, centred on the middle of their bounding box.
    """
    pts = np.asarray(points, dtype=np.float64)
    low, high = pts.min(axis=-2), pts.max(axis=-2)
    centre, half = (low + high) / 2, margin * (high - low).max(axis=-1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def _crop_box(width: int, height: int, box: Box | None, path: Path | str) -> tuple[int, int, int, int]:
    """The integer square to crop: the centred largest square when ``box`` is None, else ``box`` made square."""
    if box is None:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side
    left, top, right, bottom = (float(v) for v in box)
    if not all(math.isfinite(v) for v in box) or right <= left or bottom <= top:
        raise DatasetError(
            f"{path}: crop box must be finite (left, top, right, bottom) with right > left, bottom > top, got {box}"
        )
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return left, top, left + max(1, round(side)), top + max(1, round(side))


def square_crop(rgb: Image.Image, size: int, box: Box | None, source: Path | str) -> np.ndarray:
    """An RGB image as ``(size, size, 3)`` uint8: ``box`` (px, made square, zero-padded past the border) or a
    centre square crop, resized bilinearly.  ``source`` names the image in errors."""
    cropped = rgb.crop(_crop_box(rgb.width, rgb.height, box, source))
    return np.array(cropped.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def read_image(path: str | Path, size: int, box: Box | None = None) -> np.ndarray:
    """One image file as ``(size, size, 3)`` uint8 RGB, cropped by :func:`square_crop`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable image ({exc})") from exc
    return square_crop(rgb, size, box, path)


def read_frames(
    paths: Sequence[str | Path], size: int, boxes: np.ndarray | Sequence[Box] | None = None
) -> torch.Tensor:
    """Images -> ``(T, 3, size, size)`` uint8 RGB.  ``boxes``: ``(T, 4)`` px per frame, or None for centre crops."""
    if size < 1:
        raise DatasetError(f"frame size must be >= 1 px, got {size}")
    if boxes is not None and len(boxes) != len(paths):
        raise DatasetError(f"{len(paths)} frames but {len(boxes)} crop boxes")
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for t, path in enumerate(paths):
        out[t] = torch.from_numpy(read_image(path, size, None if boxes is None else tuple(boxes[t]))).permute(2, 0, 1)
    return out


class Frames(Protocol):
    """The frames of one recording, frame ``t`` showing pose frame ``t``."""

    def __len__(self) -> int: ...

    def read(self, index: np.ndarray, size: int, boxes: np.ndarray | None) -> torch.Tensor:
        """Frames ``index`` (ascending, distinct) as ``(len(index), 3, size, size)`` uint8 RGB; ``boxes``:
        ``(len(index), 4)`` px crop boxes, or None for centre crops."""
        ...


@dataclass(frozen=True)
class ImageFiles:
    """One image file per frame."""

    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: np.ndarray, size: int, boxes: np.ndarray | None) -> torch.Tensor:
        return read_frames([self.paths[i] for i in index], size, boxes)


@dataclass(frozen=True)
class FramedSequence:
    """A pose sequence with its frames (:class:`Frames`: image files or a video) and, optionally, a crop box per
    frame (``(T, 4)`` px)."""

    poses: PoseSequence
    frames: Frames
    boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.poses):
            raise DatasetError(f"{self.poses.source}: {len(self.poses)} poses but {len(self.frames)} frames")
        if self.boxes is not None and np.shape(self.boxes) != (len(self.poses), 4):
            raise DatasetError(f"{self.poses.source}: boxes must be (T, 4), got {np.shape(self.boxes)}")


def _frame_step(sequence: PoseSequence, fps: float) -> int:
    step = sequence.fps / fps
    if step < 1 - 1e-6 or abs(step - round(step)) > 1e-6:
        raise DatasetError(
            f"{sequence.source}: clips at {fps} fps need every n-th frame of the {sequence.fps} fps recording, "
            "but the ratio is not a whole number; choose an fps that divides the recording rate"
        )
    return round(step)


def build_clips(
    sequences: Sequence[FramedSequence],
    clip_len: int,
    fps: float,
    image_size: int,
    stride: int | None = None,
    max_clips: int | None = None,
) -> ClipSet:
    """Cut labelled frame sequences into clips of ``clip_len`` frames at ``fps`` and read their images.

    A clip takes every n-th recorded frame (n = recording fps / ``fps``, a whole number) so that frames and poses
    stay exactly paired; ``stride`` (clip frames, default ``clip_len``) separates clip starts.  With ``max_clips``,
    that many clips are taken evenly spread over all candidates.  Returns poses ``(N, clip_len, 17, 3)`` mm.
    """
    stride = clip_len if stride is None else stride
    if max_clips is not None and max_clips < 1:
        raise DatasetError(f"max_clips must be >= 1 or None, got {max_clips}")
    candidates: list[tuple[FramedSequence, np.ndarray]] = []
    for item in sequences:
        step = _frame_step(item.poses, fps)
        span = (clip_len - 1) * step + 1
        for start in window_starts(len(item.poses), span, stride * step):
            candidates.append((item, start + step * np.arange(clip_len)))
    if not candidates:
        raise DatasetError(f"no clip of {clip_len} frames at {fps} fps fits in any of the {len(sequences)} sequences")
    if max_clips is not None and max_clips < len(candidates):
        chosen = np.linspace(0, len(candidates) - 1, max_clips).round().astype(int)
        candidates = [candidates[i] for i in chosen]
    frames = torch.empty((len(candidates), clip_len, 3, image_size, image_size), dtype=torch.uint8)
    poses = torch.empty((len(candidates), clip_len, 17, 3), dtype=torch.float32)
    # One read per recording, of every frame its clips need: a video is decoded once, a shared frame read once.
    by_recording: dict[int, tuple[FramedSequence, list[tuple[int, np.ndarray]]]] = {}
    for n, (item, index) in enumerate(candidates):
        by_recording.setdefault(id(item), (item, []))[1].append((n, index))
    for item, clips in by_recording.values():
        needed = np.unique(np.concatenate([index for _, index in clips]))
        read = item.frames.read(needed, image_size, None if item.boxes is None else item.boxes[needed])
        for n, index in clips:
            frames[n] = read[np.searchsorted(needed, index)]
            poses[n] = item.poses.joints[torch.from_numpy(index)]
    return ClipSet(frames, poses, fps=float(fps))

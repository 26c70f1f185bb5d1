"""Frames from a video file, decoded with PyAV (the optional ``video`` extra: ``pip install 'nlrd-search[video]'``).

Datasets that ship videos (Human3.6M's ``S1/Videos/Directions 1.54138969.mp4``, MPI-INF-3DHP's training
``video_<camera>.avi``) can then be read without extracting every frame to disk first.  Frames are counted in
decoding order from the first frame of the first video stream, so frame ``t`` of a :class:`VideoFrames` is the
``first + t``-th decoded picture whatever the container's timestamps say; a clip's frames are decoded in one pass
and cropped exactly like image files (:func:`nlrd.data.images.square_crop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from nlrd.data.errors import DatasetError
from nlrd.data.images import square_crop

#: The install hint every "PyAV is missing" error carries.
INSTALL_HINT = "pip install 'nlrd-search[video]' (or: pip install av)"


def _av(path: Path) -> ModuleType:
    try:
        import av
    except ImportError:
        raise DatasetError(f"{path}: reading video files needs PyAV, which is not installed; {INSTALL_HINT}") from None
    return av


def _open(path: Path) -> tuple[ModuleType, Any, Any]:
    """PyAV, the open container and its first video stream; a clear error for anything that is not a readable
    video."""
    av = _av(path)
    if not path.is_file():
        raise DatasetError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable video file ({exc})") from None
    if not container.streams.video:
        container.close()
        raise DatasetError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return av, container, stream


def count_video_frames(path: str | Path) -> int:
    """Frames in the first video stream: decoded and counted, since container headers may omit or misstate it."""
    path = Path(path)
    av, container, stream = _open(path)
    try:
        return sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: video is damaged ({exc})") from None
    finally:
        container.close()


def read_video(path: str | Path, index: np.ndarray, size: int, boxes: np.ndarray | None = None) -> torch.Tensor:
    """Frames ``index`` (0-based decoding order, any order, repeats allowed) of a video as
    ``(len(index), 3, size, size)`` uint8 RGB, each cropped by its box (``(len(index), 4)`` px) or centre-cropped."""
    path = Path(path)
    index = np.asarray(index, dtype=np.int64)
    if size < 1:
        raise DatasetError(f"frame size must be >= 1 px, got {size}")
    if boxes is not None and len(boxes) != len(index):
        raise DatasetError(f"{path}: {len(index)} frames but {len(boxes)} crop boxes")
    if len(index) and index.min() < 0:
        raise DatasetError(f"{path}: frame indices must be >= 0, got {int(index.min())}")
    out = torch.empty((len(index), 3, size, size), dtype=torch.uint8)
    if not len(index):
        return out
    wanted: dict[int, list[int]] = {}
    for slot, frame in enumerate(index.tolist()):
        wanted.setdefault(frame, []).append(slot)
    last = int(index.max())
    av, container, stream = _open(path)
    decoded = 0
    try:
        for picture in container.decode(stream):
            if decoded in wanted:
                rgb = picture.to_image()
                for slot in wanted[decoded]:
                    box = None if boxes is None else tuple(float(v) for v in boxes[slot])
                    crop = square_crop(rgb, size, box, f"{path} frame {decoded}")
                    out[slot] = torch.from_numpy(crop).permute(2, 0, 1)
            decoded += 1
            if decoded > last:
                break
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: video is damaged at frame {decoded} ({exc})") from None
    finally:
        container.close()
    if decoded <= last:
        raise DatasetError(f"{path}: video has {decoded} frames, but frame {last} (0-based) was asked for")
    return out


@dataclass(frozen=True)
class VideoFrames:
    """``count`` consecutive frames of a video, from its ``first``-th decoded frame: the :class:`Frames` of a
    recording whose pose frame ``t`` is video frame ``first + t``."""

    path: Path
    count: int
    first: int = 0

    def __len__(self) -> int:
        return self.count

    def read(self, index: np.ndarray, size: int, boxes: np.ndarray | None) -> torch.Tensor:
        return read_video(self.path, self.first + np.asarray(index), size, boxes)

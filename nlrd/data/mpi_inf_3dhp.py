"""MPI-INF-3DHP test set -> :class:`PoseSequence` and :class:`~nlrd.core.ClipSet`.

Layout: ``root/TSk/annot_data.mat`` (MATLAB v7.3, i.e. HDF5 behind a 512-byte userblock, read with h5py) and
``root/TSk/imageSequence/img_XXXXXX.jpg`` (1-based frame number, 6 digits).  Datasets used: ``univ_annot3``
(17 joints, mm, camera frame, scaled to the universal skeleton; h5py sees MATLAB's ``3 x 17 x 1 x T`` array as
``(T, 1, 17, 3)``, and both orders are accepted), ``valid_frame`` (per frame), and, when present, ``annot2``
(2D joints in px) for crop boxes.  Only valid frames are kept; a recording is split at invalid frames into
contiguous runs, so no sequence jumps in time.

Conversions and approximations:

* Camera frame (x right, y down, z forward) -> ours (x right, y forward, z up) by the proper rotation
  ``(x, y, z) -> (x, z, -y)``: no mirroring.  Poses are root-relative to the pelvis (3DHP test joint 14); ``root``
  is the pelvis in that camera frame.
* 3DHP's 17 test joints have no feet: our feet (12, 16) are filled with the ankle positions, and
  :data:`EVAL_JOINTS_3DHP` / :data:`VALID_JOINTS_3DHP` list the 15 joints to compare.  3DHP's spine (15) and head
  centre (16) are not used.
* Frame rates: :data:`TEST_FPS` holds 25 fps for the studio sequences TS1-TS4 and 50 fps for the outdoor TS5-TS6;
  pass ``source_fps`` if your copy says otherwise.
* Crops: a square box around the ``annot2`` joints (ground-truth 2D, the usual evaluation crop) with a margin, or a
  centre crop when ``annot2`` is absent.  The activity annotation is not read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from nlrd.core import ClipSet
from nlrd.data.errors import DatasetError
from nlrd.data.images import FramedSequence, ImageFiles, build_clips, square_box
from nlrd.data.sequence import CAMERA_TO_OURS, PoseSequence, contiguous_runs

TEST_SEQUENCES: tuple[str, ...] = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
#: Recording rate of each test sequence.
TEST_FPS: dict[str, float] = {"TS1": 25.0, "TS2": 25.0, "TS3": 25.0, "TS4": 25.0, "TS5": 50.0, "TS6": 50.0}
#: 3DHP test-joint index of each of our 17 joints (the feet repeat the ankles).
THREEDHP_TO_OURS: tuple[int, ...] = (14, 1, 2, 3, 4, 5, 6, 7, 0, 8, 9, 10, 10, 11, 12, 13, 13)
#: Our joints with a 3DHP counterpart: all but the feet (12, 16).
EVAL_JOINTS_3DHP: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15)
#: ``(17,)`` mask of :data:`EVAL_JOINTS_3DHP`.
VALID_JOINTS_3DHP: np.ndarray = np.isin(np.arange(17), EVAL_JOINTS_3DHP)


def _joint_array(raw: np.ndarray, dims: int, source: str) -> np.ndarray:
    """``(T, 1, 17, d)`` (h5py's view of a v7.3 file) or ``(d, 17, 1, T)`` (MATLAB's order) -> ``(T, 17, d)``."""
    a = np.asarray(raw, dtype=np.float64)
    if a.ndim == 4 and a.shape[1] == 1 and a.shape[2:] == (17, dims):
        return a[:, 0]
    if a.ndim == 4 and a.shape[:3] == (dims, 17, 1):
        return a[:, :, 0, :].transpose(2, 1, 0)
    raise DatasetError(f"{source}: expected shape (T, 1, 17, {dims}) or ({dims}, 17, 1, T), got {a.shape}")


def _read_annotations(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(T, 17, 3)`` mm camera-frame joints, ``(T,)`` validity, and ``(T, 17, 2)`` px joints or None."""
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        with h5py.File(path, "r") as mat:
            missing = [k for k in ("univ_annot3", "valid_frame") if k not in mat]
            if missing:
                raise DatasetError(f"{path}: missing datasets {missing}; the file holds {sorted(mat)}")
            joints = _joint_array(mat["univ_annot3"][()], 3, f"{path}[univ_annot3]")
            valid = np.asarray(mat["valid_frame"][()]).reshape(-1) != 0
            points = _joint_array(mat["annot2"][()], 2, f"{path}[annot2]") if "annot2" in mat else None
    except OSError as exc:
        raise DatasetError(f"{path}: not a MATLAB v7.3 (HDF5) file ({exc})") from exc
    if valid.shape[0] != joints.shape[0] or (points is not None and points.shape[0] != joints.shape[0]):
        raise DatasetError(
            f"{path}: valid_frame / annot2 do not have one entry per univ_annot3 frame ({joints.shape[0]})"
        )
    return joints, valid, points


def load_3dhp_framed(
    root: str | Path, sequences: Sequence[str], source_fps: Mapping[str, float]
) -> list[FramedSequence]:
    """The valid runs of the test sequences with their frames, before any image is read or any resampling.

    Each run's poses are 17 joints, mm, root-relative, z up, at the sequence's recording rate ``source_fps[name]``;
    its frames are the run's ``img_XXXXXX.jpg`` paths, its boxes ``(T, 4)`` px crops around ``annot2`` (None
    without it).  :func:`load_3dhp_test` and :func:`load_3dhp_clips` build on it; a data source's check reads it
    to probe the annotations without decoding the images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: MPI-INF-3DHP test folder not found")
    out = []
    for name in sequences:
        if name not in source_fps:
            raise DatasetError(f"{root / name}: unknown frame rate; pass source_fps={{{name!r}: <fps>}}")
        path = root / name / "annot_data.mat"
        joints, valid, points = _read_annotations(path)
        for start, stop in contiguous_runs(valid):
            source = f"{path} frames {start + 1}-{stop}"
            ours = joints[start:stop][:, list(THREEDHP_TO_OURS)] @ CAMERA_TO_OURS.T
            if not np.isfinite(ours).all():
                raise DatasetError(f"{source}: univ_annot3 has NaN or infinite values on valid frames")
            poses = PoseSequence.from_positions(ours, fps=source_fps[name], source=source)
            paths = tuple(root / name / "imageSequence" / f"img_{t + 1:06d}.jpg" for t in range(start, stop))
            boxes = None if points is None else square_box(points[start:stop])
            out.append(FramedSequence(poses, ImageFiles(paths), boxes))
    return out


def load_3dhp_test(
    root: str | Path,
    sequences: Sequence[str] = TEST_SEQUENCES,
    fps: float | None = 30.0,
    source_fps: Mapping[str, float] = TEST_FPS,
) -> list[PoseSequence]:
    """The valid runs of the test sequences as 17-joint poses (mm, root-relative, z up), resampled to ``fps``.

    ``fps=None`` keeps each sequence's recording rate.  Compare only :data:`EVAL_JOINTS_3DHP` (feet are ankles).
    """
    items = [item.poses for item in load_3dhp_framed(root, sequences, source_fps)]
    return items if fps is None else [s.resample(fps) for s in items]


def load_3dhp_clips(
    root: str | Path,
    sequences: Sequence[str] = TEST_SEQUENCES,
    clip_len: int = 30,
    fps: float = 25.0,
    image_size: int = 224,
    stride: int | None = None,
    max_clips: int | None = None,
    source_fps: Mapping[str, float] = TEST_FPS,
) -> ClipSet:
    """Labelled test clips: valid runs cut into ``clip_len`` frames at ``fps`` (a whole divisor of each sequence's
    rate: 25 fps takes every frame of TS1-TS4 and every 2nd of TS5-TS6), cropped around the person, resized.

    The clips' ``eval_joints`` is :data:`EVAL_JOINTS_3DHP`: their feet are copies of the ankles.
    """
    items = load_3dhp_framed(root, sequences, source_fps)
    clips = build_clips(items, clip_len, fps, image_size, stride=stride, max_clips=max_clips)
    return dataclasses.replace(clips, eval_joints=EVAL_JOINTS_3DHP)

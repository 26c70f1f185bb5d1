"""3DPW -> :class:`PoseSequence` and :class:`~nlrd.core.ClipSet`.

Layout: ``root/sequenceFiles/{train,validation,test}/<sequence>.pkl`` (Python 2 pickles of dicts of NumPy arrays and
lists) and ``root/imageFiles/<sequence>/image_XXXXX.jpg`` (``img_frame_ids``, 5 digits, 0-based).  Keys used:
``jointPositions`` (per actor ``(T, 72)``: 24 SMPL joints x 3, metres, world frame), ``cam_poses`` (``(T, 4, 4)``
world -> camera), ``campose_valid`` (per actor ``(T,)``), ``img_frame_ids`` (``(T,)``), ``sequence`` and, for crop
boxes, ``cam_intrinsics`` (``(3, 3)``).  Recordings are 30 fps.

Trust: pickles are read with :func:`nlrd.data.safe_pickle.restricted_load`, which builds only NumPy arrays and
builtin containers and refuses any other global before it runs.  ``trust_pickles=True`` is the explicit opt-in to
a plain ``pickle.load`` (which can execute code from the file); even then the restricted reader is tried first and
the plain one is used only for a file it refuses.

Conversions and approximations:

* Joints go to the camera frame with ``cam_poses``, then camera (x right, y down, z forward) -> ours (x right,
  y forward, z up) by a proper rotation, as for MPI-INF-3DHP; ``root`` is the pelvis in that (moving) camera frame.
  Only frames with a valid camera pose are kept, and each actor is split into contiguous valid runs.
* SMPL joints (0 pelvis, 1 L-hip, 2 R-hip, 3 spine1, 4 L-knee, 5 R-knee, 6 spine2, 7 L-ankle, 8 R-ankle, 9 spine3,
  10 L-foot, 11 R-foot, 12 neck, 13 L-collar, 14 R-collar, 15 head, 16 L-shoulder, 17 R-shoulder, 18 L-elbow,
  19 R-elbow, 20 L-wrist, 21 R-wrist, 22 L-hand, 23 R-hand) -> ours by :data:`SMPL_TO_OURS`.  Pelvis = the SMPL
  root, a regressed joint slightly above the hip line.  Neck = SMPL neck (12), the base of the neck, a little
  above the centre of the shoulders.  Shoulders = SMPL shoulders (16/17), not the collars (13/14).  Head-top =
  SMPL head (15): SMPL has no head-top, and its head joint is the head centre, about 10 cm below the crown.
  Feet = SMPL feet (10/11), at the toe base.
* Crops: a square box around the ground-truth joints projected with ``cam_intrinsics`` (centre crop without them).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlrd.core import ClipSet
from nlrd.data.errors import DatasetError
from nlrd.data.images import FramedSequence, ImageFiles, build_clips, square_box
from nlrd.data.safe_pickle import restricted_load
from nlrd.data.sequence import CAMERA_TO_OURS, PoseSequence, contiguous_runs

PW3D_FPS = 30.0
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: SMPL joint index of each of our 17 joints.
SMPL_TO_OURS: tuple[int, ...] = (0, 12, 17, 19, 21, 16, 18, 20, 15, 2, 5, 8, 11, 1, 4, 7, 10)


def read_pickle(path: str | Path, trust_pickles: bool = False) -> Any:
    """A 3DPW pickle through the restricted unpickler; a plain unpickler only when trusted and refused."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: pickle file not found")
    with path.open("rb") as file:
        try:
            return restricted_load(file, source=str(path))
        except DatasetError:
            if not trust_pickles:
                raise
    with path.open("rb") as file:
        try:
            return pickle.load(file, encoding="latin1")  # only with the explicit trust_pickles=True
        except Exception as exc:
            raise DatasetError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _field(record: Any, key: str, path: Path) -> Any:
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(record).__name__}")
    if key not in record:
        raise DatasetError(f"{path}: missing key {key!r}; the file holds {sorted(map(str, record))}")
    return record[key]


def _array(value: Any, shape: tuple[int | None, ...], what: str) -> np.ndarray:
    """``value`` as float64 with ``shape`` (None = any length), or a DatasetError naming ``what``."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{what}: not numeric ({exc})") from exc
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape, strict=True)):
        expected = "(" + ", ".join("T" if s is None else str(s) for s in shape) + ")"
        raise DatasetError(f"{what}: expected shape {expected}, got {a.shape}")
    return a


def _framed_sequences(
    root: str | Path, split: str, sequences: Sequence[str] | None, trust_pickles: bool
) -> list[FramedSequence]:
    if split not in SPLITS:
        raise DatasetError(f"3DPW split must be one of {list(SPLITS)}, got {split!r}")
    folder = Path(root) / "sequenceFiles" / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: 3DPW sequence folder not found")
    paths = sorted(folder.glob("*.pkl"))
    if sequences is not None:
        missing = sorted(set(sequences) - {p.stem for p in paths})
        if missing:
            raise DatasetError(f"{folder}: no sequence files for {missing}")
        paths = [p for p in paths if p.stem in sequences]
    if not paths:
        raise DatasetError(f"{folder}: no .pkl sequence files")
    return [item for path in paths for item in load_3dpw_file(path, root, trust_pickles)]


def load_3dpw_file(path: str | Path, root: str | Path, trust_pickles: bool = False) -> list[FramedSequence]:
    """The valid runs of every actor of one sequence file ``path`` (a ``.pkl`` of the dataset under ``root``).

    Each run's poses are 17 joints, camera frame, mm, root-relative, z up, at 30 fps; its frames are the run's
    ``root/imageFiles/<sequence>/image_XXXXX.jpg`` paths (not read), its boxes ``(T, 4)`` px crops around the
    projected joints (None without ``cam_intrinsics``).  A data source's check reads one file with it to probe the
    dataset without reading every pickle.
    """
    path, root = Path(path), Path(root)
    record = read_pickle(path, trust_pickles)
    name = str(_field(record, "sequence", path))
    actors = _field(record, "jointPositions", path)
    valid_lists = _field(record, "campose_valid", path)
    per_actor = isinstance(actors, (list, tuple)) and isinstance(valid_lists, (list, tuple))
    if not per_actor or len(actors) != len(valid_lists):
        raise DatasetError(f"{path}: jointPositions and campose_valid must be lists with one entry per actor")
    cam_poses = _array(_field(record, "cam_poses", path), (None, 4, 4), f"{path}[cam_poses]")
    frames = len(cam_poses)
    frame_ids = _array(_field(record, "img_frame_ids", path), (frames,), f"{path}[img_frame_ids]").astype(int)
    intrinsics = record.get("cam_intrinsics")
    intrinsics = None if intrinsics is None else _array(intrinsics, (3, 3), f"{path}[cam_intrinsics]")
    out = []
    for actor, (joints, valid) in enumerate(zip(actors, valid_lists, strict=True)):
        world = _array(joints, (frames, 72), f"{path}[jointPositions][{actor}]").reshape(frames, 24, 3)
        valid = _array(valid, (frames,), f"{path}[campose_valid][{actor}]") != 0
        camera = np.einsum("tij,tnj->tni", cam_poses[:, :3, :3], world) + cam_poses[:, None, :3, 3]
        for start, stop in contiguous_runs(valid):
            source = f"{path} ({name}) actor {actor} frames {start}-{stop - 1}"
            chosen = camera[start:stop][:, list(SMPL_TO_OURS)]
            if not np.isfinite(chosen).all():
                raise DatasetError(f"{source}: joint positions contain NaN or infinite values")
            poses = PoseSequence.from_positions(chosen @ CAMERA_TO_OURS.T * 1000.0, fps=PW3D_FPS, source=source)
            images = tuple(root / "imageFiles" / name / f"image_{i:05d}.jpg" for i in frame_ids[start:stop])
            boxes = None
            if intrinsics is not None:
                projected = chosen @ intrinsics.T
                boxes = square_box(projected[..., :2] / projected[..., 2:])
            out.append(FramedSequence(poses, ImageFiles(images), boxes))
    return out


def load_3dpw(
    root: str | Path,
    split: str = "test",
    sequences: Sequence[str] | None = None,
    fps: float | None = 30.0,
    trust_pickles: bool = False,
) -> list[PoseSequence]:
    """3DPW actors as camera-frame 17-joint poses (mm, root-relative, z up), valid runs, resampled to ``fps``.

    ``sequences``: file stems to load (default: every file of ``split``).  ``fps=None`` keeps 30 fps.
    """
    items = [item.poses for item in _framed_sequences(root, split, sequences, trust_pickles)]
    return items if fps is None else [s.resample(fps) for s in items]


def load_3dpw_clips(
    root: str | Path,
    split: str = "test",
    clip_len: int = 30,
    sequences: Sequence[str] | None = None,
    fps: float = PW3D_FPS,
    image_size: int = 224,
    stride: int | None = None,
    max_clips: int | None = None,
    trust_pickles: bool = False,
) -> ClipSet:
    """Labelled 3DPW clips (one per actor window), cropped around the projected ground truth and resized."""
    items = _framed_sequences(root, split, sequences, trust_pickles)
    return build_clips(items, clip_len, fps, image_size, stride=stride, max_clips=max_clips)

"""Human3.6M in VideoPose3D's layout -> :class:`PoseSequence` and :class:`~nlrd.core.ClipSet`.

Poses: ``data_3d_h36m.npz`` (made by VideoPose3D's ``prepare_data_h36m.py``) has one key, ``positions_3d``: a 0-d
object array wrapping ``{subject: {action: (T, 32, 3) float metres}}``, world frame, z up, 50 fps.  The object array
is a pickle, read with :func:`nlrd.data.safe_pickle.restricted_load` (NumPy arrays and containers only), never
with a plain unpickler.  Poses become mm, root-relative, with the pelvis trajectory kept as ``root``.

Joints: :data:`H36M_TO_OURS` picks 17 of the 32 recorded joints.  Our neck is the shoulder centre, H36M's thorax
(13, "Neck" in the raw names); our head-top is the head's end site (15); our feet are the toe bases (4, 9), which
are *not* in the usual 17-joint H36M evaluation set (that set has spine and nose/neck instead), so numbers on our
joints do not compare one-to-one with published ones.  In the 32-joint tree the collar joints (16, 24) hang from
Spine1 (12) while sitting at the thorax (13); VideoPose3D rewires the shoulders to the thorax, as does
:data:`H36M_COLLARS_AT`.

Frames (:func:`load_h36m_clips`): pre-extracted crops in ``frames_root/<subject>/<action>.<camera>/<frame>.jpg``,
``<frame>`` the 1-based pose frame index in 6 digits, e.g. ``frames_root/S9/Directions 1.54138969/000001.jpg``;
every camera folder found for an action becomes one sequence.  Or the original videos (:mod:`nlrd.data.video`,
the ``video`` extra), ``videos_root/<subject>/Videos/<action>.<camera>.mp4`` as the data set ships them, pose frame
``t`` being the video's ``t``-th frame (a video may run a few frames longer than its poses; the tail is unused).
The npz has no camera extrinsics, so clip poses are the *world-frame* root-relative poses for every camera: PA-MPJPE
(which removes rotation) is unaffected, but plain MPJPE against them also counts the camera's rotation relative to
the world, an approximation of camera-frame MPJPE.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from nlrd.core import ClipSet
from nlrd.data.errors import DatasetError
from nlrd.data.images import FramedSequence, Frames, ImageFiles, build_clips
from nlrd.data.safe_pickle import restricted_load
from nlrd.data.sequence import PoseSequence
from nlrd.data.video import VideoFrames

#: Recording rate of the Human3.6M poses and videos.
H36M_FPS = 50.0
#: Parent of each of the 32 recorded joints (-1 for the pelvis), as in VideoPose3D.
H36M_PARENTS_32: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19, 22, 12, 24, 25, 26, 27, 28, 27, 30,
)  # fmt: skip
#: Names of the 32 recorded joints ("Site" = an end site).
H36M_NAMES_32: tuple[str, ...] = (
    "Hips", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase", "Site", "LeftUpLeg", "LeftLeg", "LeftFoot",
    "LeftToeBase", "Site", "Spine", "Spine1", "Neck", "Head", "Site", "LeftShoulder", "LeftArm", "LeftForeArm",
    "LeftHand", "LeftHandThumb", "Site", "L_Wrist_End", "Site", "RightShoulder", "RightArm", "RightForeArm",
    "RightHand", "RightHandThumb", "Site", "R_Wrist_End", "Site",
)  # fmt: skip
#: The collar joints sit at the thorax: reading them as children of joint 13 gives the tree the shoulders really hang
#: from (VideoPose3D rewires its shoulders the same way).
H36M_COLLARS_AT: dict[int, int] = {16: 13, 24: 13}
#: H36M 32-joint index of each of our 17 joints (pelvis, thorax, right arm, left arm, head end site, legs to toe base).
H36M_TO_OURS: tuple[int, ...] = (0, 13, 25, 26, 27, 17, 18, 19, 15, 1, 2, 3, 4, 6, 7, 8, 9)
#: The cameras of Human3.6M, as they appear in VideoPose3D's file names.
H36M_CAMERAS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")


def read_npz_array(path: str | Path, key: str) -> np.ndarray:
    """One array of an ``.npz``; object arrays are unpickled with the restricted unpickler, never plainly."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: expected an .npz archive, found a single array")
    with archive:
        if key not in archive.files:
            raise DatasetError(f"{path}: no key {key!r}; the archive holds {archive.files}")
        try:
            return archive[key]
        except ValueError:
            pass  # an object array: its payload is a pickle, read below with the restricted unpickler
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(f"{path}[{key}]: unreadable .npy member ({exc})") from exc
    source = f"{path}[{key}]"
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as member:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(member)
            else:
                raise DatasetError(f"{source}: unsupported .npy format version {version}")
            array = restricted_load(member, source=source)
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(f"{source}: unreadable .npy member ({exc})") from exc
    if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
        raise DatasetError(
            f"{source}: the pickled payload is not the {dtype} array of shape {shape} its header declares"
        )
    return array


def _select(available: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """Action keys matching ``wanted`` names exactly or by their base name (``Directions`` -> ``Directions 1``)."""
    if wanted is None:
        return sorted(available)
    return sorted(key for key in available if key in wanted or key.split(" ")[0] in wanted)


def h36m_recordings(
    npz_path: str | Path, subjects: Sequence[str], actions: Sequence[str] | None
) -> list[tuple[str, str, np.ndarray]]:
    """``(subject, action, (T, 32, 3) metres)`` for the selected recordings, checked but not converted."""
    data = read_npz_array(npz_path, "positions_3d")
    if data.shape != () or not isinstance(data.item(), dict):
        raise DatasetError(f"{npz_path}[positions_3d]: expected a 0-d object array holding a dict, got {data.shape}")
    tree = data.item()
    out = []
    for subject in subjects:
        if subject not in tree or not isinstance(tree[subject], dict):
            raise DatasetError(f"{npz_path}: no subject {subject!r}; the file holds {sorted(tree)}")
        names = _select(list(tree[subject]), actions)
        if not names:
            raise DatasetError(
                f"{npz_path}: subject {subject} has no action in {list(actions or [])}; it has {sorted(tree[subject])}"
            )
        for action in names:
            positions = np.asarray(tree[subject][action])
            if positions.ndim != 3 or positions.shape[1:] != (32, 3) or not np.issubdtype(positions.dtype, np.number):
                raise DatasetError(
                    f"{npz_path} {subject}/{action}: expected (T, 32, 3) positions in metres, "
                    f"got {positions.dtype} {positions.shape}"
                )
            out.append((subject, action, positions))
    return out


def _h36m_sequences(
    npz_path: str | Path, subjects: Sequence[str], actions: Sequence[str] | None, source_fps: float
) -> list[tuple[str, str, PoseSequence]]:
    """``(subject, action, poses at the recording rate)`` for the selected recordings."""
    out = []
    for subject, action, positions in h36m_recordings(npz_path, subjects, actions):
        source = f"{npz_path} {subject}/{action}"
        if not np.isfinite(positions).all():
            raise DatasetError(f"{source}: positions contain NaN or infinite values")
        mm = positions[:, list(H36M_TO_OURS)].astype(np.float64) * 1000.0
        out.append((subject, action, PoseSequence.from_positions(mm, fps=source_fps, source=source)))
    return out


def load_h36m_poses(
    npz_path: str | Path,
    subjects: Sequence[str] = ("S9", "S11"),
    actions: Sequence[str] | None = None,
    fps: float | None = 30.0,
    source_fps: float = H36M_FPS,
) -> list[PoseSequence]:
    """Human3.6M recordings as world-frame 17-joint poses (mm, root-relative, z up), resampled to ``fps``.

    ``actions``: names such as ``"Directions"`` (matching ``Directions`` and ``Directions 1``) or exact keys;
    None takes every action.  ``fps=None`` keeps the ``source_fps`` recording rate.
    """
    sequences = [poses for _, _, poses in _h36m_sequences(npz_path, subjects, actions, source_fps)]
    return sequences if fps is None else [s.resample(fps) for s in sequences]


def h36m_camera_frames(
    subject: str,
    action: str,
    count: int,
    frames_root: Path | None,
    videos_root: Path | None,
    cameras: Sequence[str] | None,
) -> list[tuple[str, Frames]]:
    """``(camera id, frames)`` of one ``count``-frame recording, from its frame folders (under ``frames_root``) or
    videos (under ``videos_root``): every camera found when ``cameras`` is None, else exactly those (a missing one
    is an error)."""
    if frames_root is not None:
        kind, where, name, exists = "frame folder", frames_root / subject, "{}.{}", Path.is_dir
    else:
        kind, where, name, exists = "video", videos_root / subject / "Videos", "{}.{}.mp4", Path.is_file
    if cameras is None:
        found = sorted(p for p in where.glob(name.format(action, "*")) if exists(p))
        if not found:
            raise DatasetError(f"{where}: no {kind} '{name.format(action, '<camera>')}' for {subject}/{action}")
    else:
        found = [where / name.format(action, camera) for camera in cameras]
        missing = [str(p) for p in found if not exists(p)]
        if missing:
            raise DatasetError(f"{kind}s not found: {missing}")
    if frames_root is not None:
        return [(p.suffix[1:], ImageFiles(tuple(p / f"{t + 1:06d}.jpg" for t in range(count)))) for p in found]
    return [(p.name.rsplit(".", 2)[1], VideoFrames(p, count)) for p in found]


def load_h36m_clips(
    npz_path: str | Path,
    frames_root: str | Path | None,
    subjects: Sequence[str] = ("S9", "S11"),
    clip_len: int = 30,
    actions: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    fps: float = 25.0,
    image_size: int = 224,
    stride: int | None = None,
    max_clips: int | None = None,
    source_fps: float = H36M_FPS,
    videos_root: str | Path | None = None,
) -> ClipSet:
    """Labelled Human3.6M clips from pre-extracted frames (``frames_root``) or from the original videos
    (``videos_root``, needs PyAV); exactly one of the two.  Layouts are in the module docstring.

    Clips take every ``source_fps / fps``-th frame (a whole number: 25 fps = every 2nd frame at 50 fps), so frames
    and poses stay exactly paired.  ``cameras``: camera ids (default: every camera found for an action).
    Frames are centre-cropped to a square and resized to ``image_size``.  Poses are world-frame (see above).
    """
    if (frames_root is None) == (videos_root is None):
        raise DatasetError("Human3.6M clips need exactly one of frames_root (extracted frames) and videos_root")
    root = Path(frames_root if frames_root is not None else videos_root)
    if not root.is_dir():
        raise DatasetError(f"{root}: {'frames' if frames_root is not None else 'videos'} folder not found")
    frames_dir = None if frames_root is None else root
    videos_dir = None if videos_root is None else root
    items = []
    for subject, action, poses in _h36m_sequences(npz_path, subjects, actions, source_fps):
        for camera, frames in h36m_camera_frames(subject, action, len(poses), frames_dir, videos_dir, cameras):
            labelled = PoseSequence(poses.joints, poses.fps, poses.root, f"{poses.source} camera {camera}")
            items.append(FramedSequence(labelled, frames))
    return build_clips(items, clip_len, fps, image_size, stride=stride, max_clips=max_clips)

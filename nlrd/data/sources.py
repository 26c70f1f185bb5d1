"""Where each part of the data comes from: the proxy world or a real data set, as a space's ``data`` section says.

A :class:`DataConfig` names a source for each of the four parts of a ``nlrd.core.World``: the unpaired ``mocap``,
the labelled ``source`` clips, the unlabelled ``target_train`` clips (their labels, if the files have them, are
dropped) and the labelled ``target_val`` clips.  Each kind of source is a frozen dataclass that can

* ``check`` itself before anything starts: paths exist and are readable, each annotation file has its format's
  header and keys, the selected subjects/sequences exist, one recording is parsed and one frame decoded (a cheap
  probe, not a full read); problems raise :class:`DataConfigError` naming the key, the file and what was expected;
* ``fingerprint`` its files (paths, sizes, modification times), so a stage cache keyed on it is not served data
  built from files that changed since;
* load poses (``poses``) or clips (``clips``) with the loaders of ``nlrd.data``.

Paths are made absolute (``~`` expanded, relative to the current directory) when a source is built, so Ray workers
started in other directories read the same files.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nlrd.core import PARTS, ClipSet
from nlrd.data.bvh import UNITS_MM, UP_CHOICES, load_bvh_files, load_bvh_folder, read_joint_mapping
from nlrd.data.errors import DatasetError
from nlrd.data.h36m import H36M_FPS, h36m_camera_frames, h36m_recordings, load_h36m_clips, load_h36m_poses
from nlrd.data.images import Frames, ImageFiles
from nlrd.data.mpi_inf_3dhp import TEST_FPS, TEST_SEQUENCES, load_3dhp_clips, load_3dhp_framed, load_3dhp_test
from nlrd.data.pw3d import PW3D_FPS, SPLITS, load_3dpw, load_3dpw_clips, load_3dpw_file
from nlrd.data.sequence import PoseSequence
from nlrd.typed_fields import FieldError, field_types, known_keys, mapping, typed_value

#: Side (px) of the probe decode of one frame per source: enough to prove the file is an image.
_PROBE_PX = 8


class DataConfigError(DatasetError):
    """A data source that cannot be used; ``key`` is the offending key inside the source (``""``: the source)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def _stat(path: Path) -> list[Any]:
    """``[path, size, mtime_ns]`` of a file, ``[path, mtime_ns]`` of a folder, ``[path]`` when absent."""
    try:
        info = path.stat()
    except OSError:
        return [str(path)]
    return [str(path), info.st_mtime_ns] if path.is_dir() else [str(path), info.st_size, info.st_mtime_ns]


def _probe_frames(frames: Frames, key: str) -> None:
    """Decode the first frame, tiny: proves the frames are there and readable without reading them all."""
    try:
        frames.read(np.zeros(1, dtype=np.int64), _PROBE_PX, None)
    except DatasetError as exc:
        what = "image" if isinstance(frames, ImageFiles) else "video"
        raise DataConfigError(key, f"{exc} (expected the data set's {what} frames)") from None


class DataSource:
    """What every kind of source offers; see the module docstring."""

    kind: ClassVar[str]
    #: Whether the source has images, i.e. can fill a clip part.
    has_clips: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.metadata.get("path") and isinstance(getattr(self, f.name), str):
                object.__setattr__(self, f.name, _absolute(getattr(self, f.name)))

    def check(self, clips: bool) -> None:
        """Raise :class:`DataConfigError` unless the source can deliver poses (and clips, when ``clips``)."""

    def rates(self) -> dict[str, float]:
        """Recording frame rate of each part of the source that clips are cut from (a clip rate must divide it)."""
        return {}

    def files(self) -> Iterable[Path]:
        """The files and folders whose change changes the data."""
        return ()

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self), "files": [_stat(p) for p in self.files()]}

    def poses(self, fps: float) -> list[PoseSequence]:
        """Every selected recording as poses resampled to ``fps`` (real sources only)."""
        raise NotImplementedError(f"{self.kind} sources are not read as pose sequences")

    def clips(self, clip_len: int, fps: float, image_size: int, max_clips: int) -> ClipSet:
        """At most ``max_clips`` labelled ``clip_len``-frame clips at ``fps``, evenly spread (real sources only)."""
        raise NotImplementedError(f"{self.kind} sources have no clips to read")


def _path_field(default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"path": True})


@dataclass(frozen=True)
class WorldSource(DataSource):
    """The embedded proxy benchmark: procedural motion for ``mocap``; for a clip part, renders of the mocap part's
    motion (procedural, or real mocap when the mocap part is a real source) in that part's visual domain."""

    kind: ClassVar[str] = "world"


#: BVH files a check reads in full: one would do for names and units, but the up axis is judged by the set (a take
#: that lies down is not a wrong axis), so a few.
BVH_FILES_CHECKED = 3


@dataclass(frozen=True)
class BvhSource(DataSource):
    """A folder of BVH files (``pattern`` under ``path``), read by :func:`nlrd.data.load_bvh` with ``units``, ``up``
    and an optional joint ``mapping`` YAML file.  Motion only: it has no images."""

    kind: ClassVar[str] = "bvh"
    has_clips: ClassVar[bool] = False
    path: str = _path_field()
    pattern: str = "**/*.bvh"
    units: str | None = None
    up: str = "y"
    mapping: str | None = _path_field(None)

    def _paths(self) -> list[Path]:
        return sorted(p for p in Path(self.path).glob(self.pattern) if p.is_file())

    def check(self, clips: bool) -> None:
        if self.units is not None and self.units not in UNITS_MM:
            raise DataConfigError("units", f"must be one of {list(UNITS_MM)} or null (inferred), got {self.units!r}")
        if self.up not in UP_CHOICES:
            raise DataConfigError("up", f"must be one of {list(UP_CHOICES)}, got {self.up!r}")
        if not Path(self.path).is_dir():
            raise DataConfigError("path", f"{self.path}: folder not found (expected a folder of .bvh files)")
        paths = self._paths()
        if not paths:
            raise DataConfigError("pattern", f"{self.path}: no file matches {self.pattern!r} (expected .bvh files)")
        if self.mapping is not None:
            try:
                read_joint_mapping(self.mapping, self.mapping)
            except DatasetError as exc:
                raise DataConfigError("mapping", str(exc)) from None
        for path in paths:
            try:
                with path.open("rb") as handle:
                    head = handle.read(64).decode("utf-8-sig", errors="replace").split()
            except OSError as exc:
                raise DataConfigError("path", f"{path}: cannot read ({exc.strerror or exc})") from None
            if not head or head[0].upper() != "HIERARCHY":
                raise DataConfigError("path", f"{path}: not a BVH file (expected it to start with HIERARCHY)")
        try:  # a few files in full: joint names, units and axes are the likely mistakes, and they show on any file
            load_bvh_files(paths[:BVH_FILES_CHECKED], fps=None, units=self.units, mapping=self.mapping, up=self.up)
        except DatasetError as exc:
            raise DataConfigError("path", str(exc)) from None

    def files(self) -> Iterable[Path]:
        return [*self._paths(), *([] if self.mapping is None else [Path(self.mapping)])]

    def poses(self, fps: float) -> list[PoseSequence]:
        return load_bvh_folder(self.path, self.pattern, fps=fps, units=self.units, mapping=self.mapping, up=self.up)


@dataclass(frozen=True)
class H36MSource(DataSource):
    """Human3.6M in VideoPose3D's layout: ``npz`` (``data_3d_h36m.npz``) and, for clips, either ``frames`` (the
    extracted crops, ``frames/<subject>/<action>.<camera>/<frame:06d>.jpg``) or ``videos`` (the original videos,
    ``videos/<subject>/Videos/<action>.<camera>.mp4``, read with the ``video`` extra); see :mod:`nlrd.data.h36m`."""

    kind: ClassVar[str] = "h36m"
    npz: str = _path_field()
    subjects: tuple[str, ...] = ()
    frames: str | None = _path_field(None)
    videos: str | None = _path_field(None)
    actions: tuple[str, ...] | None = None
    cameras: tuple[str, ...] | None = None
    stride: int | None = None

    def check(self, clips: bool) -> None:
        if not self.subjects:
            raise DataConfigError("subjects", "needs at least one subject, e.g. [S9, S11]")
        if not Path(self.npz).is_file():
            raise DataConfigError(
                "npz", f"{self.npz}: file not found (expected VideoPose3D's data_3d_h36m.npz with key positions_3d)"
            )
        try:
            recordings = h36m_recordings(self.npz, self.subjects, self.actions)
        except DatasetError as exc:
            raise DataConfigError("npz", str(exc)) from None
        if self.frames is not None and self.videos is not None:
            raise DataConfigError("videos", "give frames (extracted JPEG frames) or videos, not both")
        if not clips:
            return
        if self.frames is None and self.videos is None:
            raise DataConfigError("frames", "is required for clips: the folder of extracted frames (or give videos)")
        key = "frames" if self.frames is not None else "videos"
        root = Path(self.frames if self.frames is not None else self.videos)
        if not root.is_dir():
            inside = "<subject>/<action>.<camera>/000001.jpg" if key == "frames" else "<subject>/Videos/*.mp4"
            raise DataConfigError(key, f"{root}: folder not found (expected {inside} inside)")
        frames_root, videos_root = (root, None) if key == "frames" else (None, root)
        probed: set[str] = set()
        for subject, action, _ in recordings:
            try:  # count 1: the probe reads frame 0 only, and the file lists stay short
                cameras = h36m_camera_frames(subject, action, 1, frames_root, videos_root, self.cameras)
            except DatasetError as exc:
                raise DataConfigError(key, str(exc)) from None
            if subject not in probed:  # one frame per subject
                _probe_frames(cameras[0][1], key)
                probed.add(subject)

    def rates(self) -> dict[str, float]:
        return {subject: H36M_FPS for subject in self.subjects}

    def files(self) -> Iterable[Path]:
        out = [Path(self.npz)]
        if self.frames is not None:
            out += sorted(p for s in self.subjects for p in (Path(self.frames) / s).glob("*.*") if p.is_dir())
        if self.videos is not None:
            out += sorted(p for s in self.subjects for p in (Path(self.videos) / s / "Videos").glob("*.mp4"))
        return out

    def poses(self, fps: float) -> list[PoseSequence]:
        return load_h36m_poses(self.npz, self.subjects, self.actions, fps=fps)

    def clips(self, clip_len: int, fps: float, image_size: int, max_clips: int) -> ClipSet:
        return load_h36m_clips(
            self.npz,
            self.frames,
            self.subjects,
            videos_root=self.videos,
            clip_len=clip_len,
            actions=self.actions,
            cameras=self.cameras,
            fps=fps,
            image_size=image_size,
            stride=self.stride,
            max_clips=max_clips,
        )


@dataclass(frozen=True)
class MPI3DHPSource(DataSource):
    """The MPI-INF-3DHP test set under ``root`` (``TSk/annot_data.mat``, ``TSk/imageSequence/img_XXXXXX.jpg``);
    see :mod:`nlrd.data.mpi_inf_3dhp`.  Its clips are evaluated on ``EVAL_JOINTS_3DHP`` (no feet)."""

    kind: ClassVar[str] = "3dhp"
    root: str = _path_field()
    sequences: tuple[str, ...] = TEST_SEQUENCES
    stride: int | None = None

    def check(self, clips: bool) -> None:
        unknown = [s for s in self.sequences if s not in TEST_FPS]
        if unknown or not self.sequences:
            raise DataConfigError("sequences", f"must be some of {list(TEST_SEQUENCES)}, got {list(self.sequences)}")
        if not Path(self.root).is_dir():
            raise DataConfigError("root", f"{self.root}: folder not found (expected TS1..TS6/annot_data.mat inside)")
        try:
            items = load_3dhp_framed(self.root, self.sequences, TEST_FPS)
        except DatasetError as exc:
            raise DataConfigError("root", f"{exc} (expected the MATLAB v7.3 annot_data.mat of the test set)") from None
        if not items:
            raise DataConfigError("root", f"{self.root}: no valid frame in {list(self.sequences)}")
        if clips:
            _probe_frames(items[0].frames, "root")

    def rates(self) -> dict[str, float]:
        return {name: TEST_FPS[name] for name in self.sequences}

    def files(self) -> Iterable[Path]:
        root = Path(self.root)
        return [p for s in self.sequences for p in (root / s / "annot_data.mat", root / s / "imageSequence")]

    def poses(self, fps: float) -> list[PoseSequence]:
        return load_3dhp_test(self.root, self.sequences, fps=fps)

    def clips(self, clip_len: int, fps: float, image_size: int, max_clips: int) -> ClipSet:
        return load_3dhp_clips(
            self.root, self.sequences, clip_len, fps, image_size, stride=self.stride, max_clips=max_clips
        )


@dataclass(frozen=True)
class PW3DSource(DataSource):
    """3DPW under ``root`` (``sequenceFiles/<split>/*.pkl``, ``imageFiles/<sequence>/image_XXXXX.jpg``), read through
    the restricted unpickler unless ``trust_pickles``; see :mod:`nlrd.data.pw3d`."""

    kind: ClassVar[str] = "3dpw"
    root: str = _path_field()
    split: str = "test"
    sequences: tuple[str, ...] | None = None
    trust_pickles: bool = False
    stride: int | None = None

    def _pickles(self) -> list[Path]:
        paths = sorted((Path(self.root) / "sequenceFiles" / self.split).glob("*.pkl"))
        return paths if self.sequences is None else [p for p in paths if p.stem in self.sequences]

    def check(self, clips: bool) -> None:
        if self.split not in SPLITS:
            raise DataConfigError("split", f"must be one of {list(SPLITS)}, got {self.split!r}")
        folder = Path(self.root) / "sequenceFiles" / self.split
        if not folder.is_dir():
            raise DataConfigError("root", f"{folder}: folder not found (expected the 3DPW sequence .pkl files)")
        paths = self._pickles()
        missing = sorted(set(self.sequences or ()) - {p.stem for p in paths})
        if missing or not paths:
            raise DataConfigError("sequences", f"{folder}: no sequence files for {missing or 'any sequence'}")
        try:
            items = load_3dpw_file(paths[0], self.root, self.trust_pickles)
        except DatasetError as exc:
            raise DataConfigError("root", str(exc)) from None
        if clips and items:
            _probe_frames(items[0].frames, "root")

    def rates(self) -> dict[str, float]:
        return {self.split: PW3D_FPS}

    def files(self) -> Iterable[Path]:
        pickles = self._pickles()
        return [*pickles, *(Path(self.root) / "imageFiles" / p.stem for p in pickles)]

    def poses(self, fps: float) -> list[PoseSequence]:
        return load_3dpw(self.root, self.split, self.sequences, fps=fps, trust_pickles=self.trust_pickles)

    def clips(self, clip_len: int, fps: float, image_size: int, max_clips: int) -> ClipSet:
        return load_3dpw_clips(
            self.root,
            self.split,
            clip_len,
            self.sequences,
            fps=fps,
            image_size=image_size,
            stride=self.stride,
            max_clips=max_clips,
            trust_pickles=self.trust_pickles,
        )


#: Every kind of source, by the name a space gives it.
SOURCE_KINDS: dict[str, type[DataSource]] = {
    cls.kind: cls for cls in (WorldSource, BvhSource, H36MSource, MPI3DHPSource, PW3DSource)
}
#: Which kinds can fill each part of the data (``PARTS``: the fields of ``nlrd.core.World``).
PART_KINDS: dict[str, tuple[str, ...]] = {
    part: tuple(kind for kind, cls in SOURCE_KINDS.items() if part == "mocap" or cls.has_clips) for part in PARTS
}


@dataclass(frozen=True)
class DataConfig:
    """A source for each part, and ``fps``: the frame rate of the mocap windows and of every clip.

    Real mocap is resampled to ``fps``; clips take every n-th recorded frame, so ``fps`` must divide the recording
    rate of every real clip source (Human3.6M and MPI-INF-3DHP: 25; 3DPW: 30, 15 or 10).  The default, the proxy
    world everywhere at 30 fps, is the embedded benchmark.
    """

    fps: float = 30.0
    mocap: DataSource = WorldSource()
    source: DataSource = WorldSource()
    target_train: DataSource = WorldSource()
    target_val: DataSource = WorldSource()

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise DataConfigError("fps", f"must be a positive number of frames per second, got {self.fps!r}")
        for part in PARTS:
            source = getattr(self, part)
            if not isinstance(source, DataSource) or source.kind not in PART_KINDS[part]:
                kind = getattr(source, "kind", type(source).__name__)
                raise DataConfigError(f"{part}.kind", f"{kind!r} cannot fill {part}; allowed: {PART_KINDS[part]}")

    @property
    def is_proxy(self) -> bool:
        """Whether this is the default: the embedded proxy benchmark alone."""
        return self == DataConfig()

    def check(self) -> None:
        """Check every real source before anything starts; :class:`DataConfigError` keys are ``<part>.<key>``."""
        for part in PARTS:
            source = getattr(self, part)
            try:
                source.check(clips=part != "mocap")
            except DataConfigError as exc:
                raise DataConfigError(f"{part}.{exc.key}" if exc.key else part, str(exc)) from None
            if part == "mocap":
                continue
            for name, rate in source.rates().items():
                step = rate / self.fps
                if step < 1 - 1e-6 or abs(step - round(step)) > 1e-6:
                    raise DataConfigError(
                        "fps",
                        f"{self.fps:g} fps clips need every n-th frame of the {rate:g} fps recordings of {part} "
                        f"({source.kind} {name}), but the ratio is not a whole number; choose a rate that divides "
                        f"{rate:g}",
                    )

    def fingerprint(self) -> dict[str, Any]:
        """The config with each source's file stats: what a cache key of the data must hash."""
        return {"fps": self.fps, **{part: getattr(self, part).fingerprint() for part in PARTS}}

    @classmethod
    def from_mapping(cls, value: Any) -> DataConfig:
        """A space's ``data`` section, as YAML gives it: its structure (kinds, keys, types) is checked here, the
        files it names by :meth:`check`.  :class:`DataConfigError` keys are ``fps``, ``<part>`` or
        ``<part>.<field>`` (``""``: the section itself), so the reader can name the place in its file."""
        try:
            value = mapping("", value)
            known_keys("", value, ("fps", *PARTS))
            fps = typed_value("fps", float, value.get("fps", cls.fps))
            if fps <= 0:
                raise FieldError("fps", f"must be > 0, got {fps}")
            return cls(fps=fps, **{part: _source_from_mapping(part, value[part]) for part in PARTS if part in value})
        except FieldError as exc:
            raise DataConfigError(exc.key, str(exc)) from None


def _source_from_mapping(part: str, value: Any) -> DataSource:
    """One part's source: a ``kind`` (default ``world``) that can fill ``part``, and that kind's fields."""
    value = mapping(part, value)
    kind, allowed = value.get("kind", "world"), PART_KINDS[part]
    if kind not in allowed:
        close = difflib.get_close_matches(str(kind), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if isinstance(kind, str) and kind in SOURCE_KINDS:  # bvh in a clip part
            hint = f": {kind} has no images; set data.mocap to it and this part to world to render its motion"
        raise FieldError(f"{part}.kind", f"{kind!r} cannot fill {part}{hint}", allowed)
    source = SOURCE_KINDS[kind]
    types = field_types(source)
    known_keys(part, value, ["kind", *types])
    for f in dataclasses.fields(source):
        if f.default is dataclasses.MISSING and f.name not in value:
            raise FieldError(f"{part}.{f.name}", f"is required for kind {kind}")
    values = {name: typed_value(f"{part}.{name}", types[name], v) for name, v in value.items() if name != "kind"}
    for name, item in values.items():  # the only integers of a source are strides
        if isinstance(item, int) and not isinstance(item, bool) and item < 1:
            raise FieldError(f"{part}.{name}", f"must be at least 1, got {item}")
    return source(**values)

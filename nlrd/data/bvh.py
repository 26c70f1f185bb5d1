"""BVH motion capture -> :class:`PoseSequence`.

Parsing follows the BVH format: a HIERARCHY of ROOT/JOINT/End Site blocks with OFFSETs and per-joint CHANNELS
(any count and order; position channels are allowed on any joint), then MOTION with ``Frames``, ``Frame Time``
and one line of channel values per frame.  Rotation channels compose in the order listed, as intrinsic rotations
(``Zrotation Xrotation Yrotation`` is ``R = Rz @ Rx @ Ry`` acting on column vectors), angles in degrees.
Forward kinematics: a joint's position is ``parent_pos + parent_rot @ (offset + translation channels)`` and its
rotation ``parent_rot @ local_rot``; a root uses the identity as its parent.  End Sites become extra joints named
``<Joint>_end`` so that a mapping can point at them.

Joint mapping to the 17-joint skeleton: the user's ``mapping`` where it names a joint, else the first name of
:data:`BVH_NAMES` the file has; names match case-insensitively after dropping a namespace prefix (``mixamorig:Hips``).
The tables cover the CMU conversions, Mixamo, Unity, Daz/Poser, MakeHuman, Character Creator and the classic
Biovision names.
Choices: hip = ``*UpLeg`` (CMU's ``LHipJoint`` sits at the pelvis), knee = ``*Leg``, ankle = ``*Foot``,
foot = ``*ToeBase``/``*Toe``, else the End Site of ``*Foot`` (toward the toes), shoulder = ``*Arm``, elbow =
``*ForeArm``, wrist = ``*Hand``, and their counterparts in the other namings.  ``*Shoulder`` is the clavicle in CMU,
Mixamo and Unity rigs, and the shoulder joint only in a rig whose clavicle is ``*Collar``
(:data:`CANDIDATE_NEEDS`).  Neck = ``Neck``: our neck is the point the shoulders branch from, and in CMU files
``Neck`` (lower neck) starts where the clavicles do while ``Neck1`` is mid-neck.  A rig with no such joint (the arms
branch straight from the spine, no neck or thorax joint) gets a derived neck, the midpoint of its two shoulders
(``*Arm``): an approximation, since a rig's shoulder joints need not lie level with the base of its neck, nor on its
spine when the shoulders shrug or roll forward.  A ``mapping`` that names ``neck`` takes that joint instead (nothing
is derived), and the joints a mapping does not name still come from the tables.  Head-top = a ``HeadTop_End`` joint
(Mixamo), else the End Site of ``Head`` when the file has one (approximately the top of the skull), else the ``Head``
joint itself (the skull base: a head-top about 10-20 cm low).

Units: ``units`` (mm, cm, m, inches, or ``cmu`` = 1/0.45 inch, the unit of the CMU ASF/AMC data and of its common
BVH conversions) or, when None, inferred: the stature (the head-top's distance from the ankles' midpoint, the longer
of the rig's rest pose, every channel 0, and the median frame: folding the body only shortens it) must land in
1.2-2.2 m for exactly one unit; the ranges do not overlap, and when none fits the loader asks for ``units``.  Axes:
``up="y"`` (the BVH default) maps ``(x, y, z) -> (x, -z, y)``, a proper rotation (det +1, no mirroring): a character
facing +z with its left at +x ends up facing -y with its left at +x, like :func:`nlrd.skeleton.rest_pose_mm`.
``up="z"`` keeps the axes.  A file whose figure does not stand along ``up`` in its median frame is refused, naming the
axis it stands along; in a set of files (:func:`load_bvh_files`, a folder) a take that lies down loads when its rest
pose stands and at least half of the set does.  ``up="auto"`` takes the axis most of the set's figures stand along in
their median frames, and reads a file whose rest pose and frames both stand along the other axis along that one (a
collection mixing exporters loads as it is).  A take lying on its back in a y-up file stands along z, as a file that
turns a y-up rest pose to z by its root's rotation does: only the set tells them apart, so a lone file is read along
the axis its frames stand along.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from nlrd.data.errors import DatasetError
from nlrd.data.sequence import PoseSequence
from nlrd.skeleton import JOINT_NAMES

#: Millimetres per unit.
UNITS_MM: dict[str, float] = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "inches": 25.4, "cmu": 25.4 / 0.45}
#: Plausible stature (mm) for unit inference.
STATURE_RANGE_MM = (1200.0, 2200.0)
#: Proper rotations taking the file's axes to ours (z up).
UP_AXES: dict[str, np.ndarray] = {
    "y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "z": np.eye(3),
}
#: What ``up`` may be: an axis of :data:`UP_AXES`, or ``auto`` (each file's own, from how its figure stands).
UP_CHOICES = (*UP_AXES, "auto")

#: Candidate BVH joint names for each of our joints, in order of preference.  They cover the CMU conversions (Hips,
#: LHipJoint, LeftUpLeg, LeftLeg, LeftFoot, LeftToeBase, ..., Spine1, Neck, Neck1, Head, LeftShoulder, LeftArm, ...),
#: the common (Mixamo-like) naming (Hips, Spine, LeftUpLeg, ..., LeftToe(Base), Neck, Head, HeadTop_End), Unity's
#: (LeftUpperArm, LeftLowerArm, LeftUpperLeg, LeftLowerLeg, LeftToes), Daz/Poser's (hip, lShldr, lForeArm, lThigh,
#: lShin, lFoot), MakeHuman's (hip, lcollar, lshoulder, lelbow, lhand, lhip, lknee, lfoot, toe3-1.l), the classic
#: Biovision names (LeftCollar, LeftShoulder, LeftElbow, LeftWrist, LeftHip, LeftKnee, LeftAnkle, LeftToe) and
#: Reallusion Character Creator's (iClone; CC_Base_Hip, CC_Base_L_Clavicle, CC_Base_L_Upperarm, CC_Base_L_Forearm,
#: CC_Base_L_Hand, CC_Base_L_Thigh, CC_Base_L_Calf, CC_Base_L_Foot, CC_Base_L_ToeBase, CC_Base_NeckTwist01,
#: CC_Base_Head).
BVH_NAMES: dict[str, tuple[str, ...]] = {
    "pelvis": ("Hips", "hip", "CC_Base_Hip"),
    "neck": ("Neck", "CC_Base_NeckTwist01"),
    "r_shoulder": ("RightArm", "RightUpperArm", "rShldr", "RightShoulder", "rShoulder", "CC_Base_R_Upperarm"),
    "r_elbow": ("RightForeArm", "RightLowerArm", "rForeArm", "RightElbow", "rElbow", "CC_Base_R_Forearm"),
    "r_wrist": ("RightHand", "rHand", "RightWrist", "rWrist", "CC_Base_R_Hand"),
    "l_shoulder": ("LeftArm", "LeftUpperArm", "lShldr", "LeftShoulder", "lShoulder", "CC_Base_L_Upperarm"),
    "l_elbow": ("LeftForeArm", "LeftLowerArm", "lForeArm", "LeftElbow", "lElbow", "CC_Base_L_Forearm"),
    "l_wrist": ("LeftHand", "lHand", "LeftWrist", "lWrist", "CC_Base_L_Hand"),
    "head_top": ("HeadTop_End", "Head_end", "Head", "CC_Base_Head_end", "CC_Base_Head"),
    "r_hip": ("RightUpLeg", "RightUpperLeg", "rThigh", "RightHip", "rHip", "CC_Base_R_Thigh"),
    "r_knee": ("RightLeg", "RightLowerLeg", "rShin", "RightKnee", "rKnee", "CC_Base_R_Calf"),
    "r_ankle": ("RightFoot", "rFoot", "RightAnkle", "rAnkle", "CC_Base_R_Foot"),
    "r_foot": (
        "RightToeBase",
        "RightToe",
        "RightToes",
        "rToe",
        "toe3-1.r",
        "CC_Base_R_ToeBase",
        "RightFoot_end",
        "rFoot_end",
    ),
    "l_hip": ("LeftUpLeg", "LeftUpperLeg", "lThigh", "LeftHip", "lHip", "CC_Base_L_Thigh"),
    "l_knee": ("LeftLeg", "LeftLowerLeg", "lShin", "LeftKnee", "lKnee", "CC_Base_L_Calf"),
    "l_ankle": ("LeftFoot", "lFoot", "LeftAnkle", "lAnkle", "CC_Base_L_Foot"),
    "l_foot": (
        "LeftToeBase",
        "LeftToe",
        "LeftToes",
        "lToe",
        "toe3-1.l",
        "CC_Base_L_ToeBase",
        "LeftFoot_end",
        "lFoot_end",
    ),
}

#: Table names taken only when the file also has the named joint: a ``*Shoulder`` is the shoulder joint in a rig
#: that calls its clavicle ``*Collar`` (Biovision, MakeHuman), and the clavicle itself in CMU, Mixamo and Unity rigs.
CANDIDATE_NEEDS: dict[str, str] = {
    "RightShoulder": "RightCollar",
    "LeftShoulder": "LeftCollar",
    "rShoulder": "rCollar",
    "lShoulder": "lCollar",
}

#: Our joints a rig may lack, each derived as the midpoint of two of our other joints when the file has both.
DERIVED_MIDPOINTS: dict[str, tuple[str, str]] = {"neck": ("l_shoulder", "r_shoulder")}

#: A figure stands along the ``up`` axis when its head-top lies within this angle of straight above its ankles (read
#: in the median frame, and in the rest pose to tell a take lying down from a file with other axes).
UPRIGHT_DEG = 60.0

_AXIS = {"x": 0, "y": 1, "z": 2}
_CHANNEL = re.compile(r"^([xyz])(position|rotation)$", re.IGNORECASE)


@dataclass
class _Joint:
    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...]


def _normalise(name: str) -> str:
    return name.rsplit(":", 1)[-1].strip().lower()


class _Hierarchy:
    """Recursive-descent parser of the HIERARCHY section's whitespace-separated tokens."""

    def __init__(self, tokens: list[str], source: str) -> None:
        self.tokens, self.pos, self.source = tokens, 0, source
        self.joints: list[_Joint] = []

    def _next(self, expected: str) -> str:
        if self.pos >= len(self.tokens):
            raise DatasetError(f"{self.source}: HIERARCHY ends early, expected {expected}")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _expect(self, word: str) -> None:
        token = self._next(repr(word))
        if token.upper() != word.upper():
            raise DatasetError(f"{self.source}: HIERARCHY expected {word!r} but found {token!r}")

    def _number(self, what: str) -> float:
        token = self._next(what)
        try:
            return float(token)
        except ValueError:
            raise DatasetError(f"{self.source}: HIERARCHY expected a number for {what}, found {token!r}") from None

    def parse(self) -> list[_Joint]:
        self._expect("HIERARCHY")
        while self.pos < len(self.tokens):
            self._expect("ROOT")
            self._joint(parent=-1)
        if not self.joints:
            raise DatasetError(f"{self.source}: HIERARCHY has no ROOT joint")
        return self.joints

    def _joint(self, parent: int, end_site: bool = False) -> None:
        if end_site:
            self._expect("Site")
            name = f"{self.joints[parent].name}_end"
        else:
            words = []
            while (word := self._next("a joint name and '{'")) != "{":
                words.append(word)
            self.pos -= 1
            name = " ".join(words)
            if not name:
                raise DatasetError(f"{self.source}: HIERARCHY has a joint without a name")
        self._expect("{")
        index = len(self.joints)
        joint = _Joint(name=name, parent=parent, offset=np.zeros(3), channels=())
        self.joints.append(joint)
        while (keyword := self._next(f"'}}' closing joint {name!r}").upper()) != "}":
            if keyword == "OFFSET":
                joint.offset = np.array([self._number(f"OFFSET of {name!r}") for _ in range(3)])
            elif keyword == "CHANNELS" and not end_site:
                count = self._number(f"the CHANNELS count of {name!r}")
                if count != int(count) or count < 0:
                    raise DatasetError(f"{self.source}: joint {name!r} has a bad CHANNELS count {count}")
                channels = tuple(self._next(f"a channel name of {name!r}") for _ in range(int(count)))
                for channel in channels:
                    if not _CHANNEL.match(channel):
                        raise DatasetError(
                            f"{self.source}: joint {name!r} has an unknown channel {channel!r} "
                            "(expected Xposition/Yposition/Zposition/Xrotation/Yrotation/Zrotation)"
                        )
                joint.channels = channels
            elif keyword == "JOINT" and not end_site:
                self._joint(parent=index)
            elif keyword == "END" and not end_site:
                self._joint(parent=index, end_site=True)
            else:
                raise DatasetError(f"{self.source}: unexpected {keyword!r} inside joint {name!r}")


def _header_value(entry: tuple[int, str], key: str, source: str) -> float:
    """The finite number of a ``<key>: <number>`` line."""
    number, line = entry
    match = re.fullmatch(rf"{key}\s*:\s*(\S+)", line, flags=re.IGNORECASE)
    try:
        value = float(match.group(1)) if match else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(f"{source}: line {number}: expected '{key}: <number>', found {line!r}")
    return value


def _parse_motion(lines: list[str], first_line: int, num_channels: int, source: str) -> tuple[np.ndarray, float]:
    """The MOTION section (after its keyword): ``(frames, channels)`` float64 values and the frame time in s."""
    rest = [(first_line + i, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if len(rest) < 2:
        raise DatasetError(f"{source}: MOTION must start with 'Frames:' and 'Frame Time:' lines")
    frames, frame_time = _header_value(rest[0], "Frames", source), _header_value(rest[1], "Frame Time", source)
    rest = rest[2:]
    if frames != int(frames) or frames < 1:
        raise DatasetError(f"{source}: MOTION declares {frames} frames, expected a positive whole number")
    if frame_time <= 0:
        raise DatasetError(f"{source}: Frame Time must be positive, got {frame_time}")
    if len(rest) != int(frames):
        raise DatasetError(f"{source}: MOTION declares {int(frames)} frames but has {len(rest)} frame lines")
    values = np.empty((len(rest), num_channels))
    for row, (number, line) in enumerate(rest):
        fields = line.split()
        if len(fields) != num_channels:
            raise DatasetError(
                f"{source}: line {number} has {len(fields)} values, the hierarchy has {num_channels} channels"
            )
        try:
            values[row] = [float(v) for v in fields]
        except ValueError:
            raise DatasetError(f"{source}: line {number} has a value that is not a number: {line[:80]!r}") from None
        if not np.isfinite(values[row]).all():
            raise DatasetError(f"{source}: line {number} (frame {row}) has NaN or infinite values")
    return values, frame_time


def _forward_kinematics(joints: list[_Joint], motion: np.ndarray) -> np.ndarray:
    """World positions ``(T, J, 3)`` in file units and axes."""
    from scipy.spatial.transform import Rotation  # imported here: scipy.spatial takes ~0.5 s to import

    frames = motion.shape[0]
    positions = np.zeros((frames, len(joints), 3))
    rotations = np.zeros((frames, len(joints), 3, 3))
    column = 0
    for j, joint in enumerate(joints):
        local = np.tile(joint.offset, (frames, 1))
        rotation = np.tile(np.eye(3), (frames, 1, 1))
        for channel in joint.channels:
            axis, kind = _CHANNEL.match(channel).groups()
            values = motion[:, column]
            column += 1
            if kind.lower() == "position":
                local[:, _AXIS[axis.lower()]] += values
            else:
                rotation = rotation @ Rotation.from_euler(axis.upper(), values[:, None], degrees=True).as_matrix()
        if joint.parent < 0:
            positions[:, j], rotations[:, j] = local, rotation
        else:
            parent_rot = rotations[:, joint.parent]
            positions[:, j] = positions[:, joint.parent] + np.einsum("tij,tj->ti", parent_rot, local)
            rotations[:, j] = parent_rot @ rotation
    return positions


def read_joint_mapping(mapping: str | Path | Mapping[str, str] | None, source: str) -> dict[str, str]:
    """A user's joint mapping ``{our_joint_name: bvh_joint_name}``, given inline or as a YAML file, checked: every key
    one of our 17 joint names, every value a string; ``{}`` for None.

    Split out of :func:`load_bvh` so a data source can check its mapping before any BVH file is read.  ``source``
    names an inline mapping in the :class:`DatasetError` raised (a file is named by its path).
    """
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        path = Path(mapping)
        if not path.is_file():
            raise DatasetError(f"{path}: joint mapping file not found")
        try:
            mapping = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(mapping, Mapping):
            raise DatasetError(f"{path}: expected a YAML mapping {{our_joint_name: bvh_joint_name}}")
        source = str(path)
    unknown = sorted(set(mapping) - set(JOINT_NAMES))
    if unknown:
        raise DatasetError(f"{source}: joint mapping has unknown joints {unknown}; ours are {list(JOINT_NAMES)}")
    bad = {k: v for k, v in mapping.items() if not isinstance(v, str)}
    if bad:
        raise DatasetError(f"{source}: joint mapping values must be BVH joint names (strings), got {bad}")
    return dict(mapping)


def _map_joints(joints: list[_Joint], mapping: dict[str, str], source: str) -> list[tuple[int, ...]]:
    """For each of our 17 joints, the BVH joints whose mean position it takes: one joint, or two for a joint of
    :data:`DERIVED_MIDPOINTS` that neither the mapping nor the tables find."""
    by_name: dict[str, int] = {}
    for i, joint in enumerate(joints):
        by_name.setdefault(_normalise(joint.name), i)
    found: dict[str, int] = {}
    tried: dict[str, tuple[str, ...]] = {}
    for ours in JOINT_NAMES:
        if ours in mapping:
            candidates = tried[ours] = (mapping[ours],)
        else:
            candidates = tuple(
                c for c in BVH_NAMES[ours] if c not in CANDIDATE_NEEDS or _normalise(CANDIDATE_NEEDS[c]) in by_name
            )
            tried[ours] = tuple(c if c in candidates else f"{c} beside a {CANDIDATE_NEEDS[c]}" for c in BVH_NAMES[ours])
        index = next((by_name[_normalise(c)] for c in candidates if _normalise(c) in by_name), None)
        if index is not None:
            found[ours] = index
    groups, missing = [], []
    for ours in JOINT_NAMES:
        ends = DERIVED_MIDPOINTS.get(ours, ()) if ours not in mapping else ()
        if ours in found:
            groups.append((found[ours],))
        elif ends and all(end in found for end in ends):
            groups.append(tuple(found[end] for end in ends))
        else:
            derived = f", or the midpoint of {' and '.join(ends)}" if ends else ""
            missing.append(f"{ours} (tried {', '.join(tried[ours])}{derived})")
    if missing:
        raise DatasetError(
            f"{source}: cannot map {len(missing)} of our joints: {'; '.join(missing)}. The BVH has joints "
            f"{[j.name for j in joints]}; pass mapping={{our_joint_name: bvh_joint_name}} (or a YAML file of it)"
        )
    return groups


def _head_over_ankles(positions: np.ndarray) -> np.ndarray:
    """``(..., 3)``: the head-top relative to the ankles' midpoint, of ``(..., 17, 3)`` positions."""
    ankles = [JOINT_NAMES.index("r_ankle"), JOINT_NAMES.index("l_ankle")]
    return positions[..., JOINT_NAMES.index("head_top"), :] - positions[..., ankles, :].mean(axis=-2)


def _axis_name(vector: np.ndarray) -> str:
    """The signed file axis a vector points most along, e.g. ``-z``."""
    axis = int(np.argmax(np.abs(vector)))
    return f"{'-' if vector[axis] < 0 else '+'}{'xyz'[axis]}"


class NotUprightError(DatasetError):
    """A BVH figure that does not stand along the ``up`` axis in its median frame."""


def _stands(head_over_ankles: np.ndarray, up: str) -> bool:
    """Whether a head-top-over-the-ankles vector (file axes) points within :data:`UPRIGHT_DEG` of ``up``."""
    along_up = (UP_AXES[up] @ head_over_ankles)[2]
    return bool(along_up > math.cos(math.radians(UPRIGHT_DEG)) * np.linalg.norm(head_over_ankles))


def _upright_error(frames: np.ndarray, up: str, source: str, asked: str) -> NotUprightError:
    """Why the figure does not stand along ``up`` in its median frame (``frames`` ``(T, 3)``: head-top over the
    ankles in file axes).  ``asked``: the caller's ``up`` (``auto`` chose ``up``).

    The frames decide, not the rest pose: some files keep a y-up rest pose and turn every frame to stand along z by
    the root's rotation.  Without the check such a file, or a z-up file read as y-up, loads as a person lying on the
    floor.  A take that lies down (a crawl, a roll on the floor) cannot be told from those on its own;
    :func:`load_bvh_files` loads it when its rest pose stands and most of its set does.
    """
    axis = _axis_name(np.median(frames, axis=0))
    hint = {"+y": "up: y", "+z": "up: z"}.get(axis) if asked != "auto" else None
    advice = f"pass {hint} (or up: auto)" if hint else "the loader reads figures that stand along +y or +z"
    along = f"the file's {up} axis (up: {up})" if asked != "auto" else f"the file's {up} axis, which up: auto chose"
    return NotUprightError(
        f"{source}: the figure does not stand along {along}: seen from its ankles, its "
        f"head-top lies along the file's {axis} axis in the median frame; {advice} (a take that lies down, its rest "
        "pose standing, loads from a folder where most takes stand)"
    )


def _infer_units(rest: np.ndarray, frames: np.ndarray, source: str) -> float:
    """Millimetres per file unit, from the stature: the head-top's distance from the ankles (``rest`` ``(3,)`` and
    ``frames`` ``(T, 3)``, file units), the longer of the rest pose's and the median frame's.  A distance, not a
    height, so that the file's axes do not matter; the longer of the two because folding the body (a crouch, a
    seat, a bow) only shortens it, and a take may crouch throughout while a rest pose may be degenerate."""
    stature = max(float(np.linalg.norm(rest)), float(np.median(np.linalg.norm(frames, axis=-1))))
    low, high = STATURE_RANGE_MM
    fits = [name for name, mm in UNITS_MM.items() if low <= stature * mm <= high]
    if len(fits) != 1:
        readings = ", ".join(f"{stature * mm / 1000:.3g} m in {name}" for name, mm in UNITS_MM.items())
        raise DatasetError(
            f"{source}: cannot infer the length unit: the stature (head-top to the ankles) reads {readings}; "
            f"none lies in {low / 1000:g}-{high / 1000:g} m. Pass units= one of {list(UNITS_MM)}"
        )
    return UNITS_MM[fits[0]]


@dataclass(frozen=True)
class _Take:
    """A BVH file read in its own axes: our 17 joints (mm, ``(T, 17, 3)``), and the head-top over the ankles in each
    frame (``(T, 3)``) and in the rig's rest pose (``(3,)``), which decide the up axis."""

    source: str
    joints: np.ndarray
    frame_time: float
    frames: np.ndarray
    rest: np.ndarray

    def stands(self, up: str) -> bool:
        return _stands(np.median(self.frames, axis=0), up)

    def rest_stands(self, up: str) -> bool:
        return _stands(self.rest, up)

    def sequence(self, up: str, fps: float | None) -> PoseSequence:
        """The poses turned to z up, resampled to ``fps`` (None keeps the file's rate)."""
        sequence = PoseSequence.from_positions(
            self.joints @ UP_AXES[up].T, fps=1.0 / self.frame_time, source=self.source
        )
        return sequence if fps is None else sequence.resample(fps)


def _read_bvh(path: str | Path, units: str | None, mapping: str | Path | Mapping[str, str] | None) -> _Take:
    path = Path(path)
    source = str(path)
    if units is not None and units not in UNITS_MM:
        raise DatasetError(f"{source}: units must be one of {list(UNITS_MM)} or None, got {units!r}")
    if not path.is_file():
        raise DatasetError(f"{source}: BVH file not found")
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    motion_at = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    first = next((line.strip().upper() for line in lines if line.strip()), "")
    if first != "HIERARCHY" or motion_at is None:
        raise DatasetError(f"{source}: not a BVH file (expected a HIERARCHY section followed by a MOTION line)")
    joints = _Hierarchy(" ".join(lines[:motion_at]).split(), source).parse()
    groups = _map_joints(joints, read_joint_mapping(mapping, source), source)
    num_channels = sum(len(j.channels) for j in joints)
    values, frame_time = _parse_motion(lines[motion_at + 1 :], motion_at + 2, num_channels, source)

    def ours_of(positions: np.ndarray) -> np.ndarray:
        return np.stack([positions[:, list(group)].mean(axis=1) for group in groups], axis=1)

    ours = ours_of(_forward_kinematics(joints, values))
    rest = _head_over_ankles(ours_of(_forward_kinematics(joints, np.zeros((1, num_channels)))))[0]
    frames = _head_over_ankles(ours)
    scale = UNITS_MM[units] if units is not None else _infer_units(rest, frames, source)
    return _Take(source, ours * scale, frame_time, frames, rest)


def _check_up(up: str, source: str) -> None:
    if up not in UP_CHOICES:
        raise DatasetError(f"{source}: up must be one of {list(UP_CHOICES)}, got {up!r}")


def _set_up(takes: Sequence[_Take]) -> str:
    """``up="auto"``: the axis most takes' figures stand along in their median frames; on a tie, the one more of
    them also stand along in their rest poses, then ``y`` (the BVH convention)."""

    def votes(up: str) -> tuple[int, int]:
        standing = [take for take in takes if take.stands(up)]
        return len(standing), sum(take.rest_stands(up) for take in standing)

    return max(UP_AXES, key=votes)


def load_bvh(
    path: str | Path,
    fps: float | None = 30.0,
    units: str | None = None,
    mapping: str | Path | Mapping[str, str] | None = None,
    up: str = "y",
) -> PoseSequence:
    """Read a BVH file as 17-joint poses, root-relative mm, z up, resampled to ``fps`` (None keeps the file's rate).

    ``mapping``: ``{our_joint_name: bvh_joint_name}`` or a YAML file of it, consulted before the built-in tables.
    ``up``: ``y``, ``z`` or ``auto`` (the module's docstring).  Raises :class:`NotUprightError` when the figure does
    not stand along ``up`` in its median frame.
    """
    _check_up(up, str(path))
    take = _read_bvh(path, units, mapping)
    axis = _set_up([take]) if up == "auto" else up
    if not take.stands(axis):
        raise _upright_error(take.frames, axis, take.source, up)
    return take.sequence(axis, fps)


def load_bvh_files(
    paths: Sequence[str | Path],
    fps: float | None = 30.0,
    units: str | None = None,
    mapping: str | Path | Mapping[str, str] | None = None,
    up: str = "y",
) -> list[PoseSequence]:
    """Several BVH files of one recording set, as :func:`load_bvh` reads each, but a take that lies down (a crawl, a
    roll) loads: a file whose figure does not stand along ``up`` in its median frame loads when its rest pose does
    and at least half of the set stands.  A file whose rest pose does not stand either has other axes (its
    :class:`NotUprightError` is raised, unless ``up="auto"`` and both stand along the other axis), and a set that
    mostly does not stand is read with the wrong ``up`` (the first such file's error is raised, counted)."""
    if paths:
        _check_up(up, str(paths[0]))  # one value for the set: name the first file, as a refused read of it would
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = read_joint_mapping(mapping, str(mapping))  # the YAML file once for the set, not once a file
    takes = [_read_bvh(path, units, mapping) for path in paths]
    axis = _set_up(takes) if up == "auto" else up
    sequences, lying = [], []
    for take in takes:
        own = axis
        if not take.stands(axis):
            other = [a for a in UP_AXES if a != axis and take.stands(a) and take.rest_stands(a)]
            if up == "auto" and other:
                own = other[0]  # another exporter's file: it stands, at rest and moving, along its own axis
            elif take.rest_stands(axis):
                lying.append(_upright_error(take.frames, axis, take.source, up))
            else:
                raise _upright_error(take.frames, axis, take.source, up)
        sequences.append(take.sequence(own, fps))
    if len(lying) > len(takes) / 2:
        raise NotUprightError(
            f"{len(lying)} of {len(takes)} BVH files do not stand along up: {axis}; the first: {lying[0]}"
        )
    return sequences


def load_bvh_folder(folder: str | Path, pattern: str = "**/*.bvh", **kwargs) -> list[PoseSequence]:
    """Every BVH file under ``folder`` matching ``pattern`` (sorted by path), loaded with :func:`load_bvh_files`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: BVH folder not found")
    paths = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not paths:
        raise DatasetError(f"{folder}: no files match {pattern!r}")
    return load_bvh_files(paths, **kwargs)

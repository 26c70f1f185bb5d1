"""BVH loading: parsing, forward kinematics by hand, axes and handedness, units, joint names, errors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from nlrd import skeleton
from nlrd.data import DatasetError, load_bvh, load_bvh_files, load_bvh_folder
from nlrd.data.bvh import NotUprightError

ROT = "Zrotation Xrotation Yrotation"
ROOT_CHANNELS = f"Xposition Yposition Zposition {ROT}"


@dataclass
class J:
    """A BVH joint for the test writer: ``end`` is the End Site offset, or None for no End Site."""

    name: str
    offset: tuple[float, float, float]
    channels: str = ROT
    children: list[J] = field(default_factory=list)
    end: tuple[float, float, float] | None = None


def joints_of(j: J) -> list[J]:
    return [j] + [k for c in j.children for k in joints_of(c)]


def hierarchy_text(j: J, depth: int = 0, root: bool = True) -> str:
    pad = "  " * depth
    n = len(j.channels.split())
    lines = [
        f"{pad}{'ROOT' if root else 'JOINT'} {j.name}",
        f"{pad}{{",
        f"{pad}  OFFSET {' '.join(map(str, j.offset))}",
    ]
    lines.append(f"{pad}  CHANNELS {n} {j.channels}")
    lines += [hierarchy_text(c, depth + 1, root=False) for c in j.children]
    if j.end is not None:
        lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {' '.join(map(str, j.end))}", f"{pad}  }}"]
    lines.append(f"{pad}}}")
    return "\n".join(lines)


def bvh_text(root: J, frames: list[dict[str, dict[str, float]]], frame_time: float = 1 / 30) -> str:
    """``frames``: per frame, ``{joint: {channel: value}}``; unspecified channels are 0."""
    rows = []
    for frame in frames:
        values = []
        for j in joints_of(root):
            values += [frame.get(j.name, {}).get(c, 0.0) for c in j.channels.split()]
        rows.append(" ".join(f"{v:.6f}" for v in values))
    header = f"MOTION\nFrames: {len(frames)}\nFrame Time: {frame_time:.6f}"
    return f"HIERARCHY\n{hierarchy_text(root)}\n{header}\n" + "\n".join(rows) + "\n"


def leg(side: str, sign: float, toe: str = "ToeBase") -> J:
    s = "Left" if side == "L" else "Right"
    foot = J(f"{s}Foot", (0, -40, 0), children=[J(f"{s}{toe}", (0, -8, 12), end=(0, 0, 5))])
    return J(f"{s}UpLeg", (sign * 10, 0, 0), children=[J(f"{s}Leg", (0, -45, 0), children=[foot])])


def arm(side: str, sign: float) -> J:
    s = "Left" if side == "L" else "Right"
    hand = J(f"{s}Hand", (sign * 24, 0, 0), end=(sign * 8, 0, 0))
    return J(f"{s}Arm", (sign * 18, 0, 0), children=[J(f"{s}ForeArm", (sign * 28, 0, 0), children=[hand])])


def common_skeleton(scale: float = 1.0, head_end: bool = True, spine_channels: str = ROT) -> J:
    """A y-up person in cm facing +z with the left side at +x: stature (head-top above ankles) 165 cm."""
    head = J("Head", (0, 10, 0), end=(0, 15, 0) if head_end else None)
    neck = J("Neck", (0, 45, 0), children=[head, arm("L", 1), arm("R", -1)])
    root = J(
        "Hips", (0, 0, 0), ROOT_CHANNELS, [leg("L", 1), leg("R", -1), J("Spine", (0, 10, 0), spine_channels, [neck])]
    )
    if scale != 1.0:
        for j in joints_of(root):
            j.offset = tuple(v * scale for v in j.offset)
            j.end = None if j.end is None else tuple(v * scale for v in j.end)
    return root


STANDING = {"Hips": {"Yposition": 95.0}}


def write(tmp_path: Path, text: str, name: str = "take.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def index(name: str) -> int:
    return skeleton.JOINT_NAMES.index(name)


def chirality(joints: torch.Tensor) -> torch.Tensor:
    """det[left - right hip, up the trunk, ankle -> foot]: > 0 for our skeleton, < 0 for its mirror image."""
    across = joints[..., index("l_hip"), :] - joints[..., index("r_hip"), :]
    up = joints[..., index("neck"), :] - joints[..., index("pelvis"), :]
    forward = joints[..., index("l_foot"), :] - joints[..., index("l_ankle"), :]
    return torch.linalg.det(torch.stack([across, up, forward], dim=-1))


def rx(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def ours_mm(bvh_cm: np.ndarray) -> np.ndarray:
    """The y-up -> z-up conversion the loader must do, written out: (x, y, z) -> (x, -z, y), cm -> mm."""
    x, y, z = np.moveaxis(np.asarray(bvh_cm, dtype=float), -1, 0)
    return 10.0 * np.stack([x, -z, y], axis=-1)


def test_rest_pose_positions_units_and_head_end_site(tmp_path: Path) -> None:
    seq = load_bvh(write(tmp_path, bvh_text(common_skeleton(), [STANDING] * 3)), fps=None)
    assert seq.joints.shape == (3, 17, 3) and seq.fps == pytest.approx(30.0, rel=1e-4)  # Frame Time is rounded
    j = seq.joints[0].numpy()
    assert np.allclose(seq.root.numpy(), [0, 0, 950], atol=1e-3)  # cm inferred from the 165 cm stature
    assert np.allclose(j[index("l_hip")], ours_mm([10, 0, 0]), atol=1e-3)
    assert np.allclose(j[index("r_ankle")], ours_mm([-10, -85, 0]), atol=1e-3)
    assert np.allclose(j[index("l_foot")], ours_mm([10, -93, 12]), atol=1e-3)
    assert np.allclose(j[index("neck")], ours_mm([0, 55, 0]), atol=1e-3)
    assert np.allclose(j[index("r_wrist")], ours_mm([-70, 55, 0]), atol=1e-3)
    assert np.allclose(j[index("head_top")], ours_mm([0, 80, 0]), atol=1e-3)  # the Head's End Site


def test_head_top_falls_back_to_the_head_joint(tmp_path: Path) -> None:
    seq = load_bvh(write(tmp_path, bvh_text(common_skeleton(head_end=False), [STANDING])), units="cm")
    assert np.allclose(seq.joints[0, index("head_top")].numpy(), ours_mm([0, 65, 0]), atol=1e-3)


def test_forward_kinematics_root_yaw_and_knee_bend_by_hand(tmp_path: Path) -> None:
    frame = {
        "Hips": {"Xposition": 3.0, "Yposition": 95.0, "Zposition": -2.0, "Yrotation": 90.0},
        "LeftLeg": {"Xrotation": 90.0},
    }
    seq = load_bvh(write(tmp_path, bvh_text(common_skeleton(), [frame])), units="cm", fps=None)
    # Ry(90) takes +x to -z and +z to +x.  Hip: (3,95,-2) + (0,0,-10).  Knee: 45 cm below the hip.
    # Rx(90) turns the shin (0,-40,0) to (0,0,-40) (heel back), then Ry(90) to (-40,0,0).
    hip, knee, ankle = np.array([3, 95, -12]), np.array([3, 50, -12]), np.array([-37, 50, -12])
    root = np.array([3, 95, -2])
    assert np.allclose(seq.root[0].numpy(), ours_mm(root), atol=1e-3)
    assert np.allclose(seq.joints[0, index("l_hip")].numpy(), ours_mm(hip - root), atol=1e-3)
    assert np.allclose(seq.joints[0, index("l_knee")].numpy(), ours_mm(knee - root), atol=1e-3)
    assert np.allclose(seq.joints[0, index("l_ankle")].numpy(), ours_mm(ankle - root), atol=1e-3)
    # the right leg is straight: its ankle is straight below its hip (at +z after the yaw)
    assert np.allclose(seq.joints[0, index("r_ankle")].numpy(), ours_mm([0, -85, 10]), atol=1e-3)


@pytest.mark.parametrize(
    ("order", "matrix"),
    [
        ("Zrotation Xrotation Yrotation", rz(30) @ rx(40) @ ry(50)),
        ("Xrotation Yrotation Zrotation", rx(40) @ ry(50) @ rz(30)),
    ],
)
def test_rotation_channels_compose_in_listed_order(tmp_path: Path, order: str, matrix: np.ndarray) -> None:
    root = common_skeleton()
    root.channels = f"Xposition Yposition Zposition {order}"
    frame = {"Hips": {"Yposition": 95.0, "Zrotation": 30.0, "Xrotation": 40.0, "Yrotation": 50.0}}
    seq = load_bvh(write(tmp_path, bvh_text(root, [frame, STANDING, STANDING])), units="cm")  # upright mostly
    seq_of = order.replace("rotation", "").replace(" ", "")
    assert np.allclose(
        Rotation.from_euler(seq_of, [{"X": 40, "Y": 50, "Z": 30}[a] for a in seq_of], degrees=True).as_matrix(), matrix
    )
    expected_neck = matrix @ np.array([0, 55, 0])
    assert np.allclose(seq.joints[0, index("neck")].numpy(), ours_mm(expected_neck), atol=1e-3)
    other = rx(40) @ ry(50) @ rz(30) if order.startswith("Z") else rz(30) @ rx(40) @ ry(50)
    assert not np.allclose(seq.joints[0, index("neck")].numpy(), ours_mm(other @ np.array([0, 55, 0])), atol=1.0)


def test_position_channels_on_a_non_root_joint(tmp_path: Path) -> None:
    root = common_skeleton(spine_channels=f"Xposition Yposition Zposition {ROT}")
    frame = {"Hips": {"Yposition": 95.0, "Yrotation": 90.0}, "Spine": {"Xposition": 5.0, "Yposition": 2.0}}
    seq = load_bvh(write(tmp_path, bvh_text(root, [frame])), units="cm")
    # spine = root + Ry(90) @ ((0,10,0) + (5,2,0)) = root + (0, 12, -5); the neck is 45 above it
    assert np.allclose(seq.joints[0, index("neck")].numpy(), ours_mm([0, 57, -5]), atol=1e-3)
    assert np.allclose(seq.joints[0, index("l_hip")].numpy(), ours_mm([0, 0, -10]), atol=1e-3)


def test_y_up_conversion_keeps_the_persons_left_on_the_left(tmp_path: Path) -> None:
    seq = load_bvh(write(tmp_path, bvh_text(common_skeleton(), [STANDING])), units="cm")
    j = seq.joints[0]
    rest = skeleton.rest_pose_mm()
    assert j[index("l_hip"), 0] > 0 and j[index("r_hip"), 0] < 0  # facing -y, left at +x, like the rest pose
    facing = torch.linalg.cross(j[index("l_hip")] - j[index("r_hip")], j[index("neck")] - j[0])
    rest_facing = torch.linalg.cross(rest[index("l_hip")] - rest[index("r_hip")], rest[index("neck")] - rest[0])
    assert torch.dot(facing, rest_facing) > 0
    assert chirality(j) > 0 and chirality(rest) > 0
    assert chirality(j * torch.tensor([-1.0, 1.0, 1.0])) < 0  # the test tells a mirror image apart
    assert chirality(skeleton.flip(j)) > 0  # a flip also swaps the left/right labels: a person again


def test_z_up_file_loads_like_the_y_up_file(tmp_path: Path) -> None:
    up = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    root = common_skeleton()
    frame = {"Hips": {"Zposition": 95.0}}
    for j in joints_of(root):
        j.offset = tuple(up @ np.array(j.offset))
        j.end = None if j.end is None else tuple(up @ np.array(j.end))
    z_up = load_bvh(write(tmp_path, bvh_text(root, [frame]), "z.bvh"), up="z")
    y_up = load_bvh(write(tmp_path, bvh_text(common_skeleton(), [STANDING]), "y.bvh"), up="y")
    assert torch.allclose(z_up.joints, y_up.joints, atol=1e-3) and torch.allclose(z_up.root, y_up.root, atol=1e-3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(angles=st.tuples(*[st.floats(-180, 180)] * 3), knee=st.floats(0, 120))
def test_random_root_rotation_keeps_bone_lengths_and_handedness(tmp_path: Path, angles, knee: float) -> None:
    hips = {"Yposition": 95.0, "Zrotation": angles[0], "Xrotation": angles[1], "Yrotation": angles[2]}
    frames = [STANDING, {"Hips": hips, "RightLeg": {"Xrotation": knee}}, STANDING]  # the median frame stands
    seq = load_bvh(write(tmp_path, bvh_text(common_skeleton(), frames)), units="cm")
    lengths = skeleton.measured_bone_lengths(seq.joints)
    assert torch.allclose(lengths[1], lengths[0], atol=1e-2)
    assert chirality(seq.joints[1]) > 0


@pytest.mark.parametrize(
    ("scale", "units"), [(10.0, "mm"), (1.0, "cm"), (0.01, "m"), (1 / 2.54, "inches"), (0.45 / 2.54, "cmu")]
)
def test_units_are_inferred_from_stature(tmp_path: Path, scale: float, units: str) -> None:
    frame = {"Hips": {"Yposition": 95.0 * scale}}
    inferred = load_bvh(write(tmp_path, bvh_text(common_skeleton(scale), [frame])))
    explicit = load_bvh(write(tmp_path, bvh_text(common_skeleton(scale), [frame])), units=units)
    assert torch.allclose(inferred.joints, explicit.joints)
    assert inferred.joints[0, index("head_top"), 2] == pytest.approx(800.0, abs=0.01)


def test_implausible_stature_asks_for_units(tmp_path: Path) -> None:
    path = write(tmp_path, bvh_text(common_skeleton(0.1), [{"Hips": {"Yposition": 9.5}}]))
    with pytest.raises(DatasetError, match=r"take.bvh: cannot infer the length unit.*Pass units="):
        load_bvh(path)
    assert load_bvh(path, units="m").joints[0, index("head_top"), 2] == pytest.approx(8000.0, abs=0.1)
    with pytest.raises(DatasetError, match="units must be one of"):
        load_bvh(path, units="furlong")


def test_resampling_from_the_frame_time(tmp_path: Path) -> None:
    frames = [{"Hips": {"Yposition": 95.0, "Xposition": float(t)}} for t in range(11)]
    path = write(tmp_path, bvh_text(common_skeleton(), frames, frame_time=0.02))
    native = load_bvh(path, fps=None)
    assert native.fps == pytest.approx(50.0) and len(native) == 11
    half = load_bvh(path, fps=25.0)
    assert len(half) == 6 and torch.allclose(half.root[:, 0], torch.arange(0, 11, 2) * 10.0, atol=1e-3)


def cmu_skeleton() -> J:
    """CMU naming (in CMU units: 1/0.45 inch): LHipJoint at the pelvis, Neck/Neck1, clavicles off Spine1."""

    def side(s: str, sign: float) -> tuple[J, J]:
        hip = J(f"{s[0]}HipJoint", (0, 0, 0), children=[leg(s[0], sign)])
        clavicle = J(f"{s}Shoulder", (sign * 1, 0.5, 0), children=[arm(s[0], sign)])
        return hip, clavicle

    for j in (lh := side("Left", 1))[0], (rh := side("Right", -1))[0]:
        for k in joints_of(j):
            k.offset = tuple(v * 0.18 for v in k.offset)  # the leg() helper is in cm: make a CMU-sized leg
            k.end = None if k.end is None else tuple(v * 0.18 for v in k.end)
    head = J("Head", (0, 1.5, 0), end=(0, 2.5, 0))
    neck = J("Neck", (0, 0, 0), children=[J("Neck1", (0, 1.5, 0), children=[head])])
    spine1 = J("Spine1", (0, 4, 0), children=[neck, lh[1], rh[1]])
    back = J("LowerBack", (0, 1, 0), children=[J("Spine", (0, 4, 0), children=[spine1])])
    return J("Hips", (0, 0, 0), ROOT_CHANNELS, [lh[0], rh[0], back])


def test_cmu_naming(tmp_path: Path) -> None:
    seq = load_bvh(write(tmp_path, bvh_text(cmu_skeleton(), [{"Hips": {"Yposition": 17.0}}])))
    mm = 25.4 / 0.45  # inferred: the stature is about 30 CMU units
    j = seq.joints[0].numpy()
    assert np.allclose(j[index("l_hip")], [10 * 0.18 * mm, 0, 0], atol=1e-2)  # LeftUpLeg, not LHipJoint
    assert np.allclose(j[index("l_foot")], [10 * 0.18 * mm, -12 * 0.18 * mm, -93 * 0.18 * mm], atol=1e-2)
    assert np.allclose(j[index("neck")], [0, 0, 9 * mm], atol=1e-2)  # Neck (base), not Neck1
    assert np.allclose(j[index("head_top")], [0, 0, 14.5 * mm], atol=1e-2)
    assert np.allclose(j[index("l_shoulder")], [(1 + 18) * mm, 0, 9.5 * mm], atol=1e-2)  # LeftArm


def test_mixamo_names_and_head_top_joint(tmp_path: Path) -> None:
    root = common_skeleton()
    head = next(j for j in joints_of(root) if j.name == "Head")
    head.end, head.children = None, [J("HeadTop_End", (0, 15, 0), end=(0, 5, 0))]
    for j in joints_of(root):
        j.name = f"mixamorig:{j.name}"
    seq = load_bvh(write(tmp_path, bvh_text(root, [{"mixamorig:Hips": {"Yposition": 95.0}}])))
    assert seq.joints[0, index("head_top"), 2] == pytest.approx(800.0, abs=1e-3)  # HeadTop_End, not Head or its end


def test_user_mapping_yaml(tmp_path: Path) -> None:
    root = common_skeleton()
    for j in joints_of(root):
        j.name = {"LeftToeBase": "L_Toe", "Neck": "ChestTop"}.get(j.name, j.name)
    path = write(tmp_path, bvh_text(root, [STANDING]))
    with pytest.raises(DatasetError, match=r"cannot map 1 of our joints: l_foot .*'ChestTop'"):
        load_bvh(path)  # the neck, unnamed, is the shoulders' midpoint; the foot has nothing to derive it from
    mapping = tmp_path / "map.yaml"
    mapping.write_text(yaml.safe_dump({"neck": "ChestTop", "l_foot": "L_Toe"}))
    seq = load_bvh(path, mapping=mapping)
    assert np.allclose(seq.joints[0, index("l_foot")].numpy(), ours_mm([10, -93, 12]), atol=1e-3)
    assert np.allclose(seq.joints[0, index("neck")].numpy(), ours_mm([0, 55, 0]), atol=1e-3)
    with pytest.raises(DatasetError, match="cannot map 1 of our joints: neck"):
        load_bvh(path, mapping={"neck": "Chest", "l_foot": "L_Toe"})
    with pytest.raises(DatasetError, match="unknown joints \\['nose'\\]"):
        load_bvh(path, mapping={"nose": "Head"})
    with pytest.raises(DatasetError, match="mapping file not found"):
        load_bvh(path, mapping=tmp_path / "absent.yaml")


def neckless_skeleton() -> J:
    """A rig whose arms and head branch straight from the chest: no neck or thorax joint.  The shoulder joints sit
    5 cm above the chest joint, so their midpoint is not a joint of the file."""
    arms = [arm("L", 1), arm("R", -1)]
    for upper in arms:
        upper.offset = (upper.offset[0], 5.0, 0.0)
    chest = J("Chest", (0, 40, 0), children=[J("Head", (0, 15, 0), end=(0, 15, 0)), *arms])
    return J("Hips", (0, 0, 0), ROOT_CHANNELS, [leg("L", 1), leg("R", -1), J("Spine", (0, 10, 0), children=[chest])])


def test_a_rig_without_a_neck_gets_the_shoulders_midpoint(tmp_path: Path) -> None:
    frames = [{**STANDING, "Chest": {"Zrotation": 4.0 * t, "Xrotation": 3.0 * t}} for t in range(5)]
    path = write(tmp_path, bvh_text(neckless_skeleton(), frames))
    seq = load_bvh(path, fps=None)
    joints = seq.joints.numpy()
    assert np.allclose(joints[0, index("neck")], ours_mm([0, 55, 0]), atol=1e-3)
    assert np.allclose(joints[0, index("l_shoulder")], ours_mm([18, 55, 0]), atol=1e-3)
    midpoint = (joints[:, index("l_shoulder")] + joints[:, index("r_shoulder")]) / 2
    assert np.allclose(joints[:, index("neck")], midpoint, atol=1e-3)
    assert not np.allclose(joints[-1, index("neck")], joints[0, index("neck")], atol=1.0)  # it follows the chest
    chest = load_bvh(path, fps=None, mapping={"neck": "Chest"})  # a named joint wins over the derived one
    assert np.allclose(chest.joints[0, index("neck")].numpy(), ours_mm([0, 50, 0]), atol=1e-3)
    derived = r"neck \(tried Neck, CC_Base_NeckTwist01, or the midpoint of l_shoulder and r_shoulder\)"
    with pytest.raises(DatasetError, match=derived):
        load_bvh(path, mapping={"l_shoulder": "LeftClavicle"})


def test_folder_loads_every_file_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    write(tmp_path / "b", bvh_text(common_skeleton(), [STANDING] * 2), "x.bvh")
    write(tmp_path, bvh_text(common_skeleton(), [STANDING] * 4), "a.bvh")
    sequences = load_bvh_folder(tmp_path, units="cm")
    assert [len(s) for s in sequences] == [4, 2] and sequences[0].source.endswith("a.bvh")
    with pytest.raises(DatasetError, match="no files match"):
        load_bvh_folder(tmp_path / "b", pattern="*.txt")
    with pytest.raises(DatasetError, match="BVH folder not found"):
        load_bvh_folder(tmp_path / "nothing")


def test_missing_file_and_not_a_bvh(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"absent.bvh: BVH file not found"):
        load_bvh(tmp_path / "absent.bvh")
    with pytest.raises(DatasetError, match="not a BVH file"):
        load_bvh(write(tmp_path, "just some text\n", "notes.bvh"))
    (tmp_path / "binary.bvh").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="not a BVH file"):
        load_bvh(tmp_path / "binary.bvh")


def good_text() -> str:
    return bvh_text(common_skeleton(), [STANDING] * 3)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.rsplit("\n", 2)[0] + "\n", r"declares 3 frames but has 2 frame lines"),
        (lambda t: t[: t.rindex(" ")] + "\n", r"line \d+ has \d+ values, the hierarchy has \d+ channels"),
        (lambda t: t[: t.rindex(" ")] + " nan\n", r"line \d+ \(frame 2\) has NaN"),
        (lambda t: t[: t.rindex(" ")] + " abc\n", r"line \d+ has a value that is not a number"),
        (lambda t: t.replace("Frame Time: ", "Frame Time: x"), r"expected 'Frame Time: <number>'"),
        (lambda t: t.replace("Frames: 3", "Frames: -1"), r"declares -1.0 frames"),
        (lambda t: t.replace("Frames: 3", "Frames: inf"), r"expected 'Frames: <number>'"),
        (lambda t: t.replace("Frame Time: ", "Frame Time: -"), r"Frame Time must be positive"),
        (lambda t: t.split("Frame Time")[0], r"MOTION must start with 'Frames:' and 'Frame Time:' lines"),
        (
            lambda t: t.replace("Zrotation Xrotation Yrotation", "Zrotation Wrotation Yrotation", 1),
            r"unknown channel 'Wrotation'",
        ),
        (lambda t: t.replace("OFFSET 0 10 0", "OFFSET 0 ten 0", 1), r"expected a number for OFFSET"),
        (lambda t: t.replace("JOINT LeftLeg", "BONE LeftLeg"), r"unexpected 'BONE'"),
        (lambda t: t.split("MOTION")[0].rsplit("}", 1)[0] + "MOTION\nFrames: 1\nFrame Time: 0.1\n0\n", r"ends early"),
    ],
)
def test_malformed_files_raise_dataset_errors(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(DatasetError, match=rf"take.bvh: .*{message}"):
        load_bvh(write(tmp_path, edit(good_text())), units="cm")


def test_too_short_for_a_clip(tmp_path: Path) -> None:
    seq = load_bvh(write(tmp_path, good_text(), "short.bvh"), fps=None)
    with pytest.raises(DatasetError, match=r"short.bvh: 3 frames, shorter than a clip of 8"):
        seq.windows(8)


def z_up_skeleton() -> J:
    """The common skeleton with its offsets turned so that it stands along +z (a z-up file)."""
    turn = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    root = common_skeleton()
    for j in joints_of(root):
        j.offset = tuple(turn @ np.array(j.offset))
        j.end = None if j.end is None else tuple(turn @ np.array(j.end))
    return root


def test_a_z_up_file_read_as_y_up_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, bvh_text(z_up_skeleton(), [{"Hips": {"Zposition": 95.0}}] * 2))
    message = r"take.bvh: the figure does not stand along the file's y axis \(up: y\).* \+z axis .*pass up: z"
    with pytest.raises(DatasetError, match=message):
        load_bvh(path, units="cm")  # named units: without the check it loaded a figure lying on the floor
    with pytest.raises(DatasetError, match=message):
        load_bvh(path)
    assert load_bvh(path, up="z").joints[0, index("head_top"), 2] == pytest.approx(800.0, abs=1e-3)
    upside_down = write(tmp_path, bvh_text(common_skeleton(), [{"Hips": {"Xrotation": 180.0}}]), "flipped.bvh")
    with pytest.raises(DatasetError, match=r"along the file's -y axis .*reads figures that stand along \+y"):
        load_bvh(upside_down, units="cm")


def test_the_frames_decide_the_up_axis_not_the_rest_pose(tmp_path: Path) -> None:
    """A y-up rest pose that the root's rotation stands along +z in every frame (some files are written so)."""
    standing_on_z = {"Hips": {"Zposition": 95.0, "Xrotation": 90.0}}
    path = write(tmp_path, bvh_text(common_skeleton(), [standing_on_z] * 2))
    with pytest.raises(DatasetError, match=r"the file's \+z axis in the median frame; pass up: z"):
        load_bvh(path)
    seq = load_bvh(path, up="z")
    assert seq.joints[0, index("head_top"), 2] == pytest.approx(800.0, abs=1e-3)  # cm inferred, standing
    assert chirality(seq.joints[0]) > 0


LYING = {"Hips": {"Yposition": 10.0, "Xrotation": 90.0}}  # the root turned onto its back: a take on the floor


def test_a_take_lying_down_is_refused_alone_and_loads_in_a_folder_that_stands(tmp_path: Path) -> None:
    folder = tmp_path / "takes"
    folder.mkdir()
    lying = write(folder, bvh_text(common_skeleton(), [LYING] * 3), "c_lying.bvh")
    with pytest.raises(NotUprightError, match=r"c_lying.bvh: .*a take that lies down, its rest pose standing, loads"):
        load_bvh(lying)
    for name in ("a.bvh", "b.bvh"):
        write(folder, bvh_text(common_skeleton(), [STANDING] * 3), name)
    a, _, c = load_bvh_folder(folder)  # units inferred for each, the lying take's from its length
    assert c.source.endswith("c_lying.bvh") and abs(c.joints[0, index("head_top"), 2]) < 1.0
    assert torch.allclose(a.joints, load_bvh(folder / "a.bvh", units="cm").joints)
    assert torch.allclose(c.joints, load_bvh_files([lying, folder / "a.bvh"], units="cm")[0].joints)


def test_a_z_up_file_among_y_up_files_is_refused_and_a_set_that_mostly_lies_is_counted(tmp_path: Path) -> None:
    for name in ("a.bvh", "b.bvh", "c.bvh"):
        write(tmp_path, bvh_text(common_skeleton(), [STANDING]), name)
    z_up = write(tmp_path, bvh_text(z_up_skeleton(), [{"Hips": {"Zposition": 95.0}}]), "d_z_up.bvh")
    with pytest.raises(NotUprightError, match=r"^\S*d_z_up.bvh: .*pass up: z"):  # its rest pose lies too: other axes
        load_bvh_folder(tmp_path)
    z_up.unlink()
    standing_on_z = {"Hips": {"Zposition": 95.0, "Xrotation": 90.0}}  # rest pose y-up, every frame turned to z
    for k in range(4):
        write(tmp_path, bvh_text(common_skeleton(), [standing_on_z]), f"e{k}.bvh")
    with pytest.raises(NotUprightError, match=r"^4 of 7 BVH files do not stand along up: y; the first: \S*e0.bvh"):
        load_bvh_folder(tmp_path)
    assert len(load_bvh_files(sorted(tmp_path.glob("e*.bvh")), up="z")) == 4


def test_up_auto_takes_the_sets_axis_and_reads_another_exporters_file_along_its_own(tmp_path: Path) -> None:
    """Mostly y-up takes, one z-up file (its rest pose and frames stand along z) and a take lying down (its rest pose
    stands along y): each loads as ``up`` named for it would load it."""
    turned = {"Hips": {"Zposition": 95.0, "Xrotation": 90.0}}  # a y-up rest pose the root stands along z
    files = {
        "a_y.bvh": (common_skeleton(), [STANDING] * 2, "y"),
        "b_z.bvh": (z_up_skeleton(), [{"Hips": {"Zposition": 95.0}}] * 2, "z"),
        "c_lying.bvh": (common_skeleton(), [LYING] * 2, "y"),
        "d_y.bvh": (common_skeleton(), [STANDING] * 2, "y"),
        "e_y.bvh": (common_skeleton(), [STANDING] * 2, "y"),
    }
    (tmp_path / "mixed").mkdir()
    (tmp_path / "turned").mkdir()
    for name, (root, frames, _) in files.items():
        write(tmp_path / "mixed", bvh_text(root, frames), name)
    auto = load_bvh_folder(tmp_path / "mixed", up="auto")
    for seq, (name, (_, _, up)) in zip(auto, files.items(), strict=True):
        path = tmp_path / "mixed" / name
        standing = sorted((tmp_path / "mixed").glob("*_y.bvh"))  # beside which a take lying down loads
        named = load_bvh_files([path, *standing], up=up)[0] if "lying" in name else load_bvh(path, up=up)
        assert torch.equal(seq.joints, named.joints), name
    assert torch.allclose(auto[1].joints, auto[0].joints, atol=1e-3)  # the z-up file reads like the y-up ones
    for k in range(3):  # a set written so: the set's frames decide, as up: z would
        write(tmp_path / "turned", bvh_text(common_skeleton(), [turned] * 2), f"t{k}.bvh")
    auto, named = load_bvh_folder(tmp_path / "turned", up="auto"), load_bvh_folder(tmp_path / "turned", up="z")
    assert all(torch.equal(a.joints, z.joints) for a, z in zip(auto, named, strict=True))
    lone = load_bvh(tmp_path / "mixed" / "c_lying.bvh", up="auto")  # alone, a take on its back is such a file
    assert torch.equal(lone.joints, load_bvh(tmp_path / "mixed" / "c_lying.bvh", up="z").joints)


def test_up_auto_refuses_a_figure_that_stands_along_neither_axis(tmp_path: Path) -> None:
    upside_down = write(tmp_path, bvh_text(common_skeleton(), [{"Hips": {"Xrotation": 180.0}}]), "flipped.bvh")
    message = r"flipped.bvh: .*the file's y axis, which up: auto chose: .* -y axis .*stand along \+y or \+z"
    with pytest.raises(NotUprightError, match=message):
        load_bvh(upside_down, units="cm", up="auto")
    with pytest.raises(DatasetError, match=r"up must be one of \['y', 'z', 'auto'\], got 'x'"):
        load_bvh(upside_down, up="x")


def test_units_come_from_the_rest_pose_when_the_take_crouches(tmp_path: Path) -> None:
    """A CMU-sized figure (about 1.3 m in CMU units) that crouches throughout: its frames alone read below 1.2 m."""
    scale = 130 / 165 * 0.45 / 2.54
    crouch = {
        "Hips": {"Yposition": 60.0 * scale},
        "Spine": {"Xrotation": 40.0},
        **{f"{s}UpLeg": {"Xrotation": -60.0} for s in ("Left", "Right")},
        **{f"{s}Leg": {"Xrotation": 90.0} for s in ("Left", "Right")},
    }
    path = write(tmp_path, bvh_text(common_skeleton(scale), [crouch] * 3))
    seq = load_bvh(path, fps=None)
    frames = seq.joints.numpy()
    between = frames[:, index("head_top")] - frames[:, [index("l_ankle"), index("r_ankle")]].mean(axis=1)
    assert np.linalg.norm(between, axis=-1).max() < 1200.0  # what a frame-based stature would have read
    assert torch.allclose(seq.joints, load_bvh(path, fps=None, units="cmu").joints)


def test_units_come_from_the_frames_when_the_rest_pose_is_degenerate(tmp_path: Path) -> None:
    """Every joint's OFFSET 0 and its bone in position channels (some exporters write rigs so): the rest pose is a
    point but for the End Sites."""
    root = common_skeleton()
    frame: dict[str, dict[str, float]] = {}
    for j in joints_of(root):
        frame[j.name] = dict(zip(("Xposition", "Yposition", "Zposition"), j.offset, strict=True))
        j.offset, j.channels = (0.0, 0.0, 0.0), f"Xposition Yposition Zposition {ROT}"
    frame["Hips"]["Yposition"] = 95.0
    seq = load_bvh(write(tmp_path, bvh_text(root, [frame])), fps=None)
    assert seq.joints[0, index("head_top"), 2] == pytest.approx(800.0, abs=1e-3)  # cm inferred


def clavicle_rig(names: dict[str, str], toe: bool = True) -> J:
    """The common skeleton with clavicles (5 cm from the neck; the shoulder joints at 18 cm, as before), its joints
    renamed from the generic names used here (``LeftClav``, ``LeftUpper``, ...) by ``names``.  Without ``toe`` the
    foot has an End Site where the toe joint was."""

    def n(generic: str) -> str:
        return names.get(generic, generic)

    def side(s: str, sign: float) -> tuple[J, J]:
        hand = J(n(f"{s}Wrist"), (sign * 24, 0, 0), end=(sign * 8, 0, 0))
        elbow = J(n(f"{s}Elbow"), (sign * 28, 0, 0), children=[hand])
        clavicle = J(n(f"{s}Clav"), (sign * 5, 0, 0), children=[J(n(f"{s}Upper"), (sign * 13, 0, 0), children=[elbow])])
        ankle = J(n(f"{s}Ankle"), (0, -40, 0), end=None if toe else (0, -8, 12))
        if toe:
            ankle.children = [J(n(f"{s}Toe"), (0, -8, 12), end=(0, 0, 5))]
        knee = J(n(f"{s}Knee"), (0, -45, 0), children=[ankle])
        return J(n(f"{s}Hip"), (sign * 10, 0, 0), children=[knee]), clavicle

    (left_hip, left_clav), (right_hip, right_clav) = side("Left", 1), side("Right", -1)
    neck = J(n("Neck"), (0, 45, 0), children=[J(n("Head"), (0, 10, 0), end=(0, 15, 0)), left_clav, right_clav])
    return J(n("Pelvis"), (0, 0, 0), ROOT_CHANNELS, [left_hip, right_hip, J(n("Chest"), (0, 10, 0), children=[neck])])


def generic(prefix: tuple[str, str], **parts: str) -> dict[str, str]:
    """Both sides' names from one side's: ``prefix`` is (left, right), e.g. ("Left", "Right") or ("l", "r")."""
    return {
        f"{side}{part}": name.format(s=p, side_dot=side[0].lower())
        for side, p in zip(("Left", "Right"), prefix, strict=True)
        for part, name in parts.items()
    }


RIG_NAMINGS = {
    "unity": {
        "Pelvis": "Hips",
        **generic(("Left", "Right"), Clav="{s}Shoulder", Upper="{s}UpperArm", Elbow="{s}LowerArm", Wrist="{s}Hand"),
        **generic(("Left", "Right"), Hip="{s}UpperLeg", Knee="{s}LowerLeg", Ankle="{s}Foot", Toe="{s}Toes"),
    },
    "biovision": {
        "Pelvis": "Hips",
        **generic(("Left", "Right"), Clav="{s}Collar", Upper="{s}Shoulder", Elbow="{s}Elbow", Wrist="{s}Wrist"),
        **generic(("Left", "Right"), Hip="{s}Hip", Knee="{s}Knee", Ankle="{s}Ankle", Toe="{s}Toe"),
    },
    "daz": {
        "Pelvis": "hip",
        "Chest": "abdomen",
        "Neck": "neck",
        "Head": "head",
        **generic(("l", "r"), Clav="{s}Collar", Upper="{s}Shldr", Elbow="{s}ForeArm", Wrist="{s}Hand"),
        **generic(("l", "r"), Hip="{s}Thigh", Knee="{s}Shin", Ankle="{s}Foot"),
    },
    "makehuman": {
        "Pelvis": "hip",
        "Chest": "chest",
        "Neck": "neck",
        "Head": "head",
        **generic(("l", "r"), Clav="{s}collar", Upper="{s}shoulder", Elbow="{s}elbow", Wrist="{s}hand"),
        **generic(("l", "r"), Hip="{s}hip", Knee="{s}knee", Ankle="{s}foot", Toe="toe3-1.{side_dot}"),
    },
    "character_creator": {
        "Pelvis": "CC_Base_Hip",
        "Chest": "CC_Base_Spine02",
        "Neck": "CC_Base_NeckTwist01",
        "Head": "CC_Base_Head",
        **generic(
            ("L", "R"),
            Clav="CC_Base_{s}_Clavicle",
            Upper="CC_Base_{s}_Upperarm",
            Elbow="CC_Base_{s}_Forearm",
            Wrist="CC_Base_{s}_Hand",
        ),
        **generic(
            ("L", "R"),
            Hip="CC_Base_{s}_Thigh",
            Knee="CC_Base_{s}_Calf",
            Ankle="CC_Base_{s}_Foot",
            Toe="CC_Base_{s}_ToeBase",
        ),
    },
}


@pytest.mark.parametrize("naming", sorted(RIG_NAMINGS))
def test_known_rig_namings(tmp_path: Path, naming: str) -> None:
    root = clavicle_rig(RIG_NAMINGS[naming], toe=naming != "daz")  # Daz's foot ends in an End Site
    seq = load_bvh(write(tmp_path, bvh_text(root, [STANDING])))
    j = seq.joints[0].numpy()
    assert np.allclose(j[index("l_shoulder")], ours_mm([18, 55, 0]), atol=1e-3)  # the shoulder, not the clavicle
    assert np.allclose(j[index("r_elbow")], ours_mm([-46, 55, 0]), atol=1e-3)
    assert np.allclose(j[index("l_wrist")], ours_mm([70, 55, 0]), atol=1e-3)
    assert np.allclose(j[index("neck")], ours_mm([0, 55, 0]), atol=1e-3)
    assert np.allclose(j[index("head_top")], ours_mm([0, 80, 0]), atol=1e-3)
    assert np.allclose(j[index("r_hip")], ours_mm([-10, 0, 0]), atol=1e-3)
    assert np.allclose(j[index("l_knee")], ours_mm([10, -45, 0]), atol=1e-3)
    assert np.allclose(j[index("r_ankle")], ours_mm([-10, -85, 0]), atol=1e-3)
    assert np.allclose(j[index("l_foot")], ours_mm([10, -93, 12]), atol=1e-3)
    assert chirality(seq.joints[0]) > 0


def test_a_shoulder_named_beside_no_collar_is_not_taken_for_the_shoulder_joint(tmp_path: Path) -> None:
    """In CMU, Mixamo and Unity rigs ``*Shoulder`` is the clavicle: a rig whose upper arm has an unknown name must not
    get its clavicle as the shoulder."""
    names = {**RIG_NAMINGS["unity"], "LeftUpper": "LeftUpArm", "RightUpper": "RightUpArm"}
    with pytest.raises(DatasetError, match=r"l_shoulder \(tried LeftArm, LeftUpperArm, lShldr, LeftShoulder beside a "):
        load_bvh(write(tmp_path, bvh_text(clavicle_rig(names), [STANDING])))

"""3DPW: restricted unpickling (Python 2 and 3 pickles), refusal without side effects, camera frame, clips."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from nlrd import skeleton
from nlrd.data import DatasetError, load_3dpw, load_3dpw_clips, restricted_load
from nlrd.data.pw3d import SMPL_TO_OURS

SMPL_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
OURS_TO_SMPL_NAME = {"head_top": "head", "r_foot": "right_foot", "l_foot": "left_foot"}
FRAMES = 6
K = np.array([[100.0, 0, 100], [0, 100.0, 100], [0, 0, 1]])


def ours_name_to_smpl(name: str) -> str:
    if name in OURS_TO_SMPL_NAME:
        return OURS_TO_SMPL_NAME[name]
    side = {"r": "right", "l": "left"}.get(name[:1]) if name[1:2] == "_" else None
    return f"{side}_{name[2:]}" if side else name


def test_smpl_table_by_name() -> None:
    assert [SMPL_NAMES[k] for k in SMPL_TO_OURS] == [ours_name_to_smpl(n) for n in skeleton.JOINT_NAMES]


def camera_person(t: int) -> np.ndarray:
    """``(24, 3)`` metres, camera frame (x right, y down, z forward): the rest pose facing the camera 4 m away,
    head-top rising 1 mm per frame; joints we do not use sit at the pelvis."""
    rest = skeleton.rest_pose_mm().numpy().astype(np.float64)
    rest[skeleton.JOINT_NAMES.index("head_top"), 2] += t
    out = np.zeros((24, 3))
    for ours, k in enumerate(SMPL_TO_OURS):
        x, y, z = rest[ours] / 1000.0
        out[k] = [x, -z, y]
    return out + np.array([0.0, 0.0, 4.0])


def world_record(name: str, valid: list[list[int]]) -> dict:
    """A 3DPW-style record: world-frame joints and per-frame world -> camera poses of a moving camera."""
    cam_poses, actors = np.zeros((FRAMES, 4, 4)), [np.zeros((FRAMES, 72)) for _ in valid]
    for t in range(FRAMES):
        rotation = Rotation.from_euler("YXZ", [20.0 * t, 5.0, -3.0], degrees=True).as_matrix()
        translation = np.array([0.1 * t, -0.2, 1.5])
        cam_poses[t] = np.block([[rotation, translation[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
        for actor in range(len(valid)):
            camera = camera_person(t) + np.array([actor * 1.0, 0, 0])
            actors[actor][t] = ((camera - translation) @ rotation).reshape(72)  # R^T (x - t), row-wise
    return {
        "sequence": name,
        "jointPositions": actors,
        "cam_poses": cam_poses,
        "campose_valid": [np.array(v, dtype=np.float64) for v in valid],
        "img_frame_ids": np.arange(FRAMES),
        "cam_intrinsics": K,
        "betas": [np.zeros(10) for _ in valid],
        "genders": ["m" for _ in valid],
        "tags": {"outdoor"},
    }


def py2_dumps(obj) -> bytes:
    """What Python 2's ``pickle.dump(obj, f, 2)`` writes for dicts, lists, str, int and NumPy arrays: byte strings
    (``U``/``T`` opcodes) for text and array data, ``numpy.core`` globals."""

    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<I", len(b)) + b

    def i(n: int) -> bytes:
        return b"J" + struct.pack("<i", n)

    def body(o) -> bytes:
        if isinstance(o, dict):
            return b"}(" + b"".join(body(k) + body(v) for k, v in o.items()) + b"u"
        if isinstance(o, list):
            return b"](" + b"".join(body(v) for v in o) + b"e"
        if isinstance(o, str):
            return s(o.encode("latin1"))
        if isinstance(o, int):
            return i(o)
        a = np.ascontiguousarray(o)
        shape = b"(" + b"".join(i(n) for n in a.shape) + b"t"
        dtype = b"cnumpy\ndtype\n" + s(a.dtype.str[1:].encode()) + b"K\x00K\x01\x87R(K\x03" + s(b"<")
        dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        head = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
        return head + b"(K\x01" + shape + dtype + b"\x89" + s(a.tobytes()) + b"tb"

    return b"\x80\x02" + body(obj) + b"."


def write_dataset(root: Path, split: str = "test", py2: bool = False) -> None:
    folder = root / "sequenceFiles" / split
    folder.mkdir(parents=True)
    for name, valid in (("downtown_walk_00", [[1] * FRAMES, [1, 1, 0, 1, 1, 1]]), ("office_phone_00", [[1] * FRAMES])):
        record = world_record(name, valid)
        if py2:
            record = {k: v for k, v in record.items() if k not in ("tags", "genders")}
            (folder / f"{name}.pkl").write_bytes(py2_dumps(record))
        else:
            with (folder / f"{name}.pkl").open("wb") as f:
                pickle.dump(record, f, protocol=2)


@pytest.mark.parametrize("py2", [False, True])
def test_loads_camera_frame_poses_from_both_pickle_dialects(tmp_path: Path, py2: bool) -> None:
    write_dataset(tmp_path, py2=py2)
    sequences = load_3dpw(tmp_path, fps=None)
    assert [len(s) for s in sequences] == [6, 2, 3, 6]  # actor 1 of downtown_walk is split at its invalid frame
    assert sequences[2].source.endswith("(downtown_walk_00) actor 1 frames 3-5") and sequences[0].fps == 30.0
    expected = skeleton.rest_pose_mm().clone()
    expected[8, 2] += 4
    # the moving camera is undone: every frame is the rest pose seen from the front, 4 m ahead
    assert torch.allclose(sequences[0].joints[4], expected, atol=1e-2)
    assert torch.allclose(sequences[0].root, torch.tensor([0.0, 4000.0, 0.0]).expand(6, 3), atol=1e-2)
    assert torch.allclose(sequences[2].root[0], torch.tensor([1000.0, 4000.0, 0.0]), atol=1e-2)
    j = sequences[0].joints[0]
    facing = torch.linalg.cross(j[13] - j[9], j[1] - j[0])
    assert j[13, 0] > 0 and facing[1] < 0  # facing the camera (-y) with the left hip at +x: not mirrored


def test_raw_py2_arrays_are_bytes_read_as_latin1() -> None:
    array = np.arange(300, dtype=np.float64).reshape(100, 3)  # > 255 bytes: the long string opcode too
    loaded = pickle.loads(py2_dumps({"a": array}), encoding="latin1")
    assert np.array_equal(loaded["a"], array)
    assert np.array_equal(restricted_load(io.BytesIO(py2_dumps({"a": array})))["a"], array)


def test_resampling_and_selection(tmp_path: Path) -> None:
    write_dataset(tmp_path, split="validation")
    (seq,) = load_3dpw(tmp_path, split="validation", sequences=["office_phone_00"], fps=15.0)
    assert seq.fps == 15.0 and len(seq) == 3
    with pytest.raises(DatasetError, match=r"no sequence files for \['nope'\]"):
        load_3dpw(tmp_path, split="validation", sequences=["nope"])
    with pytest.raises(DatasetError, match="sequence folder not found"):
        load_3dpw(tmp_path, split="train")
    with pytest.raises(DatasetError, match="split must be one of"):
        load_3dpw(tmp_path, split="val")


class Payload:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "sequenceFiles" / "test"
    folder.mkdir(parents=True)
    record = {**world_record("evil", [[1] * FRAMES]), "payload": Payload(marker)}
    (folder / "evil.pkl").write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(DatasetError, match=r"evil.pkl: refusing to unpickle the global (posix|os).system"):
        load_3dpw(tmp_path)
    assert not marker.exists()


def test_unknown_class_needs_explicit_trust(tmp_path: Path) -> None:
    folder = tmp_path / "sequenceFiles" / "test"
    folder.mkdir(parents=True)
    record = collections.OrderedDict(world_record("ordered", [[1] * FRAMES]))
    (folder / "ordered.pkl").write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to unpickle the global collections.OrderedDict"):
        load_3dpw(tmp_path)
    assert len(load_3dpw(tmp_path, trust_pickles=True)) == 1


def test_corrupt_and_incomplete_records(tmp_path: Path) -> None:
    folder = tmp_path / "sequenceFiles" / "test"
    folder.mkdir(parents=True)
    path = folder / "seq.pkl"
    path.write_bytes(pickle.dumps(world_record("seq", [[1] * FRAMES]), protocol=2)[:-40])
    with pytest.raises(DatasetError, match="seq.pkl: not a readable pickle"):
        load_3dpw(tmp_path)
    record = world_record("seq", [[1] * FRAMES])
    del record["cam_poses"]
    path.write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(DatasetError, match=r"seq.pkl: missing key 'cam_poses'"):
        load_3dpw(tmp_path)
    record = world_record("seq", [[1] * FRAMES])
    record["jointPositions"][0] = record["jointPositions"][0][:, :69]
    path.write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(DatasetError, match=r"\[jointPositions\]\[0\]: expected shape \(6, 72\), got \(6, 69\)"):
        load_3dpw(tmp_path)
    record = world_record("seq", [[1] * FRAMES])
    record["jointPositions"][0][2, 5] = np.nan
    path.write_bytes(pickle.dumps(record, protocol=2))
    with pytest.raises(DatasetError, match=r"actor 0 frames 0-5: joint positions contain NaN"):
        load_3dpw(tmp_path)
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DatasetError, match="expected a pickled dict, got list"):
        load_3dpw(tmp_path)


def test_clips_crop_around_the_projected_person(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    for name in ("downtown_walk_00", "office_phone_00"):
        folder = tmp_path / "imageFiles" / name
        folder.mkdir(parents=True)
        for t in range(FRAMES):
            image = np.zeros((200, 200, 3), dtype=np.uint8)
            image[56:144, 56:144] = 20 * t + 40  # the person (about 45 px tall at 4 m, f = 100 px); black around
            Image.fromarray(image).save(folder / f"image_{t:05d}.jpg", quality=95, subsampling=0)
    clips = load_3dpw_clips(tmp_path, sequences=["office_phone_00"], clip_len=3, stride=1, image_size=16)
    assert clips.frames.shape == (4, 3, 3, 16, 16) and clips.fps == 30.0
    frame_index = torch.arange(3)[None] + torch.arange(4)[:, None]
    assert torch.allclose(clips.poses[:, :, 8, 2] - skeleton.rest_pose_mm()[8, 2], frame_index.float(), atol=1e-2)
    assert torch.allclose(clips.frames.float().mean(dim=(2, 3, 4)), 20 * frame_index.float() + 40, atol=3.0)
    assert len(load_3dpw_clips(tmp_path, clip_len=3, image_size=16)) == 2 + 0 + 1 + 2  # actor runs of 6, 2, 3, 6

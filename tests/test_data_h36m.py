"""Human3.6M in VideoPose3D's layout: the 32 -> 17 table, restricted unpickling, poses and clips."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlrd import skeleton
from nlrd.data import DatasetError, load_h36m_clips, load_h36m_poses
from nlrd.data.h36m import H36M_COLLARS_AT, H36M_NAMES_32, H36M_PARENTS_32, H36M_TO_OURS, read_npz_array

WORLD_PELVIS_M = np.array([1.0, 2.0, 0.9])


def recording(frames: int) -> np.ndarray:
    """``(T, 32, 3)`` metres: the rest pose at the selected joints (head rising 1 mm a frame), pelvis walking +x."""
    out = np.zeros((frames, 32, 3), dtype=np.float32)
    rest = skeleton.rest_pose_mm().numpy() / 1000.0
    for t in range(frames):
        pose = rest.copy()
        pose[skeleton.JOINT_NAMES.index("head_top"), 2] += t / 1000.0
        full = np.repeat(pose[:1], 32, axis=0)
        full[list(H36M_TO_OURS)] = pose
        out[t] = full + WORLD_PELVIS_M + np.array([0.01 * t, 0, 0])
    return out


def write_npz(path: Path, tree: dict) -> Path:
    np.savez_compressed(path, positions_3d=np.array(tree, dtype=object))  # exactly VideoPose3D's layout
    return path


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    tree = {
        "S1": {"Walking": recording(4)},
        "S9": {"Directions 1": recording(12), "Directions": recording(6), "Walking": recording(5)},
        "S11": {"Directions 1": recording(7)},
    }
    return write_npz(tmp_path / "data_3d_h36m.npz", tree)


def ancestors(joint: int, parents: list[int]) -> list[int]:
    chain = []
    while parents[joint] >= 0:
        joint = parents[joint]
        chain.append(joint)
    return chain


def test_every_bone_of_ours_follows_an_h36m_chain() -> None:
    rewired = list(H36M_PARENTS_32)
    for child, parent in H36M_COLLARS_AT.items():
        rewired[child] = parent
    broken_without_rewiring = []
    for child in range(1, 17):
        h_child, h_parent = H36M_TO_OURS[child], H36M_TO_OURS[skeleton.PARENTS[child]]
        assert h_parent in ancestors(h_child, rewired), skeleton.JOINT_NAMES[child]
        if h_parent not in ancestors(h_child, list(H36M_PARENTS_32)):
            broken_without_rewiring.append(skeleton.JOINT_NAMES[child])
    # only the shoulders need the collars-at-thorax reading of the tree
    assert broken_without_rewiring == ["r_shoulder", "l_shoulder"]


def test_table_sides_and_names() -> None:
    assert len(H36M_PARENTS_32) == len(H36M_NAMES_32) == 32 and len(set(H36M_TO_OURS)) == 17
    for ours in skeleton.RIGHT:
        assert H36M_NAMES_32[H36M_TO_OURS[ours]].startswith("Right")
    for ours in skeleton.LEFT:
        assert H36M_NAMES_32[H36M_TO_OURS[ours]].startswith("Left")
    head_top = H36M_TO_OURS[skeleton.JOINT_NAMES.index("head_top")]
    assert H36M_NAMES_32[head_top] == "Site" and H36M_NAMES_32[H36M_PARENTS_32[head_top]] == "Head"
    assert [H36M_NAMES_32[H36M_TO_OURS[i]] for i in (0, 1, 12, 16)] == ["Hips", "Neck", "RightToeBase", "LeftToeBase"]


def test_poses_are_mm_root_relative_with_world_root(npz: Path) -> None:
    sequences = load_h36m_poses(npz, subjects=("S9",), fps=None)
    assert [s.source.split(" ", 1)[1] for s in sequences] == ["S9/Directions", "S9/Directions 1", "S9/Walking"]
    seq = sequences[1]
    assert len(seq) == 12 and seq.fps == 50.0
    expected = skeleton.rest_pose_mm().clone()
    assert torch.allclose(seq.joints[0], expected, atol=1e-2)
    expected[skeleton.JOINT_NAMES.index("head_top"), 2] += 11
    assert torch.allclose(seq.joints[11], expected, atol=1e-2)
    assert torch.allclose(seq.root[3], torch.tensor([1030.0, 2000.0, 900.0]), atol=1e-2)


def test_filters_and_resampling(npz: Path) -> None:
    assert len(load_h36m_poses(npz)) == 4  # S9 (3 actions) and S11 (1) by default; S1 is left out
    directions = load_h36m_poses(npz, actions=["Directions"], fps=25.0)
    assert [len(s) for s in directions] == [3, 6, 4]  # S9 Directions (6), Directions 1 (12); S11 Directions 1 (7)
    exact = load_h36m_poses(npz, subjects=("S9",), actions=["Directions 1"])
    assert len(exact) == 1 and exact[0].fps == 30.0 and len(exact[0]) == 7  # 0.22 s at 30 fps


def test_selection_errors(npz: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no subject 'S5'; the file holds \['S1', 'S11', 'S9'\]"):
        load_h36m_poses(npz, subjects=("S5",))
    with pytest.raises(DatasetError, match=r"subject S11 has no action in \['Walking'\]"):
        load_h36m_poses(npz, actions=["Walking"])
    with pytest.raises(DatasetError, match="file not found"):
        load_h36m_poses(tmp_path / "absent.npz")


def test_layout_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", positions_2d=np.zeros(3))
    with pytest.raises(DatasetError, match=r"other.npz: no key 'positions_3d'; the archive holds \['positions_2d'\]$"):
        load_h36m_poses(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DatasetError, match=r"single.npy: expected an .npz archive, found a single array$"):
        read_npz_array(tmp_path / "single.npy", "positions_3d")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(DatasetError, match="not a readable .npz archive"):
        load_h36m_poses(tmp_path / "text.npz")
    wrong = write_npz(tmp_path / "wrong.npz", {"S9": {"Walking": np.zeros((4, 17, 3))}})
    with pytest.raises(DatasetError, match=r"S9/Walking: expected \(T, 32, 3\)"):
        load_h36m_poses(wrong)
    bad = recording(4)
    bad[2, 5, 0] = np.nan
    with pytest.raises(DatasetError, match=r"S9/Walking: positions contain NaN"):
        load_h36m_poses(write_npz(tmp_path / "nan.npz", {"S9": {"Walking": bad}}), subjects=("S9",))
    with pytest.raises(DatasetError, match="expected a 0-d object array holding a dict"):
        load_h36m_poses(write_npz(tmp_path / "list.npz", [1, 2]))


class Payload:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_object_payload_is_never_fully_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, positions_3d=np.array({"S9": {"Walking": Payload(marker)}}, dtype=object))
    with pytest.raises(
        DatasetError, match=r"evil.npz\[positions_3d\]: refusing to unpickle the global (posix|os).system"
    ):
        load_h36m_poses(path)
    assert not marker.exists()
    with zipfile.ZipFile(path) as archive:
        assert b"system" in archive.read("positions_3d.npy")  # the payload really is there


def test_plain_arrays_read_without_pickle(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", positions_3d=np.arange(6.0))
    assert np.array_equal(read_npz_array(tmp_path / "plain.npz", "positions_3d"), np.arange(6.0))


def write_frames(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for t in range(count):
        # a 32 x 16 frame: grey level 10 t in the centre square, red bars at the sides that a centre crop removes
        # (4:4:4 JPEG: the bars sit in other 8 x 8 blocks than the centre square, so they cannot bleed into it)
        image = np.full((16, 32, 3), 10 * t, dtype=np.uint8)
        image[:, :4] = image[:, -4:] = (255, 0, 0)
        Image.fromarray(image).save(folder / f"{t + 1:06d}.jpg", quality=95, subsampling=0)


def test_clips_pair_frames_and_poses(npz: Path, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    for camera in ("54138969", "60457274"):
        write_frames(root / "S9" / f"Directions 1.{camera}", 12)
    clips = load_h36m_clips(npz, root, subjects=("S9",), actions=["Directions 1"], clip_len=3, fps=25.0, image_size=8)
    # 12 frames at 50 fps, every 2nd frame: a clip spans 5 recorded frames, starts 6 apart -> 2 clips per camera
    assert clips.frames.shape == (4, 3, 3, 8, 8) and clips.fps == 25.0 and clips.poses.shape == (4, 3, 17, 3)
    head_rise = clips.poses[:, :, skeleton.JOINT_NAMES.index("head_top"), 2] - skeleton.rest_pose_mm()[8, 2]
    assert torch.allclose(head_rise, torch.tensor([[0.0, 2, 4], [6, 8, 10]] * 2), atol=1e-2)
    grey = clips.frames.float().mean(dim=(2, 3, 4))
    assert torch.allclose(grey, 10 * head_rise, atol=3.0)  # frame t has grey level 10 t, and no red bar remains
    assert (
        clips.frames[..., 0, :, :].float().std() < 3 or (clips.frames[:, :, 0] - clips.frames[:, :, 1]).abs().max() < 6
    )


def test_clip_errors(npz: Path, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    write_frames(root / "S9" / "Directions 1.54138969", 5)
    kwargs = {"subjects": ("S9",), "actions": ["Directions 1"], "clip_len": 3, "fps": 25.0, "image_size": 8}
    with pytest.raises(DatasetError, match=r"Directions 1.54138969/000007.jpg: image file not found"):
        load_h36m_clips(npz, root, **kwargs)
    with pytest.raises(DatasetError, match="frame folders not found"):
        load_h36m_clips(npz, root, cameras=["55011271"], **kwargs)
    with pytest.raises(DatasetError, match="no frame folder 'Walking.<camera>'"):
        load_h36m_clips(npz, root, subjects=("S9",), actions=["Walking"], clip_len=2)
    with pytest.raises(DatasetError, match="the ratio is not a whole number"):
        load_h36m_clips(npz, root, **{**kwargs, "fps": 30.0})
    with pytest.raises(DatasetError, match="frames folder not found"):
        load_h36m_clips(npz, tmp_path / "nowhere", **kwargs)

"""MPI-INF-3DHP test set: MATLAB v7.3 annotations, camera -> z-up frame, valid runs, frames and crops."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from nlrd import skeleton
from nlrd.data import EVAL_JOINTS_3DHP, VALID_JOINTS_3DHP, DatasetError, load_3dhp_clips, load_3dhp_test
from nlrd.data.mpi_inf_3dhp import THREEDHP_TO_OURS

#: The 17 test joints of MPI-INF-3DHP, in their order.
NAMES_3DHP = (
    "head_top", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "head",
)  # fmt: skip
VALID = np.array([0, 1, 1, 1, 1, 0, 1, 1, 1, 0])
CAMERA_PELVIS = np.array([100.0, 200.0, 4000.0])


def person_in_camera(frames: int) -> np.ndarray:
    """``(T, 17, 3)`` in 3DHP's order and camera frame (x right, y down, z forward), mm: the rest pose facing the
    camera 4 m away (its left at +x, its head at -y), head-top rising 1 mm per frame."""
    rest = skeleton.rest_pose_mm().numpy().astype(np.float64)
    out = np.zeros((frames, 17, 3))
    for t in range(frames):
        pose = rest.copy()
        pose[skeleton.JOINT_NAMES.index("head_top"), 2] += t
        for k, name in enumerate(NAMES_3DHP):
            if name in skeleton.JOINT_NAMES:
                x, y, z = pose[skeleton.JOINT_NAMES.index(name)]
                out[t, k] = CAMERA_PELVIS + np.array([x, -z, y])
        out[t, 15] = out[t, 14] + [0, -200, 0]  # spine and head: present in the file, unused
        out[t, 16] = out[t, 1] + [0, -150, 0]
    return out


def write_mat(
    path: Path, annot3: np.ndarray, valid: np.ndarray, annot2: np.ndarray | None = None, matlab_order: bool = False
) -> Path:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte userblock, each array stored as h5py reads MATLAB's, i.e. with
    reversed dimensions: MATLAB's ``3 x 17 x 1 x T`` appears as ``(T, 1, 17, 3)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as mat:
        arrays = {"univ_annot3": annot3[:, None], "valid_frame": valid[:, None].astype(np.float64)}
        arrays["activity_annotation"] = np.ones((len(valid), 1))
        if annot2 is not None:
            arrays["annot2"] = annot2[:, None]
        for name, array in arrays.items():
            if matlab_order and array.ndim == 4:
                array = array.transpose(3, 2, 1, 0)
            mat.create_dataset(name, data=array).attrs["MATLAB_class"] = np.bytes_("double")
    with path.open("r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    return path


def test_joint_table_matches_the_3dhp_names() -> None:
    for ours, k in enumerate(THREEDHP_TO_OURS):
        name = skeleton.JOINT_NAMES[ours]
        expected = {"r_foot": "r_ankle", "l_foot": "l_ankle"}.get(name, name)
        assert NAMES_3DHP[k] == expected
    assert tuple(j for j in range(17) if j not in (12, 16)) == EVAL_JOINTS_3DHP
    assert VALID_JOINTS_3DHP.tolist() == [j in EVAL_JOINTS_3DHP for j in range(17)]


@pytest.mark.parametrize("matlab_order", [False, True])
def test_valid_runs_in_our_frame(tmp_path: Path, matlab_order: bool) -> None:
    path = write_mat(tmp_path / "TS1" / "annot_data.mat", person_in_camera(10), VALID, matlab_order=matlab_order)
    with path.open("rb") as f:
        assert f.read(6) == b"MATLAB"  # a real v7.3 header in the userblock
    runs = load_3dhp_test(tmp_path, sequences=("TS1",), fps=None)
    assert [len(r) for r in runs] == [4, 3] and runs[0].fps == 25.0 and runs[1].source.endswith("frames 7-9")
    head_rise = runs[0].joints[:, 8, 2] - skeleton.rest_pose_mm()[8, 2]
    assert torch.allclose(head_rise, torch.tensor([1.0, 2, 3, 4]), atol=1e-3)  # frames 1..4 (0-based) were valid
    expected = skeleton.rest_pose_mm()
    expected[12], expected[16] = expected[11], expected[15]  # feet are the ankles
    expected[8, 2] += 6  # the second run starts at frame 6
    assert torch.allclose(runs[1].joints[0, list(EVAL_JOINTS_3DHP)], expected[list(EVAL_JOINTS_3DHP)], atol=1e-3)
    assert torch.allclose(runs[0].joints[:, [12, 16]], runs[0].joints[:, [11, 15]])
    # the pelvis: 4 m ahead of the camera and 0.2 m below its axis (camera y points down)
    assert torch.allclose(runs[0].root, torch.tensor([100.0, 4000.0, -200.0]).expand(4, 3))


def test_person_facing_the_camera_faces_minus_y_with_left_at_plus_x(tmp_path: Path) -> None:
    write_mat(tmp_path / "TS1" / "annot_data.mat", person_in_camera(10), VALID)
    j = load_3dhp_test(tmp_path, sequences=("TS1",))[0].joints[0]
    assert j[13, 0] > 0 and j[9, 0] < 0 and j[8, 2] > 0  # left hip at +x, head up
    facing = torch.linalg.cross(j[13] - j[9], j[1] - j[0])
    assert facing[1] < 0 and facing[1].abs() > 0.99 * facing.norm()


def test_resampling_and_frame_rates(tmp_path: Path) -> None:
    write_mat(tmp_path / "TS5" / "annot_data.mat", person_in_camera(10), np.ones(10))
    (seq,) = load_3dhp_test(tmp_path, sequences=("TS5",), fps=25.0)
    assert seq.fps == 25.0 and len(seq) == 5  # TS5 is recorded at 50 fps
    with pytest.raises(DatasetError, match=r"unknown frame rate; pass source_fps=\{'TS7'"):
        load_3dhp_test(tmp_path, sequences=("TS7",))
    (custom,) = load_3dhp_test(tmp_path, sequences=("TS5",), fps=None, source_fps={"TS5": 100.0})
    assert custom.fps == 100.0


def test_annotation_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="TS2/annot_data.mat: annotation file not found"):
        load_3dhp_test(tmp_path, sequences=("TS2",))
    path = tmp_path / "TS1" / "annot_data.mat"
    path.parent.mkdir()
    path.write_text("MATLAB 5.0 MAT-file")
    with pytest.raises(DatasetError, match="not a MATLAB v7.3 \\(HDF5\\) file"):
        load_3dhp_test(tmp_path, sequences=("TS1",))
    path.unlink()
    with h5py.File(path, "w", userblock_size=512) as mat:
        mat["annot3"] = np.zeros((3, 1, 17, 3))
    with pytest.raises(
        DatasetError, match=r"missing datasets \['univ_annot3', 'valid_frame'\]; the file holds \['annot3'\]"
    ):
        load_3dhp_test(tmp_path, sequences=("TS1",))
    write_mat(path, person_in_camera(4)[:, :16], np.ones(4))
    with pytest.raises(
        DatasetError, match=r"univ_annot3\]: expected shape \(T, 1, 17, 3\) or \(3, 17, 1, T\), got \(4, 1, 16, 3\)"
    ):
        load_3dhp_test(tmp_path, sequences=("TS1",))
    write_mat(path, person_in_camera(4), np.ones(3))
    with pytest.raises(DatasetError, match="one entry per univ_annot3 frame"):
        load_3dhp_test(tmp_path, sequences=("TS1",))
    with pytest.raises(DatasetError, match="test folder not found"):
        load_3dhp_test(tmp_path / "nowhere")


def test_nan_only_matters_on_valid_frames(tmp_path: Path) -> None:
    poses = person_in_camera(10)
    poses[0] = np.nan  # an invalid frame: dropped
    path = write_mat(tmp_path / "TS1" / "annot_data.mat", poses, VALID)
    assert len(load_3dhp_test(tmp_path, sequences=("TS1",))) == 2
    poses[2, 3, 1] = np.nan
    write_mat(path, poses, VALID)
    with pytest.raises(DatasetError, match=r"annot_data.mat frames 2-5: univ_annot3 has NaN"):
        load_3dhp_test(tmp_path, sequences=("TS1",))


def test_clips_crop_around_the_2d_joints(tmp_path: Path) -> None:
    # 2D joints spread over x 40..60, y 20..40 of a 100 x 80 image: the crop is a 24 px square around (50, 30)
    points = np.zeros((10, 17, 2))
    points[:, :, 0] = np.linspace(40, 60, 17)
    points[:, :, 1] = np.linspace(20, 40, 17)
    write_mat(tmp_path / "TS1" / "annot_data.mat", person_in_camera(10), VALID, annot2=points)
    images = tmp_path / "TS1" / "imageSequence"
    images.mkdir()
    for t in range(10):
        image = np.zeros((80, 100, 3), dtype=np.uint8)
        image[16:44, 36:64] = 10 * t + 20  # the person's square; black elsewhere
        Image.fromarray(image).save(images / f"img_{t + 1:06d}.jpg", quality=95, subsampling=0)
    clips = load_3dhp_clips(tmp_path, sequences=("TS1",), clip_len=2, stride=2, fps=25.0, image_size=12)
    assert clips.frames.shape == (3, 2, 3, 12, 12) and clips.fps == 25.0
    frame_index = torch.tensor([[1, 2], [3, 4], [6, 7]])  # valid runs 1-4 and 6-8, two clips then one
    assert torch.allclose(clips.poses[:, :, 8, 2] - skeleton.rest_pose_mm()[8, 2], frame_index.float(), atol=1e-3)
    assert torch.allclose(clips.frames.float().mean(dim=(2, 3, 4)), 10 * frame_index.float() + 20, atol=3.0)
    (tmp_path / "TS1" / "imageSequence" / "img_000004.jpg").unlink()
    with pytest.raises(DatasetError, match="img_000004.jpg: image file not found"):
        load_3dhp_clips(tmp_path, sequences=("TS1",), clip_len=2, stride=2, fps=25.0, image_size=12)

"""Data sources: the checks that run before anything starts, the fingerprints cache keys hash, which part takes what."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from nlrd.data import DataConfig, DataConfigError
from nlrd.data.sources import PART_KINDS, BvhSource, H36MSource, MPI3DHPSource, PW3DSource, WorldSource
from tests.data_fixtures import write_3dhp, write_bvh_folder, write_h36m, write_jpegs
from tests.test_data_3dpw import write_dataset


def fails(source, clips: bool = True) -> DataConfigError:
    with pytest.raises(DataConfigError) as info:
        source.check(clips=clips)
    return info.value


def test_the_default_is_the_proxy_world_and_kinds_fit_their_parts(tmp_path: Path) -> None:
    assert DataConfig().is_proxy and not DataConfig(fps=25.0).is_proxy
    assert PART_KINDS["mocap"] == ("world", "bvh", "h36m", "3dhp", "3dpw") and "bvh" not in PART_KINDS["source"]
    with pytest.raises(DataConfigError, match="'bvh' cannot fill source") as info:
        DataConfig(source=BvhSource(path=str(tmp_path)))
    assert info.value.key == "source.kind"
    with pytest.raises(DataConfigError, match="positive number"):
        DataConfig(fps=0.0)
    WorldSource().check(clips=True)  # nothing to check


def test_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert BvhSource(path="mocap").path == str(tmp_path / "mocap")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    source = H36MSource(npz="~/h36m.npz", subjects=("S9",), frames="frames")
    assert (source.npz, source.frames) == (str(tmp_path / "home" / "h36m.npz"), str(tmp_path / "frames"))


def test_bvh_folder_checks(tmp_path: Path) -> None:
    folder = write_bvh_folder(tmp_path / "bvh")
    BvhSource(path=str(folder)).check(clips=False)
    error = fails(BvhSource(path=str(tmp_path / "nowhere")), clips=False)
    assert error.key == "path" and "nowhere: folder not found (expected a folder of .bvh files)" in str(error)
    error = fails(BvhSource(path=str(folder), pattern="*.txt"), clips=False)
    assert error.key == "pattern" and "no file matches '*.txt'" in str(error)
    assert fails(BvhSource(path=str(folder), units="feet"), clips=False).key == "units"
    error = fails(BvhSource(path=str(folder), up="x"), clips=False)
    assert error.key == "up" and "must be one of ['y', 'z', 'auto'], got 'x'" in str(error)
    BvhSource(path=str(folder), up="auto").check(clips=False)
    (folder / "mapping.yaml").write_text("[1, 2]")
    error = fails(BvhSource(path=str(folder), mapping=str(folder / "mapping.yaml")), clips=False)
    assert error.key == "mapping" and "expected a YAML mapping" in str(error)
    (folder / "photo.bvh").write_bytes(b"\xff\xd8\xff\xe0 a JPEG")
    error = fails(BvhSource(path=str(folder)), clips=False)
    assert error.key == "path" and "photo.bvh: not a BVH file (expected it to start with HIERARCHY)" in str(error)


def test_bvh_check_parses_a_file_in_full(tmp_path: Path) -> None:
    folder = write_bvh_folder(tmp_path / "bvh", files=1)
    take = folder / "take00.bvh"
    take.write_text(take.read_text().replace("LeftUpLeg", "LeftThigh"))
    error = fails(BvhSource(path=str(folder)), clips=False)
    assert "cannot map 1 of our joints: l_hip (tried LeftUpLeg, " in str(error)
    (folder / "map.yaml").write_text("l_hip: LeftThigh\n")
    BvhSource(path=str(folder), mapping=str(folder / "map.yaml")).check(clips=False)


def test_h36m_checks(tmp_path: Path) -> None:
    npz, frames = write_h36m(tmp_path / "h36m", {"S9": {"Directions 1": 6}, "S11": {"Walking": 6}})
    good = H36MSource(npz=str(npz), subjects=("S9", "S11"), frames=str(frames))
    good.check(clips=True)
    H36MSource(npz=str(npz), subjects=("S9",)).check(clips=False)  # poses need no frames
    error = fails(H36MSource(npz=str(tmp_path / "none.npz"), subjects=("S9",)))
    assert error.key == "npz" and "file not found (expected VideoPose3D's data_3d_h36m.npz" in str(error)
    (tmp_path / "text.npz").write_text("not a zip")
    assert "not a readable .npz archive" in str(fails(H36MSource(npz=str(tmp_path / "text.npz"), subjects=("S9",))))
    assert "no subject 'S7'" in str(fails(H36MSource(npz=str(npz), subjects=("S7",), frames=str(frames))))
    assert fails(H36MSource(npz=str(npz), subjects=())).key == "subjects"
    error = fails(H36MSource(npz=str(npz), subjects=("S9",)))
    assert error.key == "frames" and "is required for clips" in str(error)
    assert "folder not found" in str(fails(H36MSource(npz=str(npz), subjects=("S9",), frames=str(tmp_path / "x"))))
    error = fails(H36MSource(npz=str(npz), subjects=("S9",), frames=str(frames), cameras=("60457274",)))
    assert "frame folders not found" in str(error) and "Directions 1.60457274" in str(error)
    (frames / "S9" / "Directions 1.54138969" / "000001.jpg").write_text("not an image")
    error = fails(good)
    assert error.key == "frames" and "000001.jpg: unreadable image" in str(error)


def test_3dhp_checks(tmp_path: Path) -> None:
    root = write_3dhp(tmp_path / "3dhp", ("TS1", "TS5"))
    MPI3DHPSource(root=str(root), sequences=("TS1", "TS5")).check(clips=True)
    assert fails(MPI3DHPSource(root=str(root), sequences=("TS7",))).key == "sequences"
    error = fails(MPI3DHPSource(root=str(root), sequences=("TS2",)))
    assert error.key == "root" and "TS2/annot_data.mat: annotation file not found" in str(error)
    (root / "TS1" / "annot_data.mat").write_text("MATLAB 5.0 MAT-file")
    assert "not a MATLAB v7.3 (HDF5) file" in str(fails(MPI3DHPSource(root=str(root), sequences=("TS1",))))
    (root / "TS5" / "imageSequence" / "img_000001.jpg").unlink()
    MPI3DHPSource(root=str(root), sequences=("TS5",)).check(clips=False)  # poses need no frames
    assert "img_000001.jpg: image file not found" in str(fails(MPI3DHPSource(root=str(root), sequences=("TS5",))))


def test_3dpw_checks(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    PW3DSource(root=str(tmp_path)).check(clips=False)
    error = fails(PW3DSource(root=str(tmp_path)))
    assert error.key == "root" and "image_00000.jpg: image file not found" in str(error)
    write_jpegs(tmp_path / "imageFiles" / "downtown_walk_00", [f"image_{i:05d}.jpg" for i in range(6)])
    PW3DSource(root=str(tmp_path)).check(clips=True)
    assert fails(PW3DSource(root=str(tmp_path), split="val")).key == "split"
    assert fails(PW3DSource(root=str(tmp_path), sequences=("courtyard_00",))).key == "sequences"
    with (tmp_path / "sequenceFiles" / "test" / "downtown_walk_00.pkl").open("wb") as f:
        pickle.dump({"sequence": Path("x")}, f)  # a class the restricted unpickler refuses
    assert fails(PW3DSource(root=str(tmp_path)), clips=False).key == "root"


def test_clip_rate_must_divide_every_recording_rate(tmp_path: Path) -> None:
    npz, frames = write_h36m(tmp_path / "h36m", {"S9": {"Walking": 4}})
    root = write_3dhp(tmp_path / "3dhp", ("TS1",), frames=4)
    h36m = H36MSource(npz=str(npz), subjects=("S9",), frames=str(frames))
    DataConfig(fps=25.0, target_val=h36m, target_train=MPI3DHPSource(root=str(root), sequences=("TS1",))).check()
    with pytest.raises(DataConfigError, match=r"30 fps clips need every n-th frame of the 50 fps recordings of "
                       r"target_val \(h36m S9\)") as info:  # fmt: skip
        DataConfig(fps=30.0, target_val=h36m).check()
    assert info.value.key == "fps"
    DataConfig(fps=30.0, mocap=h36m).check()  # mocap is resampled, any rate works
    with pytest.raises(DataConfigError) as info:
        DataConfig(target_val=H36MSource(npz=str(npz), subjects=("S1",), frames=str(frames))).check()
    assert info.value.key == "target_val.npz"


def test_fingerprint_follows_the_files(tmp_path: Path) -> None:
    folder = write_bvh_folder(tmp_path / "bvh")
    npz, frames = write_h36m(tmp_path / "h36m", {"S9": {"Walking": 4}})
    config = DataConfig(
        mocap=BvhSource(path=str(folder)), target_val=H36MSource(npz=str(npz), subjects=("S9",), frames=str(frames))
    )
    first = config.fingerprint()
    assert first == config.fingerprint()
    assert [f[0] for f in first["mocap"]["files"]] == [str(folder / "take00.bvh"), str(folder / "take01.bvh")]
    stat = (folder / "take01.bvh").stat()
    os.utime(folder / "take01.bvh", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert config.fingerprint()["mocap"] != first["mocap"] and config.fingerprint()["target_val"] == first["target_val"]
    second = config.fingerprint()
    write_jpegs(frames / "S9" / "Walking.60457274", ["000001.jpg"])  # a new camera folder
    assert config.fingerprint()["target_val"] != second["target_val"]
    np.savez(npz, positions_3d=np.zeros(3))
    assert config.fingerprint()["target_val"]["files"][0] != second["target_val"]["files"][0]

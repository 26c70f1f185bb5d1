"""The space's ``data`` section: structure, paths checked before anything starts, the shipped real-data examples,
and one search end to end on real-format fixtures (a BVH folder, a VideoPose3D npz, JPEG crops) with a real local Ray.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nlrd.data.sources import BvhSource, DataConfig, DataConfigError, H36MSource, MPI3DHPSource, WorldSource
from nlrd.pipeline import StageCache, load_world
from search.run import main
from search.space import SpaceError, load_space, parse_space
from tests.conftest import REPO, TINY_SPACE, trial_rows, write_space
from tests.data_fixtures import grey_levels, write_3dhp, write_bvh_folder, write_h36m, write_video

H36M_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every data set the example spaces name, at the places their placeholders point to under this folder."""
    root = tmp_path_factory.mktemp("datasets")
    write_bvh_folder(root / "cmu-bvh")
    write_h36m(root / "h36m", {subject: {"Walking": 40} for subject in H36M_SUBJECTS})
    write_3dhp(root / "mpi_inf_3dhp_test_set", ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6"), frames=4)
    return root


def with_data(data: dict) -> dict:
    space = copy.deepcopy(TINY_SPACE)
    space["data"] = data
    return space


def error(space: dict) -> str:
    with pytest.raises(SpaceError) as info:
        parse_space(space, "s.yaml")
    return str(info.value)


def test_no_data_section_is_the_proxy_world() -> None:
    assert parse_space(copy.deepcopy(TINY_SPACE), "s.yaml").stages.data.is_proxy
    assert parse_space(with_data({"source": {"kind": "world"}}), "s.yaml").stages.data.is_proxy


def test_data_section_parses_into_sources(datasets: Path) -> None:
    npz, frames = datasets / "h36m" / "data_3d_h36m.npz", datasets / "h36m" / "frames"
    spec = parse_space(
        with_data(
            {
                "fps": 25,
                "mocap": {"kind": "bvh", "path": str(datasets / "cmu-bvh"), "units": "cm"},
                "target_train": {"kind": "h36m", "npz": str(npz), "frames": str(frames), "subjects": ["S1"]},
                "target_val": {"kind": "3dhp", "root": str(datasets / "mpi_inf_3dhp_test_set"), "sequences": ["TS5"]},
            }
        ),
        "s.yaml",
    )
    data = spec.stages.data
    assert data.fps == 25.0 and data.source == WorldSource()
    assert data.mocap == BvhSource(path=str(datasets / "cmu-bvh"), units="cm")
    assert data.target_train == H36MSource(npz=str(npz), frames=str(frames), subjects=("S1",))
    assert data.target_val == MPI3DHPSource(root=str(datasets / "mpi_inf_3dhp_test_set"), sequences=("TS5",))


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"fsp": 25}, "s.yaml: data.fsp: unknown key (did you mean 'fps'?). Allowed: fps, mocap, source"),
        ({"fps": "fast"}, "data.fps: must be a number, got 'fast'"),
        ({"source": {"kind": "h36"}}, "data.source.kind: 'h36' cannot fill source (did you mean 'h36m'?)"),
        ({"source": {"kind": "bvh", "path": "x"}}, "data.source.kind: 'bvh' cannot fill source: bvh has no images"),
        ({"mocap": {"kind": "bvh"}}, "data.mocap.path: is required for kind bvh"),
        ({"mocap": {"kind": "bvh", "path": "x", "unit": "cm"}}, "data.mocap.unit: unknown key (did you mean 'units'?)"),
        ({"mocap": {"kind": "h36m", "npz": "x", "subjects": "S1"}}, "data.mocap.subjects: must be a list, got 'S1'"),
        ({"target_val": {"kind": "3dhp", "root": "x", "stride": 0}}, "data.target_val.stride: must be at least 1"),
        (
            {"mocap": {"kind": "bvh", "path": "/nowhere"}},
            "data.mocap.path: /nowhere: folder not found (expected a folder",
        ),
    ],
)
def test_bad_data_sections_name_the_key_and_what_is_expected(data: dict, expected: str) -> None:
    assert expected in error(with_data(data))


@pytest.mark.parametrize(
    "data, key",
    [([1], ""), ({"fsp": 25}, "fsp"), ({"fps": 0}, "fps"), ({"source": {"kind": "h36"}}, "source.kind")],
)
def test_data_config_reads_a_mapping_with_keys_inside_the_section(data: object, key: str) -> None:
    """``DataConfig.from_mapping`` knows the section, not the file: its keys are relative, the space adds both."""
    with pytest.raises(DataConfigError) as info:
        DataConfig.from_mapping(data)
    assert info.value.key == key
    assert DataConfig.from_mapping({"fps": 25, "mocap": {"kind": "world"}}) == DataConfig(fps=25.0)


def test_files_of_the_wrong_format_are_space_errors(datasets: Path, tmp_path: Path) -> None:
    (tmp_path / "take.bvh").write_text("this is not motion capture")
    message = error(with_data({"mocap": {"kind": "bvh", "path": str(tmp_path)}}))
    assert (
        f"s.yaml: data.mocap.path: {tmp_path / 'take.bvh'}: not a BVH file (expected it to start with HIERARCHY)"
        in message
    )
    npz = datasets / "h36m" / "data_3d_h36m.npz"
    part = {"kind": "h36m", "npz": str(npz), "frames": str(datasets / "h36m" / "frames"), "subjects": ["S2"]}
    assert f"data.target_val.npz: {npz}: no subject 'S2'; the file holds" in error(with_data({"target_val": part}))
    part = {"kind": "3dhp", "root": str(datasets / "h36m")}
    assert "data.target_val.root:" in error(with_data({"target_val": part}))
    part = {"kind": "h36m", "npz": str(npz), "frames": str(datasets / "h36m" / "frames"), "subjects": ["S9"]}
    assert "data.fps: 30 fps clips need every n-th frame" in error(with_data({"target_val": part}))


@pytest.mark.parametrize("name", ["h36m", "3dhp"])
def test_example_spaces_validate_with_real_paths(name: str, datasets: Path, tmp_path: Path) -> None:
    text = (REPO / "spaces" / f"{name}.yaml").read_text()
    assert "/path/to/" in text
    with pytest.raises(SpaceError, match=rf"{name}.yaml: data.mocap.(path|npz): /path/to/"):
        load_space(REPO / "spaces" / f"{name}.yaml")  # the placeholders are named, not a traceback
    spec = load_space(write_space(tmp_path / f"{name}.yaml", yaml.safe_load(text.replace("/path/to/", f"{datasets}/"))))
    data = spec.stages.data
    assert spec.name == name and data.fps == 25.0 and not data.is_proxy
    assert data.target_val.kind == {"h36m": "h36m", "3dhp": "3dhp"}[name] and spec.relations.sets()


def test_run_stops_with_exit_code_2_on_a_bad_data_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = with_data({"target_val": {"kind": "h36m", "npz": str(tmp_path / "missing.npz"), "subjects": ["S9"]}})
    path = write_space(tmp_path / "real.yaml", space)
    assert main(["--space", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"real.yaml: data.target_val.npz: {tmp_path / 'missing.npz'}: file not found" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_search_runs_end_to_end_on_real_data_formats(tmp_path: Path, ray_cluster) -> None:
    """BVH mocap rendered by the proxy world as the source, Human3.6M-layout crops as the target and its original
    video layout for evaluation; one trial."""
    npz, frames = write_h36m(tmp_path / "h36m", {"S1": {"Walking": 40}, "S9": {"Directions 1": 20}})
    videos = tmp_path / "h36m" / "videos"
    write_video(videos / "S9" / "Videos" / "Directions 1.54138969.mp4", grey_levels(20))
    space = with_data(
        {
            "fps": 25,
            "mocap": {"kind": "bvh", "path": str(write_bvh_folder(tmp_path / "bvh"))},
            "source": {"kind": "world"},
            "target_train": {"kind": "h36m", "npz": str(npz), "frames": str(frames), "subjects": ["S1"], "stride": 2},
            "target_val": {"kind": "h36m", "npz": str(npz), "videos": str(videos), "subjects": ["S9"], "stride": 2},
        }
    )
    space["relations"] = {"candidates": ["flip", "flip_backward"], "min_set_size": 2, "max_set_size": 2}
    space["prefilter"] = {"keep_fraction": 1.0}
    space["searcher"] = {"algorithm": "random", "seed": 0, "num_trials": 1, "max_concurrent": 1}
    space["scheduler"] = {"type": "none"}
    space["adapt"] = {"steps": 4, "eval_every": 2, "batch_clips": 2}
    space["params"] = {"tau": "choice(0.07, 0.1)"}
    path = write_space(tmp_path / "real.yaml", space)
    assert main(["--space", str(path), "--out", str(tmp_path / "results"), "--name", "run"]) == 0
    table = pd.read_csv(tmp_path / "results" / "run" / "trials.csv")
    trials = trial_rows(table)
    assert list(trials["status"]) == ["finished"] and trials["mpjpe"].between(1, 5000).all()
    assert set(table.loc[table["status"] == "reference", "trial_id"]) == {"mean_pose", "source_only"}
    (world_file,) = (tmp_path / "results" / "cache").glob("world-*.pt")
    world = load_world(StageCache(world_file.parent), world_file.stem)
    # S1: 40 frames at 50 fps -> 16-frame clips at 25 fps start 4 recorded frames apart: 3; S9: 20 frames -> 2 clips
    assert world.target_train.frames.shape == (3, 16, 3, 32, 32) and world.target_val.frames.shape == (2, 8, 3, 32, 32)
    assert world.target_val.fps == 25.0 and world.mocap.shape[1:] == (16, 17, 3)

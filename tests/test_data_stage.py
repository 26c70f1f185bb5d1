"""The data stage: proxy, real or mixed parts in one World; the world rendering real mocap; cache keys and payloads."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import pytest
import torch

from nlrd import skeleton
from nlrd.data import EVAL_JOINTS_3DHP, DataConfig, DatasetError, load_bvh_folder, stack_windows
from nlrd.data.sources import BvhSource, H36MSource, MPI3DHPSource
from nlrd.data_stage import build_data
from nlrd.pipeline import StageCache, StageConfigs, _world_payload, load_world, stage_key, stage_keys
from nlrd.world import WorldConfig, build_world, sample_windows, world_part
from tests.data_fixtures import write_3dhp, write_bvh_folder, write_h36m

WORLD = WorldConfig(image_size=16, clip_len=4, mocap_sequences=30, source_clips=3, target_clips=2, val_clips=2)


def test_the_default_config_is_exactly_the_proxy_world() -> None:
    ours, proxy = build_data(WORLD, DataConfig()), build_world(WORLD)
    assert torch.equal(ours.mocap, proxy.mocap) and torch.equal(ours.target_train.frames, proxy.target_train.frames)
    assert torch.equal(ours.target_val.poses, proxy.target_val.poses)
    # each part has its own streams: a part built alone (as a mixed proxy/real config does) is the same part
    assert torch.equal(world_part(WORLD, "target_val").frames, proxy.target_val.frames)
    assert torch.equal(world_part(WORLD, "mocap"), proxy.mocap)


def test_sample_windows_are_turned_contiguous_windows() -> None:
    motion = torch.randn(3, 10, 17, 3, generator=torch.Generator().manual_seed(0)) * 100
    windows = sample_windows(motion, 5, 4, generator=torch.Generator().manual_seed(1))
    assert windows.shape == (5, 4, 17, 3)
    again = sample_windows(motion, 5, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(windows, again)
    unturned = sample_windows(motion, 5, 4, heading_deg=(0.0, 1e-6), generator=torch.Generator().manual_seed(1))
    assert any(torch.allclose(unturned[0], motion[m, s : s + 4], atol=1e-3) for m in range(3) for s in range(7))
    for window in windows:  # heights and distances from the vertical axis survive a turn about it
        signature = torch.cat([window[..., 2:], window[..., :2].norm(dim=-1, keepdim=True)], dim=-1)
        found = [
            (m, s)
            for m in range(3)
            for s in range(7)
            if torch.allclose(signature, torch.cat([motion[m, s : s + 4, :, 2:], motion[m, s : s + 4, :, :2].norm(
                dim=-1, keepdim=True)], dim=-1), atol=1e-3)
        ]  # fmt: skip
        assert len(found) == 1
    with pytest.raises(ValueError, match="length <= 10"):
        sample_windows(motion, 1, 11, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"\(M, L, 17, 3\)"):
        sample_windows(motion[:0], 1, 4, generator=torch.Generator())


@pytest.fixture(scope="module")
def bvh_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bvh_folder(tmp_path_factory.mktemp("mocap") / "bvh")


def test_the_world_renders_bvh_mocap(bvh_folder: Path) -> None:
    data = DataConfig(mocap=BvhSource(path=str(bvh_folder)))
    world = build_data(WORLD, data)
    expected = stack_windows(load_bvh_folder(bvh_folder, fps=30.0), 2 * WORLD.clip_len, limit=WORLD.mocap_sequences)
    assert world.mocap.shape == (30, 8, 17, 3) and torch.equal(world.mocap, expected)
    proxy = build_world(WORLD)
    for part in ("source", "target_train", "target_val"):
        ours, theirs = getattr(world, part), getattr(proxy, part)
        assert ours.frames.shape == theirs.frames.shape and ours.fps == 30.0
        assert (ours.poses is None) == (theirs.poses is None)
        assert not torch.equal(ours.frames, theirs.frames)
    # the rendered poses are the BVH person (its own bone lengths, not the canonical ones), turned about z
    bvh_bones = skeleton.measured_bone_lengths(expected[0, 0])
    for poses in (world.source.poses, world.target_val.poses):
        assert torch.allclose(
            skeleton.measured_bone_lengths(poses), bvh_bones.expand_as(skeleton.measured_bone_lengths(poses)), atol=0.05
        )
        assert not torch.allclose(bvh_bones, skeleton.bone_lengths_mm(), atol=1)
    assert torch.equal(build_data(WORLD, data).source.frames, world.source.frames)  # deterministic


def test_real_clips_fill_their_parts(bvh_folder: Path, tmp_path: Path) -> None:
    npz, frames = write_h36m(tmp_path / "h36m", {"S1": {"Walking": 40}, "S9": {"Directions": 20}})
    root = write_3dhp(tmp_path / "3dhp", ("TS1",), frames=12)
    data = DataConfig(
        fps=25.0,
        mocap=BvhSource(path=str(bvh_folder)),
        target_train=H36MSource(npz=str(npz), subjects=("S1",), frames=str(frames), stride=1),
        target_val=MPI3DHPSource(root=str(root), sequences=("TS1",)),
    )
    world = build_data(WORLD, data)
    assert world.mocap.shape[1:] == (8, 17, 3)
    assert world.source.frames.shape == (3, 4, 3, 16, 16) and world.source.fps == 25.0  # rendered from the BVH
    # H36M: 40 frames at 50 fps, every 2nd: 8-frame clips span 15 frames, starts 2 apart -> 13 candidates, 2 taken
    assert world.target_train.frames.shape == (2, 8, 3, 16, 16) and world.target_train.poses is None
    assert world.target_val.poses.shape == (2, 4, 17, 3) and world.target_val.eval_joints == EVAL_JOINTS_3DHP
    assert world.target_val.fps == 25.0 and world.source.eval_joints is None


def test_too_little_real_mocap_is_a_clear_error(bvh_folder: Path) -> None:
    short = dataclasses.replace(WORLD, clip_len=16)  # 32-frame windows of two 33-frame takes (25 fps)
    expected = r"only 1 window of 32 frames at 25 fps \(at most world.mocap_sequences = 1 are taken\); at least 2"
    with pytest.raises(DatasetError, match=expected):
        build_data(
            dataclasses.replace(short, mocap_sequences=1), DataConfig(fps=25.0, mocap=BvhSource(path=str(bvh_folder)))
        )


def test_data_stage_key_follows_the_data_files(tmp_path: Path) -> None:
    assert stage_keys(StageConfigs(world=WORLD), []).world == stage_key("world", WORLD)  # existing caches stay valid
    folder = write_bvh_folder(tmp_path / "bvh")
    configs = StageConfigs(world=WORLD, data=DataConfig(mocap=BvhSource(path=str(folder))))
    keys = stage_keys(configs, ["flip"])
    assert keys.world != stage_key("world", WORLD) and stage_keys(configs, ["flip"]) == keys
    stat = (folder / "take00.bvh").stat()
    os.utime(folder / "take00.bvh", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = stage_keys(configs, ["flip"])
    assert changed.world != keys.world and changed.prior != keys.prior and changed.relations != keys.relations
    other_fps = dataclasses.replace(configs, data=dataclasses.replace(configs.data, fps=25.0))
    assert stage_keys(other_fps, ["flip"]).world != changed.world


def test_cached_world_keeps_the_evaluation_joints(tmp_path: Path) -> None:
    root = write_3dhp(tmp_path / "3dhp", ("TS1",), frames=12)
    world = build_data(WORLD, DataConfig(fps=25.0, target_val=MPI3DHPSource(root=str(root), sequences=("TS1",))))
    cache = StageCache(tmp_path / "cache")
    cache.save("world-x", _world_payload(world))
    loaded = load_world(cache, "world-x")
    assert loaded.target_val.eval_joints == EVAL_JOINTS_3DHP and loaded.source.eval_joints is None
    assert torch.equal(loaded.target_val.poses, world.target_val.poses) and loaded.target_val.fps == 25.0
    assert math.isclose(loaded.source.fps, 25.0)

from __future__ import annotations

import dataclasses
import multiprocessing

import pytest
import torch

from nlrd.pipeline import (
    StageCache,
    StageConfigs,
    heldout_mocap,
    load_stages,
    load_world,
    split_mocap,
    stage_key,
    stage_keys,
    train_stages,
)
from nlrd.train.motion import MotionConfig
from nlrd.train.prior import PriorConfig
from nlrd.train.relation import RelationConfig
from nlrd.train.source import SourceConfig
from nlrd.world import WorldConfig

TINY = StageConfigs(
    world=WorldConfig(image_size=32, clip_len=8, mocap_sequences=20, source_clips=4, target_clips=4, val_clips=2),
    prior=PriorConfig(steps=5, batch_size=32, hidden=32),
    motion=MotionConfig(steps=3, batch_size=8, hidden=16, embed_dim=16),
    relation=RelationConfig(steps=3, batch_size=8, hidden=(32,), pool_size=16),
    source=SourceConfig(steps=3, batch_size=8, width=8),
)


def test_keys_follow_configs_and_inputs():
    keys = stage_keys(TINY, ["flip", "backward"])
    assert keys == stage_keys(TINY, ["backward", "flip"])
    changed = stage_keys(dataclasses.replace(TINY, prior=dataclasses.replace(TINY.prior, steps=6)), ["flip"])
    assert changed.world == keys.world
    assert changed.prior != keys.prior
    assert changed.motion != keys.motion  # downstream of the prior
    assert changed.relations["flip"] != keys.relations["flip"]
    assert stage_key("x", {"a": 1}) != stage_key("x", {"a": 1}, ["input"])


def test_a_field_added_later_leaves_the_keys_of_its_default_unchanged():
    """``SourceConfig.flip_augment`` came after caches existed: at its default every key is what it was before
    (the literal is ``TINY``'s source key before the field), and only a changed value makes a new key."""
    keys = stage_keys(TINY, ["flip"])
    assert keys.source == "source-0d05bb670496beed"
    no_flip = dataclasses.replace(TINY, source=dataclasses.replace(TINY.source, flip_augment=False))
    changed = stage_keys(no_flip, ["flip"])
    assert changed.source != keys.source
    assert (changed.world, changed.prior, changed.motion) == (keys.world, keys.prior, keys.motion)


def test_heldout_mocap_is_disjoint_from_training_mocap():
    mocap = torch.arange(10.0)[:, None, None, None].expand(10, 4, 17, 3)
    train, held = split_mocap(mocap)
    assert len(train) == 8 and len(held) == 2
    assert set(train[:, 0, 0, 0].tolist()).isdisjoint(held[:, 0, 0, 0].tolist())
    with pytest.raises(ValueError, match="at least 2 mocap sequences"):
        split_mocap(mocap[:1])


def test_train_stages_fills_the_cache_once(tmp_path):
    cache = StageCache(tmp_path)
    events: list[dict] = []
    keys = train_stages(TINY, ["flip", "flip_backward"], cache, report=events.append)
    assert all(key in cache for key in [keys.world, keys.prior, keys.motion, keys.source, *keys.relations.values()])
    assert not any(e.get("cached") for e in events)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")}

    events.clear()
    assert train_stages(TINY, ["flip", "flip_backward"], cache, report=events.append) == keys
    assert {e["stage"] for e in events if e.get("cached")} == {"world", "prior", "motion", "relations", "source"}
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt")} == stamps

    more = train_stages(TINY, ["flip", "flip_backward", "backward"], cache)  # only the new relation trains
    assert more.relations["flip"] == keys.relations["flip"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.pt") if p in stamps} == stamps

    stages = load_stages(cache, more, ("flip", "backward"))
    assert set(stages.transformers) == {"flip", "backward"}
    assert not any(p.requires_grad for p in stages.encoder.parameters())
    world = load_world(cache, keys.world)
    assert world.target_train.clip_len == 2 * TINY.world.clip_len and world.target_train.poses is None
    assert heldout_mocap(world).shape[1:] == (16, 17, 3)
    mapped = load_world(cache, keys.world, mmap=True)  # what a trial loads: the same tensors, writes stay private
    for read, mapped_part in ((world.source, mapped.source), (world.target_val, mapped.target_val)):
        assert torch.equal(read.frames, mapped_part.frames) and torch.equal(read.poses, mapped_part.poses)
    assert torch.equal(world.target_train.frames, mapped.target_train.frames)
    assert torch.equal(world.mocap, mapped.mocap)
    mapped.target_train.frames.zero_()
    assert torch.equal(load_world(cache, keys.world).target_train.frames, world.target_train.frames)


def test_cache_refuses_missing_and_corrupt_files(tmp_path):
    cache = StageCache(tmp_path)
    with pytest.raises(FileNotFoundError, match="prior-x.pt is missing"):
        cache.load("prior-x")
    cache.save("prior-x", {"state": {"w": torch.ones(3)}})
    assert torch.equal(cache.load("prior-x")["state"]["w"], torch.ones(3))
    data = cache.path("prior-x").read_bytes()
    cache.path("prior-x").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read as an nlrd checkpoint"):
        cache.load("prior-x")
    assert not list(tmp_path.glob("*.tmp"))


def _train_and_tell(root: str, barrier, results) -> None:
    """In a child process: wait for the other child, then train the TINY graph into the shared cache at ``root``."""
    torch.set_num_threads(1)
    events: list[dict] = []
    barrier.wait()
    train_stages(TINY, ["flip"], StageCache(root), report=events.append)
    results.put(sorted({e["stage"] for e in events if not e.get("cached")}))


def test_two_processes_needing_the_same_missing_stages_train_each_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_train_and_tell, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    trained = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    # Every stage that reports progress (prior, motion, relations, source) was trained by exactly one process.
    assert sorted(trained[0] + trained[1]) == ["motion", "prior", "relations", "source"], trained
    assert not list(tmp_path.glob("*.tmp")) and len(list(tmp_path.glob("*.pt"))) == 5


def test_residual_relation_transformers_are_their_own_stage_and_restore_as_trained(tmp_path):
    residual = dataclasses.replace(TINY, relation=dataclasses.replace(TINY.relation, residual=True))
    assert stage_keys(residual, ["flip"]).relations != stage_keys(TINY, ["flip"]).relations
    cache = StageCache(tmp_path)
    keys = train_stages(residual, ["flip"], cache)
    (transformer,) = load_stages(cache, keys, ["flip"]).transformers.values()
    assert transformer.residual

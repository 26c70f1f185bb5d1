"""The gap diagnosis: one source encoder per seed meets the target of every kind of gap."""

from __future__ import annotations

import torch

from bench.gap_shares import measure_gaps, table, target_val
from nlrd.pipeline import StageCache
from nlrd.world import world_part
from tests.test_pipeline import TINY


def test_each_gap_has_its_own_target_and_the_source_is_shared(tmp_path):
    clip, instance = (target_val(TINY.world, gap, None) for gap in ("clip", "instance"))
    assert not torch.equal(clip.frames, instance.frames)
    assert torch.equal(clip.frames, world_part(TINY.world, "target_val").frames)
    other = target_val(TINY.world, "clip", 7)
    assert not torch.equal(clip.poses, other.poses)  # another world seed: other motions
    results = measure_gaps(TINY, ["clip", "instance"], [0], StageCache(tmp_path), None, cutoff_hz=4.0)
    rows = results["seeds"][0]
    assert list(rows) == ["target clip", "target instance", "fresh source"]
    assert rows["target clip"]["mpjpe"] != rows["target instance"]["mpjpe"]
    assert len(list(tmp_path.glob("source-*.pt"))) == 1  # one encoder for both targets
    for row in rows.values():
        assert 0.99 < row["offset"] + row["slow"] + row["fast"] < 1.01
    assert len(table(results).splitlines()) == 2 + 3

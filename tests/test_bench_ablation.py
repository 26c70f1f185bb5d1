"""The ablation's reference lines: the mean pose and the target-supervised oracle."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.ablation import MEAN_POSE_ROW, ORACLE_ROW, mean_pose_row, oracle_row, table
from nlrd.pipeline import StageCache, mean_pose_line, train_stages
from nlrd.world import world_part
from tests.test_pipeline import TINY


def test_the_oracle_trains_on_the_very_target_clips_the_method_sees_unlabelled():
    unlabelled = world_part(TINY.world, "target_train")
    labelled = world_part(TINY.world, "target_train", with_labels=True)
    assert unlabelled.poses is None and labelled.poses is not None
    assert torch.equal(unlabelled.frames, labelled.frames)
    assert labelled.poses.shape[:2] == labelled.frames.shape[:2]


def test_reference_rows_are_measured_and_the_oracle_cached(tmp_path):
    cache = StageCache(tmp_path)
    keys = train_stages(TINY, ["flip"], cache)
    assert mean_pose_row(cache, keys, None) == pytest.approx(mean_pose_line(cache, keys))
    oracle = oracle_row(TINY, cache, keys, TINY.source, None, torch.device("cpu"))
    assert oracle["mpjpe"] > 0 and set(oracle) >= {"mpjpe", "pa_mpjpe"}
    (path,) = tmp_path.glob("oracle-*.pt")
    stamp = path.stat().st_mtime_ns
    assert oracle_row(TINY, cache, keys, TINY.source, None, torch.device("cpu")) == oracle
    assert path.stat().st_mtime_ns == stamp
    other_seed = dataclasses.replace(TINY.source, seed=1)
    oracle_row(TINY, cache, keys, other_seed, None, torch.device("cpu"))
    assert len(list(tmp_path.glob("oracle-*.pt"))) == 2  # one oracle per source config


def test_the_table_shows_the_reference_lines_against_source_only():
    metrics = {"mpjpe": 100.0, "pa_mpjpe": 80.0, "mpjpe_gtbone": 100.0, "pa_mpjpe_gtbone": 80.0}
    results = {
        MEAN_POSE_ROW: {0: {k: 2 * v for k, v in metrics.items()}},
        "source only": {0: metrics},
        ORACLE_ROW: {0: {k: v / 2 for k, v in metrics.items()}},
    }
    lines = table(results).splitlines()
    assert lines[2].startswith(f"| {MEAN_POSE_ROW} | 200.0 ± 0.0 | +100.0%")
    assert lines[4].startswith(f"| {ORACLE_ROW} | 50.0 ± 0.0 | -50.0%")

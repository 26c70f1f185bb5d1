"""The ablation's reference lines: the mean pose and the target-supervised oracle."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.ablation import MEAN_POSE_ROW, ORACLE_ROW, mean_pose_row, oracle_row, paired_table, table
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
    assert lines[0].startswith("| row | PA-MPJPE (mm) |")  # the headline first
    assert lines[2].startswith(f"| {MEAN_POSE_ROW} | 160.0 ± 0.0 | +100.0% | 200.0 ± 0.0 | +100.0%")
    assert lines[4].startswith(f"| {ORACLE_ROW} | 40.0 ± 0.0 | -50.0% | 50.0 ± 0.0 | -50.0%")


def test_the_paired_table_differences_each_row_from_the_one_before_and_the_last_from_source_only():
    def row(*pa: float) -> dict[int, dict[str, float]]:
        return {seed: {"pa_mpjpe": v, "mpjpe": v + 10} for seed, v in enumerate(pa)}

    results = {
        MEAN_POSE_ROW: row(300, 300, 300),
        "source only": row(100, 110, 120),
        "+ a": row(90, 100, 110),
        "+ b": row(95, 95, 125),
    }
    lines = paired_table(results).splitlines()
    assert len(lines) == 2 + 3  # header, rule, two terms, last vs source only
    assert lines[2].startswith("| + a vs source only | -10.0 [-10.0, -10.0] | -10.0 [-10.0, -10.0] | 3/3 |")
    assert lines[3].startswith("| + b vs + a | +5.0 [")
    assert lines[3].endswith("| 1/3 |")
    assert lines[4].startswith("| + b vs source only | -5.0 [")


def test_the_gap_flag_picks_the_world_and_the_rest_comes_from_the_space():
    from bench.ablation import arg_parser, smoke_configs

    assert arg_parser().parse_args(["--gap", "instance"]).gap == "instance"
    configs = smoke_configs(gap="instance")
    assert configs.world.gap == "instance"
    assert dataclasses.replace(configs.world, gap=smoke_configs().world.gap) == smoke_configs().world

"""The launch-overhead benchmark's reading of a run: when a trial starts, its phases, and the ratios it reports."""

from __future__ import annotations

import ast
import inspect
import math

import pytest

from bench.trial_overhead import (
    LAUNCH_IMPORTS,
    default_space_trial,
    import_floor,
    import_floor_markdown,
    markdown,
    summarise,
    trial_breakdown,
    trial_starts,
)
from search.launch_marks import MARKS, PREFIX
from search.trainable import adapt_loop


def _first_report(start: float) -> dict[str, float]:
    """Marks one second apart from ``start``, in the order a trial passes them."""
    return {PREFIX + name: start + i for i, name in enumerate(MARKS)}


def test_a_fresh_actor_counts_from_its_process_start_and_an_older_process_from_running():
    tune_times = {"a": {"running": 101.0, "last_result": 140.0}, "b": {"running": 150.0, "last_result": 180.0}}
    reports = {"a": _first_report(100.0), "b": {**_first_report(151.0), PREFIX + "trial_process": 100.0}}
    starts = trial_starts(tune_times, reports)
    assert starts == {"a": 100.0, "b": 150.0}  # b's actor process predates a's start: Tune's running time counts


def test_a_trial_breakdown_sums_its_phases_to_the_time_before_the_first_step():
    first = _first_report(100.0)
    row = trial_breakdown(100.0, {"running": 100.5, "last_result": 130.0}, first)
    ready = MARKS.index("ready")
    assert row["before first step"] == pytest.approx(ready)
    assert row["before first step, from running"] == pytest.approx(ready - 0.5)
    assert sum(row[name] for name in MARKS[1 : ready + 1]) == pytest.approx(row["before first step"])
    assert row["to first report"] == pytest.approx(len(MARKS) - 1) and row["trial wall"] == pytest.approx(30.0)


def test_the_summary_ratios_use_the_medians():
    rows = {
        trial: trial_breakdown(0.0, {"running": 0.0, "last_result": wall}, _first_report(0.0))
        for trial, wall in (("a", 20.0), ("b", 40.0), ("c", 60.0))
    }
    gpu = default_space_trial(step_s=0.05)
    summary = summarise(rows, tuner_to_first=2.0, gpu=gpu)
    before = MARKS.index("ready")
    assert summary["medians"]["trial wall"] == 40.0
    assert summary["before_first_step_over_median_trial"] == pytest.approx(before / 40.0)
    assert gpu["median_trial_s"] == pytest.approx(gpu["median_trial_steps"] * 0.05)
    share = summary["default_space_gpu"]["overhead_over_median_trial"]
    assert share == pytest.approx(before / gpu["median_trial_s"])
    text = markdown("header", rows, summary)
    assert "**median**" in text and f"{summary['before_first_step_over_median_trial']:.1%}" in text


def test_a_trial_without_marks_is_left_out_of_the_medians():
    rows = {"a": {"trial wall": 10.0}}
    summary = summarise(rows, tuner_to_first=None, gpu=default_space_trial(step_s=0.05))
    assert math.isnan(summary["medians"]["before first step"])


def test_the_import_floor_times_each_process_with_and_without_this_projects_modules():
    imports = {"first": ("json",), "second": ("json", "nlrd.atomic")}
    seconds = import_floor(imports, repeats=1)
    assert set(seconds) == {"first", "second", "all three"}
    assert min(min(row.values()) for row in seconds.values()) > 0
    for kind in ("all", "outside"):
        assert seconds["all three"][kind] == pytest.approx(seconds["first"][kind] + seconds["second"][kind])
    text = import_floor_markdown("header", imports, seconds)
    assert "`nlrd.atomic`" in text and "| **all three** |" in text and f"{seconds['all three']['all']:.2f}" in text


def test_an_import_that_fails_names_its_modules():
    with pytest.raises(RuntimeError, match="no_such_module_here"):
        import_floor({"p": ("json", "no_such_module_here")}, repeats=1)


def test_the_worker_floor_imports_everything_the_train_loop_imports():
    tree = ast.parse(inspect.getsource(adapt_loop).lstrip())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= set(LAUNCH_IMPORTS["Train worker"])

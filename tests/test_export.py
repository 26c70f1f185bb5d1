from __future__ import annotations

import json

import numpy as np
import pandas as pd

from search.export import (
    FINISHED,
    REJECTED,
    STOPPED,
    best_space,
    first_error_line,
    front_axes,
    pareto_mask,
    prefilter_correlation,
    write_summary,
    write_tables,
)
from search.plots import pareto_plot, prefilter_plot
from search.prefilter import SetDecision
from search.space import ObjectiveSpec, parse_space
from tests.conftest import TINY_SPACE

MPJPE = (ObjectiveSpec("mpjpe", "min"),)


def _table() -> pd.DataFrame:
    rows = [
        ("a", 0.9, FINISHED, 120.0),  # front: most non-local
        ("b", 0.5, FINISHED, 100.0),  # front: lowest error
        ("c", 0.4, FINISHED, 130.0),  # dominated by a and b
        ("d", 0.95, STOPPED, 90.0),  # stopped early: never on the front
        ("e", 0.1, REJECTED, np.nan),
        ("f", 0.9, FINISHED, 125.0),  # same score as a, worse error: dominated
    ]
    return pd.DataFrame(rows, columns=["relation_set", "set_score", "status", "mpjpe"])


def test_pareto_front_of_finished_trials():
    assert pareto_mask(_table()).tolist() == [True, True, False, False, False, False]


def test_multi_objective_front_uses_the_objectives():
    table = _table()
    table["device_seconds"] = [10.0, 50.0, 5.0, 1.0, np.nan, 20.0]
    axes = front_axes((ObjectiveSpec("mpjpe", "min"), ObjectiveSpec("device_seconds", "min")))
    assert axes == {"mpjpe": "min", "device_seconds": "min"}
    # a (120 mm, 10 s) and b (100 mm, 50 s) and c (130 mm, 5 s) trade off; f (125, 20) is beaten by a.
    assert pareto_mask(table, axes).tolist() == [True, True, True, False, False, False]
    assert front_axes((ObjectiveSpec("mpjpe", "min"), ObjectiveSpec("nonlocalness", "max"))) == {
        "mpjpe": "min",
        "set_score": "max",
    }


def test_first_error_line_finds_the_innermost_error():
    trace = (
        "Traceback (most recent call last):\n  File x\nray.train.TrainingFailedError: Training failed\n"
        "Traceback:\n  File y\nFloatingPointError: non-finite loss nan in lcr at step 3\n"
    )
    assert first_error_line(trace) == "FloatingPointError: non-finite loss nan in lcr at step 3"
    assert first_error_line("just text") == "just text"


def test_prefilter_correlation_needs_enough_trials_and_finds_the_sign():
    table = _table()
    assert prefilter_correlation(table.iloc[:3]) is None  # three finished trials are too few
    table.loc[len(table)] = ["g", 0.2, FINISHED, 140.0]
    corr = prefilter_correlation(table)
    assert corr["n"] == 5 and corr["spearman"] < 0 and corr["kendall"] < 0


def test_best_space_fixes_the_best_configuration_and_parses():
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    row = pd.Series({"relation_set": "flip+flip_backward", "param_lr_nonlocal": np.float64(3e-4), "param_tau": 0.1})
    raw = best_space(spec, row)
    again = parse_space(raw, "best.yaml")
    assert again.relations.sets() == [("flip", "flip_backward")]
    assert again.params == () and again.adapt["lr_nonlocal"] == 3e-4 and again.adapt["tau"] == 0.1
    assert again.searcher.num_trials == 1 and again.scheduler.type == "none" and not again.prefilter.enabled


def test_tables_and_plot_are_written(tmp_path):
    table = _table()
    table["pareto"] = pareto_mask(table)
    decisions = [SetDecision(("a",), 0.9, True, "kept"), SetDecision(("e",), 0.1, False, "score below")]
    write_tables(tmp_path, table, decisions, {"mpjpe": 150.0, "pa_mpjpe": 120.0}, MPJPE)
    pareto_plot(table, [tmp_path / "pareto.png", tmp_path / "pareto.svg"], source_only_mpjpe=150.0)
    prefilter_plot(table, tmp_path / "prefilter.png", prefilter_correlation(table))
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    write_summary(tmp_path, spec, table, {"mpjpe": 150.0, "pa_mpjpe": 120.0}, None, None, 12.0)
    assert "No trial finished" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "pareto.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "prefilter.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(tmp_path / "trials.csv")["relation_set"].tolist() == list("abcdef")
    assert pd.read_parquet(tmp_path / "trials.parquet").shape == table.shape
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["source_only"] == {"mpjpe": 150.0, "pa_mpjpe": 120.0}
    front = pareto["front"]
    assert [p["relation_set"] for p in front] == ["b", "a"]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))

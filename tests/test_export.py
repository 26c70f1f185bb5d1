from __future__ import annotations

import json

import numpy as np
import pandas as pd

from search.export import FINISHED, REJECTED, STOPPED, pareto_mask, write_tables
from search.plots import pareto_plot
from search.prefilter import SetDecision


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


def test_tables_and_plot_are_written(tmp_path):
    table = _table()
    table["pareto"] = pareto_mask(table)
    decisions = [SetDecision(("a",), 0.9, True, "kept"), SetDecision(("e",), 0.1, False, "score below")]
    write_tables(tmp_path, table, decisions, {"mpjpe": 150.0, "pa_mpjpe": 120.0})
    pareto_plot(table, tmp_path / "pareto.png", source_only_mpjpe=150.0)
    assert pd.read_csv(tmp_path / "trials.csv")["relation_set"].tolist() == list("abcdef")
    assert pd.read_parquet(tmp_path / "trials.parquet").shape == table.shape
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["source_only"] == {"mpjpe": 150.0, "pa_mpjpe": 120.0}
    front = pareto["front"]
    assert [p["relation_set"] for p in front] == ["b", "a"]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))

"""End to end: ``search/run.py`` on a tiny space with a real local Ray (stages, pre-filter, Tune + Train)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pandas as pd

from search.run import main
from tests.conftest import REPO, TINY_SPACE, write_space


def test_bad_space_exits_with_a_clear_error_before_starting_ray(tmp_path):
    space = copy.deepcopy(TINY_SPACE)
    space["relations"]["candidates"] = ["flip", "flip_backwards"]
    path = write_space(tmp_path / "bad.yaml", space)
    proc = subprocess.run(
        [sys.executable, str(REPO / "search" / "run.py"), "--space", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "bad.yaml: relations.candidates[1]: unknown relation 'flip_backwards'" in proc.stderr
    assert "did you mean 'flip_backward'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_search_runs_end_to_end(tmp_path, ray_cluster):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    assert main(["--space", str(path), "--out", str(tmp_path / "results"), "--name", "run"]) == 0
    run_dir = tmp_path / "results" / "run"
    table = pd.read_csv(run_dir / "trials.csv")
    trials = table[table["status"] != "rejected_by_prefilter"]
    rejected = table[table["status"] == "rejected_by_prefilter"]
    assert len(trials) == TINY_SPACE["searcher"]["num_trials"]
    assert len(rejected) == 3  # 6 sets of at most 2 of 3 relations, keep 50%
    assert set(trials["status"]) <= {"finished", "stopped_by_asha"}
    assert (trials["status"] == "finished").any()
    assert trials["mpjpe"].between(1, 5000).all() and trials["pa_mpjpe"].between(1, 5000).all()
    assert (trials["best_mpjpe"] <= trials["mpjpe"]).all()
    assert set(trials["relation_set"]).isdisjoint(rejected["relation_set"])
    assert {"param_lr_nonlocal", "param_tau", "set_score", "nl_flip", "pareto"} <= set(table.columns)
    assert table["pareto"].sum() >= 1
    assert json.loads((run_dir / "pareto.json").read_text())["source_only"]["mpjpe"] > 0
    assert (run_dir / "pareto.png").stat().st_size > 10_000
    assert (run_dir / "study.log").stat().st_size > 0
    assert list((tmp_path / "results" / "cache").glob("prior-*.pt"))

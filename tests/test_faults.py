"""Failure paths of a search on a real local Ray: a diverging trial, a raising trial and its retries, a worker
node lost mid-trial.  Each ends with a complete search whose tables account for every trial."""

from __future__ import annotations

import copy
import socket
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from nlrd.pipeline import StageCache, stage_keys
from search.run import main
from search.run_dir import RunDir
from search.space import parse_space
from search.trainable import INJECT_ERRORS_ENV
from search.tuner import study_storage
from tests.conftest import TINY_SPACE, Cli, trial_rows, with_stages, write_space


def _space(**changes) -> dict:
    space = copy.deepcopy(TINY_SPACE)
    space["scheduler"] = {"type": "none"}
    space.update(changes)
    return space


def _trials(run_dir: Path) -> pd.DataFrame:
    return trial_rows(pd.read_csv(run_dir / "trials.csv"))


def _poison(cache_root: Path, relation: str) -> None:
    """Fill the cached relation transformer's weights with NaN, as a corrupt stage would."""
    keys = stage_keys(parse_space(TINY_SPACE, "tiny.yaml").stages, TINY_SPACE["relations"]["candidates"])
    cache = StageCache(cache_root)
    payload = cache.load(keys.relations[relation])
    payload["state"] = {name: torch.full_like(t, float("nan")) for name, t in payload["state"].items()}
    cache.save(keys.relations[relation], payload)


def test_a_diverging_trial_fails_with_its_reason_and_the_search_goes_on(tmp_path, ray_cluster, tiny_stages):
    space = _space(
        searcher={"algorithm": "random", "seed": 3, "num_trials": 3, "max_concurrent": 2},
        prefilter={"enabled": False},
        relations={"candidates": ["flip", "flip_backward"], "min_set_size": 1, "max_set_size": 1},
        failure={"max_retries": 1},
    )
    out = with_stages(tmp_path / "results", tiny_stages)
    _poison(out / "cache", "flip")
    path = write_space(tmp_path / "nan.yaml", space)
    assert main(["--space", str(path), "--out", str(out), "--name", "run"]) == 0
    trials = _trials(out / "run")
    assert len(trials) == 3 and trials["trial_id"].is_unique
    poisoned = trials["relation_set"] == "flip"
    assert poisoned.any() and (~poisoned).any(), trials[["relation_set", "status"]]  # seed 3 draws both kinds
    assert (trials.loc[poisoned, "status"] == "error").all()
    assert trials.loc[poisoned, "error"].str.contains("FloatingPointError: non-finite").all()
    assert (trials.loc[poisoned, "attempts"] == 1).all()  # a diverged trial is not trained again
    assert (trials.loc[~poisoned, "status"] == "finished").all()
    study = optuna.load_study(study_name="tiny", storage=study_storage(RunDir(out / "run")))
    states = {t.user_attrs["tune_trial_id"]: t.state for t in study.trials}
    for _, row in trials.iterrows():
        expected = optuna.trial.TrialState.FAIL if row["relation_set"] == "flip" else optuna.trial.TrialState.COMPLETE
        assert states[row["trial_id"]] == expected
    assert f"| error | {poisoned.sum()} |" in (out / "run" / "summary.md").read_text()


@pytest.mark.parametrize("retries, status, attempts", [(1, "finished", 2), (0, "error", 1)])
def test_a_raising_trial_is_retried_per_the_failure_policy(
    tmp_path, ray_cluster, tiny_stages, monkeypatch, retries, status, attempts
):
    monkeypatch.setenv(INJECT_ERRORS_ENV, "1")  # every trial raises on its first attempt
    space = _space(
        searcher={"algorithm": "tpe", "seed": 0, "num_trials": 2, "max_concurrent": 2},
        failure={"max_retries": retries},
    )
    out = with_stages(tmp_path / "results", tiny_stages)
    path = write_space(tmp_path / "raise.yaml", space)
    assert main(["--space", str(path), "--out", str(out), "--name", "run"]) == 0
    trials = _trials(out / "run")
    assert len(trials) == 2
    assert (trials["status"] == status).all(), trials[["status", "error"]]
    assert (trials["attempts"] == attempts).all()
    if status == "error":
        assert trials["error"].str.contains("InjectedTrialError").all()
    assert (out / "run" / "summary.md").exists()


def _head_and_worker():
    """A head without CPUs and one 2-CPU worker node: every trial, with its training, runs on that worker."""
    from ray.cluster_utils import Cluster

    with socket.socket() as probe:  # the dashboard must come up (Train needs it to free a dead trial's resources)
        probe.bind(("127.0.0.1", 0))
        dashboard_port = probe.getsockname()[1]
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 128 * 1024**2,
            "include_dashboard": True,
            "dashboard_port": dashboard_port,
        },
    )
    worker = cluster.add_node(num_cpus=2, object_store_memory=128 * 1024**2)
    cluster.wait_for_nodes()
    return cluster, worker


@pytest.mark.own_ray
def test_a_lost_worker_node_retries_the_trial_and_the_search_completes(tmp_path, tiny_stages):
    """Remove the node running a trial (coordinator and training) mid-trial; a fresh node joins; Tune retries the
    trial, which continues from its last checkpoint."""
    space = _space(
        searcher={"algorithm": "tpe", "seed": 0, "num_trials": 2, "max_concurrent": 1},
        adapt={"steps": 12, "eval_every": 2, "batch_clips": 2},
        failure={"max_retries": 1, "worker_restarts": 2},
    )
    out = with_stages(tmp_path / "results", tiny_stages)
    path = write_space(tmp_path / "node.yaml", space)
    cluster, worker = _head_and_worker()
    try:
        run = Cli(["--space", str(path), "--out", str(out), "--name", "run", "--address", cluster.address])
        assert run.wait_for(" step 2:", timeout=300), run.log
        cluster.add_node(num_cpus=2, object_store_memory=128 * 1024**2)
        cluster.remove_node(worker, allow_graceful=False)  # the trial and its training worker die with the node
        assert run.finish(timeout=420) == 0, run.log
    finally:
        cluster.shutdown()
    trials = _trials(out / "run")
    assert len(trials) == 2 and (trials["status"] == "finished").all(), trials[["status", "error"]]
    assert (trials["steps"] == 12).all()
    assert sorted(trials["attempts"]) == [1, 2]  # the trial on the lost node ran again; the other ran once
    retried = trials[trials["attempts"] == 2].iloc[0]
    assert retried["resumed_from_step"] >= 2  # from its last checkpoint, not from scratch
    assert (trials[trials["attempts"] == 1]["resumed_from_step"] == 0).all()

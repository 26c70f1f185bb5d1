"""What the cluster can place, and which cluster a run joins: checked before anything starts or is written."""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd
import pytest

from search import resources as resources_module
from search import run as run_module
from search.run import RunError, cluster_address, main
from search.space import ResourcesSpec, load_space
from tests.conftest import REPO, TINY_SPACE, trial_rows, with_stages, write_space

CPU_ONLY = [{"CPU": 2.0}]


def test_every_shipped_space_names_what_a_gpu_less_two_core_machine_cannot_place():
    smoke = load_space(REPO / "spaces" / "smoke.yaml").resources
    assert resources_module.unplaceable(smoke, CPU_ONLY, "this machine") == []
    default = load_space(REPO / "spaces" / "default.yaml").resources
    problems = resources_module.unplaceable(default, CPU_ONLY, "this machine")
    assert [p.split(":")[0] for p in problems] == ["resources.stage_gpus", "resources.trial_gpus"]
    assert "largest node has 2 CPU and 0 GPU (1 node)" in problems[0]


def test_a_bundle_must_fit_on_one_node_and_fractional_gpus_share_one():
    quarter = ResourcesSpec(trial_cpus=3, trial_gpus=0.25, stage_cpus=4, stage_gpus=1)
    assert resources_module.unplaceable(quarter, [{"CPU": 8.0, "GPU": 1.0}], "c") == []
    split = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}]  # the CPUs and the GPU are on different nodes
    problems = resources_module.unplaceable(quarter, split, "c")
    assert [p.split(":")[0] for p in problems] == ["resources.stage_cpus", "resources.trial_cpus"]
    assert resources_module.unplaceable(quarter, [], "c")[0].endswith("run on a cluster that has such a node")


def test_a_trial_holds_its_coordinator_inside_its_cpus():
    whole_machine = ResourcesSpec(trial_cpus=2, stage_cpus=1)
    assert resources_module.unplaceable(whole_machine, CPU_ONLY, "this machine") == []
    (problem,) = resources_module.unplaceable(whole_machine, [{"CPU": 1.95}], "this machine")
    assert problem.startswith("resources.trial_cpus: a trial holds 2 CPU (its worker and its coordinator's 0.1)")
    (problem,) = resources_module.unplaceable(ResourcesSpec(trial_cpus=2.5), CPU_ONLY, "this machine")
    assert "a trial's worker asks for 2.4 CPU (trial_cpus 2.5 less 0.1 for the trial's coordinator)" in problem


@pytest.mark.parametrize(
    "resources, nodes, expected",
    [
        (ResourcesSpec(trial_cpus=1), CPU_ONLY, 2),  # two one-CPU trials on two cores: the smoke space
        (ResourcesSpec(trial_cpus=1.5), CPU_ONLY, 1),
        (ResourcesSpec(trial_cpus=3, trial_gpus=0.5), [{"CPU": 16.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 4.0}], 3),
        (ResourcesSpec(trial_cpus=1, trial_gpus=1), CPU_ONLY, 0),
    ],
)
def test_trials_at_once_counts_whole_trials_per_node(resources, nodes, expected):
    assert resources_module.trials_at_once(resources, nodes) == expected


@pytest.mark.parametrize(
    "resources, nodes, expected",
    [
        (ResourcesSpec(stage_cpus=2), CPU_ONLY, 1),  # the smoke space on two cores: one job trains every stage
        (ResourcesSpec(stage_cpus=1), CPU_ONLY, 2),
        (ResourcesSpec(stage_cpus=4, stage_gpus=1), [{"CPU": 16.0, "GPU": 1.0}], 1),  # one GPU: one at a time
        (ResourcesSpec(stage_cpus=4, stage_gpus=1), [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 4.0}], 3),
        (ResourcesSpec(stage_cpus=1, stage_gpus=0.5), [{"CPU": 8.0, "GPU": 1.0}], 2),
    ],
)
def test_stage_jobs_at_once_counts_stage_workers_per_node(resources, nodes, expected):
    assert resources_module.stage_jobs_at_once(resources, nodes) == expected
    side_by_side = resources_module.stage_branches_side_by_side(resources, nodes, autoscaled=False)
    assert side_by_side == (expected >= 2)
    assert resources_module.stage_branches_side_by_side(resources, nodes, autoscaled=True)  # nodes may join


def test_a_space_asking_more_trials_at_once_than_fit_is_told_so(capsys):
    spec = load_space(REPO / "spaces" / "smoke.yaml")
    run_module.check_resources(spec, "this machine", CPU_ONLY, autoscaled=False)
    assert "[resources]" not in capsys.readouterr().out
    three = dataclasses.replace(spec, searcher=dataclasses.replace(spec.searcher, max_concurrent=3))
    run_module.check_resources(three, "this machine", CPU_ONLY, autoscaled=False)
    out = capsys.readouterr().out
    assert "searcher.max_concurrent is 3, but this machine holds 2 trials of resources.trial_cpus 1 at once" in out


def test_dry_run_refuses_what_this_machine_cannot_place(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run_module, "this_machine", lambda: CPU_ONLY)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = copy.deepcopy(TINY_SPACE)
    space["resources"] = {"trial_cpus": 1, "trial_gpus": 1, "stage_cpus": 1}
    path = write_space(tmp_path / "gpu.yaml", space)
    assert main(["--space", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: resources.trial_gpus: a trial's worker asks for 1 GPU on one node" in err
    assert not (tmp_path / "out").exists()


def test_an_autoscaling_cluster_is_waited_for_not_refused(capsys):
    spec = load_space(REPO / "spaces" / "default.yaml")
    with pytest.raises(RunError, match="resources.stage_gpus"):
        run_module.check_resources(spec, "this cluster", CPU_ONLY, autoscaled=False)
    run_module.check_resources(spec, "this cluster", CPU_ONLY, autoscaled=True)
    out = capsys.readouterr().out
    assert "its autoscaler adds nodes on demand: the run waits for them" in out and "resources.trial_gpus" in out


def test_a_run_refuses_a_trial_no_node_of_the_cluster_holds(tmp_path, capsys, ray_cluster):
    space = copy.deepcopy(TINY_SPACE)
    space["resources"] = {"trial_cpus": 3, "stage_cpus": 1}
    path = write_space(tmp_path / "big.yaml", space)
    assert main(["--space", str(path), "--out", str(tmp_path / "out"), "--name", "run"]) == 2
    err = capsys.readouterr().err
    assert "resources.trial_cpus: a trial's worker asks for 2.9 CPU (trial_cpus 3 less 0.1 for the trial's" in err
    assert "on one node, but this cluster cannot" in err
    assert not (tmp_path / "out").exists()


def test_ray_address_is_the_cluster_when_no_address_is_given(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) == (None, "a local Ray")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster_address(None) == ("10.0.0.5:6379", "RAY_ADDRESS=10.0.0.5:6379")
    assert cluster_address("auto") == ("auto", "--address auto")
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(RunError, match="dashboard URL"):
        cluster_address(None)


def test_a_ray_address_nobody_answers_is_an_error_even_beside_a_running_ray(tmp_path, capsys, ray_cluster, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    assert main(["--space", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "RAY_ADDRESS=127.0.0.1:9: no Ray cluster answered" in capsys.readouterr().err
    monkeypatch.delenv("RAY_ADDRESS")
    assert main(["--space", str(path), "--out", str(tmp_path / "out"), "--address", "127.0.0.1:9"]) == 2
    assert "--address 127.0.0.1:9: no Ray cluster answered" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.own_ray
def test_a_search_submitted_as_a_ray_job_runs_on_that_cluster(tmp_path, tiny_stages):
    """``ray job submit -- python search/run.py``: the job's driver joins the cluster it was submitted to (through
    ``RAY_ADDRESS``) instead of starting a second Ray inside the job."""
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    assert ray_cli, "the ray command line comes with ray[default]"
    gcs, dashboard = _free_port(), _free_port()
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"  # Ray's token authentication stays on; its CLI then sends the token
    start = [ray_cli, "start", "--head", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=true"]
    start += [f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=env, timeout=120)
    try:
        space = copy.deepcopy(TINY_SPACE)
        space["searcher"]["num_trials"] = 2
        path = write_space(tmp_path / "tiny.yaml", space)
        out = with_stages(tmp_path / "results", tiny_stages)
        submit = [ray_cli, "job", "submit", f"--address=http://127.0.0.1:{dashboard}", "--"]
        submit += [sys.executable, str(REPO / "search" / "run.py"), "--space", str(path), "--out", str(out)]
        submit += ["--name", "run"]
        job = subprocess.run(submit, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
        log = job.stdout + job.stderr
        assert "succeeded" in log, log
        assert f"[run] tiny: results in {out / 'run'} (Ray: RAY_ADDRESS=" in log, log
        table = pd.read_csv(out / "run" / "trials.csv")
        assert len(trial_rows(table)) == 2
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)

"""End to end: ``search/run.py`` on a tiny space with a real local Ray (stages, pre-filter, Tune + Train)."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys

import optuna
import pandas as pd
import pytest

from nlrd.atomic import temporary_file_beside
from nlrd.pipeline import StageCache, stage_keys
from search.launch_marks import MARKS, PREFIX, phase_seconds
from search.run import INTERRUPTED_EXIT, check_run_name, main
from search.run_dir import RunDir
from search.space import load_space
from search.tuner import study_storage, whole_pickle
from tests.conftest import REPO, TINY_SPACE, Cli, trial_rows, with_stages, write_space


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


def test_the_console_script_is_declared_and_runs_this_main():
    """``nlrd-search`` (``[project.scripts]`` in pyproject.toml) is the same command as ``python search/run.py``."""
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert importlib.metadata.EntryPoint("nlrd-search", scripts["nlrd-search"], "console_scripts").load() is main


def test_help_reads_as_plain_text(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "Run a relation-set search: nlrd-search or python search/run.py" in text and "``" not in text


def _ended(run_dir) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "trials.csv")
    return table[table["status"].isin(["finished", "stopped_by_asha"])].set_index("trial_id")


def _reads_to_its_end(path) -> bool:
    """A whole pickle or a whole JSON document (Tune names some of its pickles ``*.json``)."""
    if whole_pickle(path):
        return True
    try:
        json.loads(path.read_bytes())
    except ValueError:
        return False
    return True


def _cut_short(run_dir: RunDir) -> list[str]:
    """Ray's saved state that does not read to its end (what a kill mid-write leaves): Tune's files beside its trial
    folders, and each trial's Train snapshot."""
    state = [*run_dir.tune.glob("*.pkl"), *run_dir.tune.glob("*.json")]
    state += run_dir.path.glob("train-*/checkpoint_manager_snapshot.json")
    return [str(path) for path in state if not _reads_to_its_end(path)]


@pytest.mark.own_ray
def test_interrupted_search_says_so_and_resumes(tmp_path, tiny_stages):
    """Ctrl-C once a trial has ended: the run exits 130 naming ``--resume``, labels only trials that ended as
    finished or stopped (the ones it cut short are ``interrupted``, not stopped by ASHA), and ``--resume`` ends
    every trial, even from an empty ``tuner.pkl`` (what a kill during Tune's copy of it left before
    ``search.storage``)."""
    space = copy.deepcopy(TINY_SPACE)
    space["searcher"]["num_trials"] = 4
    path = write_space(tmp_path / "tiny.yaml", space)
    out = with_stages(tmp_path / "results", tiny_stages)
    run_dir = out / "run"
    run = Cli(["--space", str(path), "--out", str(out), "--name", "run"])
    assert run.wait_for(" ended |", timeout=300), run.log
    run.interrupt()
    assert run.finish(timeout=300) == INTERRUPTED_EXIT, run.log
    assert f"continue with: python search/run.py --resume {run_dir}" in run.log
    table = trial_rows(pd.read_csv(run_dir / "trials.csv"))
    assert set(table["status"]) <= {"finished", "stopped_by_asha", "interrupted"}
    ended = table[table["status"] != "interrupted"]
    assert 1 <= len(ended) < 4
    assert all((run_dir / "reports" / f"{trial}.done").exists() for trial in ended["trial_id"])
    assert "The search was interrupted with" in (run_dir / "summary.md").read_text()
    RunDir(run_dir).tuner_state.write_bytes(b"")
    stale = temporary_file_beside(RunDir(run_dir).tuner_state)  # what a kill between its creation and rename leaves
    resumed = Cli(["--resume", str(run_dir)])
    assert resumed.finish(timeout=900) == 0, resumed.log
    assert "tuner.pkl was cut short" in resumed.log
    removed = re.search(r"\[run\] removed (\d+) temporary files of writes the interruption cut short", resumed.log)
    assert removed and int(removed[1]) >= 1 and not stale.exists(), resumed.log  # Ctrl-C may cut short others too
    final = trial_rows(pd.read_csv(run_dir / "trials.csv"))
    assert len(final) == 4 and set(final["status"]) <= {"finished", "stopped_by_asha"}
    assert "The search was interrupted" not in (run_dir / "summary.md").read_text()


@pytest.mark.own_ray
def test_ctrl_c_during_stage_training_exits_130_with_the_resume_hint(tmp_path):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    out = tmp_path / "results"
    run = Cli(["--space", str(path), "--out", str(out), "--name", "run"])
    assert run.wait_for("[stages] prior step", timeout=300), run.log  # stage training under way
    run.interrupt()
    assert run.finish(timeout=120) == INTERRUPTED_EXIT, run.log
    assert f"continue with: python search/run.py --resume {out / 'run'}" in run.log
    assert "Traceback" not in run.log and "KeyboardInterrupt" not in run.log, run.log
    assert (out / "run" / "manifest.json").is_file()  # a run --resume accepts


@pytest.mark.own_ray
def test_killed_search_resumes_without_losing_or_repeating_trials(tmp_path, tiny_stages):
    """SIGKILL the driver and its local Ray each time a trial has ended, three times, then ``--resume`` to the
    end: every trial ends exactly once, and an ended trial keeps its values through every crash."""
    space = copy.deepcopy(TINY_SPACE)
    space["searcher"]["num_trials"] = 6
    path = write_space(tmp_path / "tiny.yaml", space)
    out = with_stages(tmp_path / "results", tiny_stages)
    run_dir = out / "run"
    runs = [Cli(["--space", str(path), "--out", str(out), "--name", "run"])]
    ended = pd.DataFrame({"mpjpe": [], "status": []})
    for _ in range(3):
        run = runs[-1]
        # A trial that ended just before the last kill may be replayed (and print "ended") first: wait for a new one.
        while run.wait_for(" ended |", timeout=300):
            if run.lines[-1].split("] ", 1)[1].split(" ", 1)[0] not in ended.index:
                break
        else:
            raise AssertionError("no new trial ended within 300 s:\n" + run.log)
        run.kill()
        assert run.proc.returncode == -signal.SIGKILL, run.log
        assert _cut_short(RunDir(run_dir)) == []  # Tune's and Train's saved state, whole after the kill
        now = _ended(run_dir)  # written by the live callback as each trial ended
        assert len(now) > len(ended) and set(ended.index) <= set(now.index)
        assert (now.loc[ended.index, "mpjpe"] == ended["mpjpe"]).all()  # kept, not re-run
        ended = now
        runs.append(Cli(["--resume", str(run_dir)]))
    final = runs[-1]
    assert final.finish(timeout=900) == 0, "\n".join(r.log for r in runs)
    assert "verdicts read from" in final.log
    table = pd.read_csv(run_dir / "trials.csv")
    trials = trial_rows(table)
    assert len(trials) == space["searcher"]["num_trials"]
    assert trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"finished", "stopped_by_asha"}
    again = trials.set_index("trial_id").loc[ended.index]
    assert (again["mpjpe"] == ended["mpjpe"]).all() and (again["status"] == ended["status"]).all()
    study = optuna.load_study(study_name="tiny", storage=study_storage(RunDir(run_dir)))
    recorded = [t.user_attrs["tune_trial_id"] for t in study.trials]
    assert sorted(recorded) == sorted(trials["trial_id"])  # each trial recorded once, none lost
    finished = trials[trials["status"] == "finished"]["trial_id"]
    complete = [t.user_attrs["tune_trial_id"] for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete) == sorted(finished)
    assert (run_dir / "summary.md").exists() and (run_dir / "best.yaml").exists()


def test_search_runs_end_to_end(tmp_path, ray_cluster):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    assert main(["--space", str(path), "--out", str(tmp_path / "results"), "--name", "run"]) == 0
    run_dir = tmp_path / "results" / "run"
    table = pd.read_csv(run_dir / "trials.csv")
    trials = trial_rows(table)
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
    pareto = json.loads((run_dir / "pareto.json").read_text())
    assert pareto["source_only"]["mpjpe"] > 0 and pareto["mean_pose"]["mpjpe"] > 0
    references = table[table["status"] == "reference"].set_index("trial_id")
    assert references.loc["mean_pose", "mpjpe"] == pytest.approx(pareto["mean_pose"]["mpjpe"])
    quality = json.loads((run_dir / "stage_quality.json").read_text())
    assert set(quality["quality"]["relations"]) == set(TINY_SPACE["relations"]["candidates"])
    summary = (run_dir / "summary.md").read_text()
    assert "| mean pose (constant, no image) |" in summary and "Stage quality" in summary
    assert (run_dir / "pareto.png").stat().st_size > 10_000
    assert (run_dir / "study.log").stat().st_size > 0
    assert list((tmp_path / "results" / "cache").glob("prior-*.pt"))
    assert [p.name for p in run_dir.glob("stages-*")] == ["stages-all"]  # 2 CPUs hold one stage_cpus-2 job at once


def test_multi_objective_search_reads_its_front_from_the_study(tmp_path, ray_cluster, tiny_stages):
    space = copy.deepcopy(TINY_SPACE)
    space["objectives"] = [{"metric": "mpjpe", "mode": "min"}, {"metric": "nonlocalness", "mode": "max"}]
    space["scheduler"] = {"type": "none"}
    space["searcher"] = {"algorithm": "nsga2", "seed": 1, "num_trials": 3, "max_concurrent": 2}
    path = write_space(tmp_path / "multi.yaml", space)
    out = with_stages(tmp_path / "results", tiny_stages)  # the stage job is covered by the end-to-end test
    assert main(["--space", str(path), "--out", str(out), "--name", "run"]) == 0
    run_dir = out / "run"
    table = pd.read_csv(run_dir / "trials.csv")
    trials = trial_rows(table)
    assert (trials["status"] == "finished").all() and len(trials) == 3
    pareto = json.loads((run_dir / "pareto.json").read_text())
    assert pareto["axes"] == {"mpjpe": "min", "set_score": "max"}
    study_front = pareto["optuna_front"]
    assert study_front and all(set(p["values"]) == {"mpjpe", "nonlocalness"} for p in study_front)
    ours = {(round(r["mpjpe"], 3), round(r["set_score"], 3)) for r in pareto["front"]}
    theirs = {(round(p["values"]["mpjpe"], 3), round(p["values"]["nonlocalness"], 3)) for p in study_front}
    assert ours == theirs
    for trial_id in trials["trial_id"]:  # each trial's first report carries its launch marks, later ones none
        first, *later = [
            json.loads(line) for line in (run_dir / "reports" / f"{trial_id}.jsonl").read_text().splitlines()
        ]
        assert [name for name in MARKS if PREFIX + name in first] == list(MARKS)
        assert all(0 <= seconds < 600 for seconds in phase_seconds(first).values())
        assert not any(key.startswith(PREFIX) for report in later for key in report)


def test_loggers_tensorboard_writes_event_files_in_each_trials_folder(tmp_path, ray_cluster, tiny_stages):
    """``loggers: [tensorboard]``: each trial's folder in Tune's experiment (``RUN_DIR/tune/trial_<id>_*``, where the
    README points ``tensorboard --logdir``) holds an event file with the trial's evaluations."""
    space = copy.deepcopy(TINY_SPACE)
    space["loggers"] = ["tensorboard"]
    space["searcher"]["num_trials"] = 2
    path = write_space(tmp_path / "tb.yaml", space)
    out = with_stages(tmp_path / "results", tiny_stages)
    assert main(["--space", str(path), "--out", str(out), "--name", "run"]) == 0
    trials = trial_rows(pd.read_csv(out / "run" / "trials.csv"))
    assert len(trials) == 2
    for trial_id in trials["trial_id"]:
        (folder,) = (out / "run" / "tune").glob(f"trial_{trial_id}_*")
        (events,) = folder.glob("events.out.tfevents.*")
        assert b"ray/tune/mpjpe" in events.read_bytes()  # the scalar's tag, as TensorBoard lists it


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    assert main(["--space", str(path), "--out", str(tmp_path / "results"), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "stages to train: world, prior, motion, source" in plan
    assert "6 candidate relation sets from 3 relations" in plan
    assert "[plan] pre-filter: rank by set score (latent_in_support, mean), keep the best 50%\n" in plan
    assert "4 trials with tpe, at most 2 at once" in plan and "adaptation steps" in plan
    assert "stage quality are measured once the stages are trained" in plan
    assert "[plan] tuned parameters (Optuna's distributions):" in plan
    assert "[plan]   relations    choice of the relation sets the pre-filter keeps, of 6" in plan
    assert "[plan]   lr_nonlocal  float, log-uniform on [1e-05, 0.001]" in plan
    assert "[plan]   tau          choice of 0.07, 0.1" in plan
    assert "[plan]   stages: 7 to train; not estimated (no figures measured for small_cnn at 32 px on CPU)" in plan
    assert "[plan]   search: at least 20 s: 4 trials, 2 at a time" in plan and "add up to 6 steps per trial" in plan
    assert not (tmp_path / "results").exists()


def test_dry_run_shows_set_overrides_and_resume_refuses_them(tmp_path, capsys):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    out = tmp_path / "results"
    assert main(["--space", str(path), "--out", str(out), "--dry-run", "--set", "searcher.num_trials=3"]) == 0
    plan = capsys.readouterr().out
    assert f"({path} with --set searcher.num_trials=3)" in plan and "3 trials with tpe" in plan
    assert main(["--resume", str(out / "run"), "--set", "searcher.num_trials=5"]) == 2
    assert "a run keeps the space it started with" in capsys.readouterr().err
    assert main(["--space", str(path), "--out", str(out), "--dry-run", "--set", "searcher.num_trials=0"]) == 2
    assert "searcher.num_trials" in capsys.readouterr().err


def test_dry_run_with_cached_stages_scores_the_sets_without_ray(tmp_path, capsys, tiny_stages):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    out = with_stages(tmp_path / "results", tiny_stages)
    assert main(["--space", str(path), "--out", str(out), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "every stage is cached" in plan
    assert "target MPJPE of the reference lines: mean pose (constant, no image)" in plan
    assert "[quality] held-out mocap: prior" in plan and "[quality] WARNING:" in plan  # tiny stages miss their bars
    assert "[prefilter] 6 relation sets ranked by set score (latent_in_support, mean): 3 kept, 3 rejected" in plan
    assert "[plan]   relations    choice of the 3 relation sets the pre-filter keeps, of 6" in plan
    assert "[plan]   stages: every stage is cached: 0 s" in plan
    assert sorted(p.name for p in out.iterdir()) == ["cache"]


def test_dry_run_scores_no_set_while_a_relation_transformer_is_missing(tmp_path, capsys, tiny_stages):
    """The pre-filter reads every candidate relation's transformer (``latent_x_transformer``)."""
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    out = with_stages(tmp_path / "results", tiny_stages)
    spec = load_space(path)
    cache = StageCache(out / "cache")
    cache.path(stage_keys(spec.stages, spec.relations.candidates).relations["flip"]).unlink()
    assert main(["--space", str(path), "--out", str(out), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "[plan] stages to train: relation flip" in plan
    assert "set scores need the cached world, pose prior, motion embedding and relation transformers" in plan
    assert "[prefilter]" not in plan


@pytest.mark.parametrize("name", ["../escape", "a/b", "/tmp/abs", "a\\b", "..", ".", ""])
def test_a_name_that_is_not_one_folder_is_refused_before_anything_is_written(tmp_path, capsys, name):
    """``--name ../escape`` would put the run directory outside ``--out``."""
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    out = tmp_path / "results"
    assert main(["--space", str(path), "--out", str(out), "--name", name, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --name {name!r}: must be one folder name inside --out") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
    check_run_name("tiny-2025.01.01_1")  # letters, digits, '-', '_' and '.' inside a name are fine


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: tmp, "no manifest.json there"),
        (lambda tmp: (tmp / "manifest.json").write_text("[1, 2]") and tmp, "is not a search/run.py manifest"),
        (lambda tmp: (tmp / "manifest.json").write_text("{") and tmp, "cannot read"),
    ],
)
def test_resume_refuses_directories_that_are_not_runs(tmp_path, capsys, make, expected):
    assert main(["--resume", str(make(tmp_path))]) == 2
    assert expected in capsys.readouterr().err


def test_resume_refuses_a_run_of_another_space(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_space(run_dir / "space.yaml", TINY_SPACE)
    spec_digest = load_space(run_dir / "space.yaml").digest
    (run_dir / "manifest.json").write_text(json.dumps({"space_digest": spec_digest, "cache": str(tmp_path / "c")}))
    other = copy.deepcopy(TINY_SPACE)
    other["searcher"]["num_trials"] = 9
    other_path = write_space(tmp_path / "other.yaml", other)
    assert main(["--resume", str(run_dir), "--space", str(other_path)]) == 2
    assert "belongs to a different space" in capsys.readouterr().err
    (run_dir / "space.yaml").write_text((run_dir / "space.yaml").read_text().replace("num_trials: 4", "num_trials: 5"))
    assert main(["--resume", str(run_dir)]) == 2
    assert "was changed after the run started" in capsys.readouterr().err


def test_resume_refuses_a_run_another_search_is_running_in(tmp_path, capsys):
    """Two searches on one run directory would write one study twice: the second is refused, naming the first,
    before it starts Ray or touches the run."""
    spec = load_space(write_space(tmp_path / "tiny.yaml", TINY_SPACE))
    run_dir = RunDir(tmp_path / "run")
    run_dir.create(spec, StageCache(tmp_path / "cache"))
    before = sorted(p.name for p in run_dir.path.iterdir())
    with run_dir.hold():
        assert main(["--resume", str(run_dir.path)]) == 2
        err = capsys.readouterr().err
        assert sorted(p.name for p in run_dir.path.iterdir()) == sorted([*before, ".run.lock"])
    assert err.startswith(f"error: {run_dir.path}: another search is running in it (search/run.py, pid {os.getpid()}")
    assert "wait for it to end, or stop it, then resume" in err and err.count("\n") == 1

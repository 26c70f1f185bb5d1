"""The live search-efficiency benchmark (``bench/search_live.py``) without Ray: its modes are valid ``--set`` items of
its space, and its analysis of run directories written here in the format ``search/run.py`` writes them."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from bench import search_live
from bench.search_live import (
    DEFAULT_SPACE,
    EXHAUSTIVE,
    MODE_NAMES,
    EndedTrial,
    Run,
    StudyOutcome,
    analyse,
    ended_trials,
    exhaustive_run,
    markdown,
    planned_runs,
    random_search_expectation,
    ratios,
    run_command,
    run_state,
    study_outcome,
    summarise,
)
from nlrd.pipeline import StageCache
from search.export import trials_table, write_trials
from search.prefilter import PrefilterRecord, SetDecision, parse_set_label, save_prefilter, set_label
from search.run_dir import RunDir
from search.space import load_space
from search.trainable import RELATIONS_KEY
from search.trials import FINISHED, STOPPED, TrialRecord, trial_row
from search.tuner import StudyRecorder, study_storage, warmup_points
from tests.conftest import REPO

T0 = datetime(2026, 12, 5, 12, 0, 0)


def trial(label: str, status: str, mpjpe: float, evaluations: int, start_s: float, end_s: float) -> EndedTrial:
    return EndedTrial(label, status, evaluations, mpjpe, T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s))


# --- the space and the modes -------------------------------------------------------------------------------------


def test_bench_space_is_the_smoke_space_with_relation_sets_only_and_the_weights_at_the_middles():
    smoke, bench = load_space(REPO / "spaces" / "smoke.yaml"), load_space(DEFAULT_SPACE)
    assert bench.stages == smoke.stages
    sets = bench.relations.sets()
    assert 15 <= len(sets) <= 21 and ("flip",) in sets and {len(s) for s in sets} == {1, 2}
    assert bench.params == ()
    shared = bench.adapt_config((), {})
    for param in smoke.params:
        assert math.isclose(getattr(shared, param.name), param.middle(), rel_tol=1e-3), param.name
    assert {k: v for k, v in bench.adapt.items() if k in smoke.adapt} == smoke.adapt
    assert abs(bench.searcher.num_trials - len(sets) / 2) <= 1
    assert (bench.searcher.max_concurrent, bench.resources.trial_cpus) == (2, 1)


@pytest.mark.parametrize("seed", [0, 3])
def test_every_mode_is_a_valid_override_of_the_bench_space_and_means_what_its_name_says(seed: int):
    runs = {r.mode: r for r in planned_runs(DEFAULT_SPACE, MODE_NAMES, [seed], keep_fraction=0.5, warmup=3)}
    assert set(runs) == set(MODE_NAMES)
    for mode, run in runs.items():
        spec = load_space(DEFAULT_SPACE, run.overrides)  # what search/run.py does with --space and --set
        assert run.name == f"{mode}-s{seed}" and spec.searcher.seed == seed
        assert spec.searcher.algorithm == ("random" if mode == "random" else "tpe")
        assert spec.scheduler.type == ("asha" if mode.startswith("tpe-asha") else "none")
        decisions = [SetDecision(s, 1.0 / (i + 1), True, "kept") for i, s in enumerate(spec.relations.sets())]
        warm = [point[RELATIONS_KEY] for point in warmup_points(spec, decisions)]
        assert len(warm) == (3 if mode in ("tpe-asha-warmup", "tpe-asha-both") else 0)
        cut = mode in ("tpe-asha-cut", "tpe-asha-both")
        assert spec.prefilter.enabled == (cut or bool(warm))
        assert (spec.prefilter.keep_fraction, spec.prefilter.threshold) == (0.5 if cut else 1.0, None)


def test_the_exhaustive_run_enqueues_every_set_once_and_runs_each_to_the_end():
    run = exhaustive_run(DEFAULT_SPACE)
    spec = load_space(DEFAULT_SPACE, run.overrides)
    sets = spec.relations.sets()
    decisions = [SetDecision(s, float(i), True, "kept") for i, s in enumerate(sets)]
    warm = [point[RELATIONS_KEY] for point in warmup_points(spec, decisions)]
    assert sorted(warm) == sorted(set_label(s) for s in sets)
    assert spec.searcher.num_trials == len(sets) and spec.scheduler.type == "none"
    assert spec.adapt_config((), {}) == load_space(DEFAULT_SPACE).adapt_config((), {})
    assert planned_runs(DEFAULT_SPACE, [EXHAUSTIVE, "tpe"], [0, 1], 0.5, 3)[0] == run


def test_a_new_run_starts_with_its_items_and_an_unfinished_one_resumes(tmp_path: Path):
    run = Run("tpe-s1", "tpe", 1, ("searcher.seed=1", "scheduler.type=none"))
    new = run_command(DEFAULT_SPACE, tmp_path, run, "absent")
    assert new[1] == str(REPO / "search" / "run.py")
    assert new[2:] == [
        *("--space", str(DEFAULT_SPACE), "--out", str(tmp_path), "--name", "tpe-s1"),
        *("--set", "searcher.seed=1", "--set", "scheduler.type=none"),
    ]
    assert run_command(DEFAULT_SPACE, tmp_path, run, "unfinished")[2:] == ["--resume", str(tmp_path / "tpe-s1")]


# --- one study ---------------------------------------------------------------------------------------------------


def test_a_study_reaching_at_its_third_trial_counts_the_trial_epochs_of_the_trials_ended_by_then():
    trials = [  # two at a time; listed by start, ended in another order
        trial("flip", FINISHED, 210.0, 4, 0, 40),
        trial("inplane5", STOPPED, 230.0, 1, 2, 15),
        trial("inplane30", FINISHED, 203.0, 4, 16, 55),
        trial("flip+inplane30", FINISHED, 199.0, 4, 41, 80),
    ]
    outcome = study_outcome(trials, target_mm=204.0, exhaustive={"flip": 209.0, "inplane30": 203.5})
    assert outcome.reached_at == 3  # inplane5 (15 s), flip (40 s), inplane30 (55 s)
    assert outcome.epochs_to_target == 1 + 4 + 4
    assert outcome.wall_to_target_s == 55.0
    assert (outcome.trials, outcome.epochs, outcome.wall_s) == (4, 13, 80.0)
    assert (outcome.best_set, outcome.best_mpjpe) == ("flip+inplane30", 199.0)
    assert outcome.rerun_gaps_mm == pytest.approx([1.0, 0.5])


def test_a_study_never_reaching_is_not_reached_and_a_stopped_trial_below_the_target_does_not_count():
    trials = [trial("flip", STOPPED, 190.0, 1, 0, 10), trial("inplane5", FINISHED, 230.0, 4, 0, 30)]
    outcome = study_outcome(trials, target_mm=204.0, exhaustive={})
    assert (outcome.reached_at, outcome.epochs_to_target, outcome.wall_to_target_s) == (None, None, None)
    assert (outcome.epochs, outcome.best_set) == (5, "inplane5")
    summary = summarise([outcome, study_outcome(trials[1:] + [trial("flip", FINISHED, 200.0, 4, 0, 50)], 204.0, {})])
    assert (summary.studies, summary.reached, summary.reached_share) == (2, 1, 0.5)
    assert (summary.median_epochs_to_target, summary.median_wall_to_target_s) == (8, 50.0)


def outcome_with(epochs: int | None, wall: float | None) -> StudyOutcome:
    return StudyOutcome(5, 20, 100.0, None if epochs is None else 3, epochs, wall, "flip", 200.0)


def test_ratios_are_the_baselines_median_over_the_modes_and_undefined_when_none_reached():
    summaries = {
        "random": summarise([outcome_with(30, 300.0), outcome_with(40, 500.0), outcome_with(None, None)]),
        "tpe-asha": summarise([outcome_with(20, 200.0)]),
        "tpe-asha-cut": summarise([outcome_with(10, 80.0), outcome_with(14, 120.0)]),
        "tpe": summarise([outcome_with(None, None)]),
    }
    assert summaries["random"].median_epochs_to_target == 35 and summaries["random"].reached == 2
    table = ratios(summaries)
    assert table["tpe-asha-cut"]["random"] == {"epochs": pytest.approx(35 / 12), "wall": pytest.approx(400 / 100)}
    assert table["tpe-asha-cut"]["tpe-asha"] == {"epochs": pytest.approx(20 / 12), "wall": pytest.approx(2.0)}
    assert table["random"]["random"] == {"epochs": 1.0, "wall": 1.0}
    assert table["tpe"]["random"] == {"epochs": None, "wall": None}


# --- run directories in search/run.py's format --------------------------------------------------------------------


def write_run(runs_dir: Path, run: Run, trials: list[EndedTrial], kept: set[str] | None = None, ended: bool = True):
    """A run directory as search/run.py leaves it, for what the analysis reads: the manifest and space (``RunDir``),
    the Optuna study as ``StudyRecorder`` fills it, ``trials.csv`` (``search.export``), ``prefilter.json``, and
    ``summary.md`` (only its presence is read) once the run ``ended``."""
    spec = load_space(DEFAULT_SPACE, run.overrides)
    run_dir = RunDir(runs_dir / run.name)
    run_dir.create(spec, StageCache(runs_dir / "cache"))
    labels = [set_label(s) for s in spec.relations.sets()]
    distributions = {RELATIONS_KEY: optuna.distributions.CategoricalDistribution(labels)}
    study = optuna.create_study(storage=study_storage(run_dir), study_name=spec.name, direction="minimize")
    rows = []
    for i, t in enumerate(trials):
        reports = {step: t.mpjpe + (t.evaluations - step) for step in range(1, t.evaluations + 1)}
        state = optuna.trial.TrialState.COMPLETE if t.status == FINISHED else optuna.trial.TrialState.PRUNED
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=-1,
                trial_id=-1,
                state=state,
                value=t.mpjpe if t.status == FINISHED else None,
                values=None,
                datetime_start=t.started,
                datetime_complete=t.ended,
                params={RELATIONS_KEY: t.relation_set},
                distributions=distributions,
                user_attrs={"tune_trial_id": f"t{i}", "relation_set": t.relation_set, "set_score": 0.5},
                system_attrs={},
                intermediate_values=reports,
            )
        )
        last = {"mpjpe": t.mpjpe, "training_iteration": t.evaluations, "step": 10 * t.evaluations, "planned_steps": 40}
        record = TrialRecord(f"t{i}", {RELATIONS_KEY: t.relation_set}, last, t.mpjpe, None, True)
        rows.append(trial_row(record, {}, max_evaluations=4))
    write_trials(run_dir, trials_table(rows, {}, spec.objectives))
    decisions = [SetDecision(parse_set_label(x), 0.5, kept is None or x in kept, "kept") for x in labels]
    save_prefilter(run_dir.prefilter_json, PrefilterRecord("latent_in_support", {}, decisions))
    if ended:
        run_dir.summary_md.write_text("# Search\n")
    return run_dir


def full_study(labels_and_errors: list[tuple[str, float]], start_s: float = 0.0) -> list[EndedTrial]:
    """Every set to the end, one after the other from ``start_s``, 10 s each."""
    return [
        trial(label, FINISHED, error, 4, start_s + 10 * i, start_s + 10 * i + 10)
        for i, (label, error) in enumerate(labels_and_errors)
    ]


def exhaustive_errors() -> dict[str, float]:
    """Every set of the bench space at 220 mm, but flip+inplane30 at 200 mm and inplane30 at 203 mm (within 2%)."""
    labels = [set_label(s) for s in load_space(DEFAULT_SPACE).relations.sets()]
    return {label: {"flip+inplane30": 200.0, "inplane30": 203.0}.get(label, 220.0) for label in labels}


def test_the_analysis_reads_what_the_study_recorder_writes(tmp_path: Path):
    run = planned_runs(DEFAULT_SPACE, ["tpe-asha"], [0], 0.5, 3)[0]
    spec = load_space(DEFAULT_SPACE, run.overrides)
    run_dir = RunDir(tmp_path / run.name)
    run_dir.create(spec, StageCache(tmp_path / "cache"))
    distributions = {RELATIONS_KEY: optuna.distributions.CategoricalDistribution(["flip", "inplane5"])}
    recorder = StudyRecorder(run_dir, spec, distributions, max_evaluations=4, set_scores={"flip": 0.8})
    recorder.setup()
    for trial_id, label, evaluations in (("a", "flip", 4), ("b", "inplane5", 1)):
        tune_trial = SimpleNamespace(trial_id=trial_id, config={RELATIONS_KEY: label}, last_result=None)
        recorder.on_trial_start(0, [], tune_trial)
        for step in range(1, evaluations + 1):
            tune_trial.last_result = {"mpjpe": 220.0 - step, "training_iteration": step, "step": 10 * step}
            tune_trial.last_result["planned_steps"] = 40
            recorder.on_trial_result(0, [], tune_trial, tune_trial.last_result)
        recorder.on_trial_complete(0, [], tune_trial)
    first, second = ended_trials(run_dir)
    assert (first.relation_set, first.status, first.evaluations, first.mpjpe) == ("flip", FINISHED, 4, 216.0)
    assert (second.relation_set, second.status, second.evaluations, second.mpjpe) == ("inplane5", STOPPED, 1, 219.0)
    assert first.started <= first.ended <= second.started <= second.ended


def test_a_run_is_finished_once_its_summary_is_written_and_every_trial_of_its_budget_ended(tmp_path: Path):
    run = planned_runs(DEFAULT_SPACE, ["tpe"], [2], 0.5, 3)[0]
    spec = load_space(DEFAULT_SPACE, run.overrides)
    assert run_state(RunDir(tmp_path / run.name), spec) == "absent"
    ten = full_study([("flip", 210.0)] * spec.searcher.num_trials)
    assert run_state(write_run(tmp_path / "a", run, ten[:-1]), spec) == "unfinished"
    assert run_state(write_run(tmp_path / "b", run, ten, ended=False), spec) == "unfinished"
    assert run_state(write_run(tmp_path / "c", run, ten), spec) == "finished"
    other = load_space(DEFAULT_SPACE, [*run.overrides, "searcher.seed=9"])
    with pytest.raises(SystemExit, match="another configuration"):
        run_state(RunDir(tmp_path / "c" / run.name), other)


def test_the_analysis_of_run_directories_counts_reaching_studies_and_their_ratios(tmp_path: Path):
    runs_dir = tmp_path / "runs"
    truth = exhaustive_errors()
    write_run(runs_dir, exhaustive_run(DEFAULT_SPACE), full_study(list(truth.items())))
    runs = planned_runs(DEFAULT_SPACE, [EXHAUSTIVE, "random", "tpe-asha-cut"], [0, 1, 2], 0.5, 3)
    by_name = {r.name: r for r in runs}
    bad = [("flip", 220.0)] * 10
    # random: seed 0 reaches at its 3rd trial (12 trial-epochs, 30 s), seed 1 at its 6th (24, 60 s), seed 2 never.
    write_run(runs_dir, by_name["random-s0"], full_study(bad[:2] + [("inplane30", 203.2)] + bad[:7]))
    write_run(runs_dir, by_name["random-s1"], full_study(bad[:5] + [("flip+inplane30", 200.1)] + bad[:4]))
    write_run(runs_dir, by_name["random-s2"], full_study(bad))
    # tpe-asha-cut: ASHA stops two trials at their first rung; seed 0 reaches at its 3rd trial (1 + 1 + 4 = 6
    # trial-epochs, its end at 25 s), seed 1 at its 2nd (5, 14 s); seed 2 has not finished.
    cut_s0 = [trial("flip", STOPPED, 230.0, 1, 0, 5), trial("inplane5", STOPPED, 231.0, 1, 0, 6)]
    cut_s0 += [trial("inplane30", FINISHED, 203.9, 4, 5, 25)] + full_study(bad[:7], start_s=25)
    write_run(runs_dir, by_name["tpe-asha-cut-s0"], cut_s0, kept={"flip", "inplane5", "inplane30"})
    cut_s1 = [trial("flip", STOPPED, 230.0, 1, 0, 4), trial("flip+inplane30", FINISHED, 199.8, 4, 1, 14)]
    write_run(runs_dir, by_name["tpe-asha-cut-s1"], cut_s1 + full_study(bad[:8], start_s=14))
    write_run(runs_dir, by_name["tpe-asha-cut-s2"], full_study(bad[:3]), ended=False)

    result = analyse(DEFAULT_SPACE.resolve(), runs_dir, runs, tolerance=0.02)
    assert (result["exhaustive"]["best_set"], result["target_mpjpe"]) == ("flip+inplane30", pytest.approx(204.0))
    assert result["exhaustive"]["missing_sets"] == []
    studies = {s["run"]: s["outcome"] for s in result["studies"]}
    assert (studies["random-s0"]["reached_at"], studies["random-s0"]["epochs_to_target"]) == (3, 12)
    assert studies["random-s0"]["wall_to_target_s"] == 30.0
    assert (studies["random-s1"]["reached_at"], studies["random-s1"]["epochs_to_target"]) == (6, 24)
    assert studies["random-s2"]["reached_at"] is None and studies["random-s2"]["epochs"] == 40
    assert (studies["tpe-asha-cut-s0"]["epochs_to_target"], studies["tpe-asha-cut-s0"]["wall_to_target_s"]) == (6, 25)
    assert (studies["tpe-asha-cut-s1"]["reached_at"], studies["tpe-asha-cut-s1"]["epochs_to_target"]) == (2, 5)
    assert result["missing_runs"] == ["tpe-asha-cut-s2"]
    offered = {s["run"]: (s["offered"], s["targets_offered"]) for s in result["studies"]}
    assert offered["tpe-asha-cut-s0"] == (3, 1) and offered["random-s0"] == (21, 2)

    summary = result["summary"]
    assert (summary["random"]["studies"], summary["random"]["reached"]) == (3, 2)
    assert summary["random"]["reached_share"] == pytest.approx(2 / 3)
    assert (summary["random"]["median_epochs_to_target"], summary["random"]["median_wall_to_target_s"]) == (18, 45)
    assert summary["tpe-asha-cut"]["median_epochs_to_target"] == 5.5
    assert result["ratios"]["tpe-asha-cut"]["random"]["epochs"] == pytest.approx(18 / 5.5)
    assert result["ratios"]["tpe-asha-cut"]["random"]["wall"] == pytest.approx(45 / 19.5)
    assert "tpe-asha" not in result["ratios"]["tpe-asha-cut"]  # not run: no ratio against it
    assert result["rerun_gap_mm"]["max"] == pytest.approx(0.9)
    targets = sum(value <= result["target_mpjpe"] for value in truth.values())
    assert result["random_expectation"]["trials"] == pytest.approx(len(truth) / targets)
    assert np.isclose(summary["tpe-asha-cut"]["median_best_mpjpe"], (203.9 + 199.8) / 2)

    result |= {"date": "today", "machine": "m", "commit": "c", "command": "x", "load_before": None, "load_after": None}
    text = markdown(json.loads(json.dumps(result)))
    assert "| tpe-asha-cut | 2 | 100% | 5.5 / 5.5 | 20 / 20 | 3.27x / 2.31x | n/a | 201.9 |" in text
    assert "Not finished (left out): tpe-asha-cut-s2." in text
    assert f"the first target set at trial {len(truth) / targets:.2f} on average" in text
    assert "| within target | pre-filter set score (latent_in_support, mean) |" in text
    assert [s["run"] for s in result["studies"]][:3] == ["random-s0", "random-s1", "random-s2"]


def test_random_searchs_expectation_is_geometric_in_the_share_of_target_sets():
    expect = random_search_expectation(sets=21, targets=4, evaluations=4, budget=10)
    assert expect["trials"] == pytest.approx(21 / 4)
    assert expect["trial_epochs"] == pytest.approx(21)
    assert expect["reach_share"] == pytest.approx(1 - (17 / 21) ** 10)
    assert random_search_expectation(sets=5, targets=5, evaluations=3, budget=1) == {
        "trials": 1.0,
        "trial_epochs": 3.0,
        "reach_share": 1.0,
    }
    assert random_search_expectation(sets=5, targets=0, evaluations=3, budget=4)["reach_share"] == 0.0


def test_the_analysis_needs_the_exhaustive_run(tmp_path: Path):
    with pytest.raises(SystemExit, match="--modes exhaustive"):
        analyse(DEFAULT_SPACE, tmp_path, [], tolerance=0.02)


def test_the_benchmark_starts_a_run_resumes_it_and_skips_it_once_finished_recording_each_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run = planned_runs(DEFAULT_SPACE, ["random"], [0], 0.5, 3)[0]
    calls = []

    def fake_search(command: list[str], env: dict[str, str], cwd: Path) -> SimpleNamespace:
        """The first call leaves the run interrupted (no summary); the resumed one finishes it."""
        calls.append(command)
        assert "RAY_ADDRESS" not in env and cwd == REPO
        assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
        if "--resume" in command:
            (tmp_path / run.name / "summary.md").write_text("# Search\n")
        else:
            write_run(tmp_path, run, full_study([("flip", 210.0)] * 10), ended=False)
        return SimpleNamespace(returncode=0)

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setattr(search_live.subprocess, "run", fake_search)
    for _ in range(3):
        search_live.execute(DEFAULT_SPACE, tmp_path, run)
    assert len(calls) == 2 and "--name" in calls[0] and "--resume" in calls[1]
    record = json.loads((tmp_path / run.name / search_live.INVOCATIONS_FILE).read_text())
    assert [(call["resumed"], call["returncode"]) for call in record] == [(False, 0), (True, 0)]

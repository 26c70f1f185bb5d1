from __future__ import annotations

import copy
import pickle
from types import SimpleNamespace

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ray import cloudpickle
from ray.tune.search.optuna import OptunaSearch

from search.prefilter import SetDecision
from search.run_dir import RunDir
from search.space import parse_space
from search.trainable import RELATIONS_KEY
from search.tuner import (
    NSGAIISampler,
    StudyRecorder,
    make_sampler,
    search_distributions,
    study_storage,
    warmup_points,
    whole_pickle,
)
from tests.conftest import TINY_SPACE


def _sampler(algorithm: str) -> optuna.samplers.BaseSampler:
    space = copy.deepcopy(TINY_SPACE)
    space["searcher"]["algorithm"] = algorithm
    return make_sampler(parse_space(space, "tiny.yaml"))


@pytest.mark.parametrize("algorithm", ["tpe", "random", "gp", "nsga2"])
def test_every_sampler_survives_the_pickling_tune_does_and_still_samples(algorithm):
    """Tune pickles its searcher, sampler included, when it saves the search; Optuna 5.1's NSGA-II holds a
    thread lock that pickle refuses unless the project's subclass leaves it out."""
    sampler = cloudpickle.loads(cloudpickle.dumps(_sampler(algorithm)))
    directions = ["minimize", "maximize"] if algorithm == "nsga2" else ["minimize"]
    study = optuna.create_study(directions=directions, sampler=sampler)
    study.optimize(lambda t: [t.suggest_float("x", -1.0, 1.0) ** 2, 1.0][: len(directions)], n_trials=6)
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)


def test_the_picklable_nsga2_writes_optunas_study_attributes():
    assert NSGAIISampler._get_generation_key() == optuna.samplers.NSGAIISampler._get_generation_key()
    assert isinstance(_sampler("nsga2"), NSGAIISampler)


def _tune_trial(trial_id: str, label: str, last: dict | None = None) -> SimpleNamespace:
    config = {RELATIONS_KEY: label, "lr_nonlocal": 1e-4, "tau": 0.07}
    return SimpleNamespace(trial_id=trial_id, config=config, last_result=last or {})


def test_the_study_log_is_a_full_optuna_study(tmp_path):
    """What optuna-dashboard reads: named metrics, trials visible while they run, every evaluation, real start and
    end times, and the relation set, its score and PA-MPJPE as trial attributes; a restarted trial keeps one record."""
    spec = parse_space(copy.deepcopy(TINY_SPACE), "tiny.yaml")
    run_dir = RunDir(tmp_path)
    distributions = {p.name: p.distribution() for p in spec.params}
    recorder = StudyRecorder(run_dir, spec, distributions, max_evaluations=2, set_scores={"flip": 0.8})
    recorder.setup()
    trial = _tune_trial("t1", "flip")
    recorder.on_trial_start(0, [], trial)
    storage = study_storage(run_dir)
    (running,) = optuna.load_study(study_name="tiny", storage=storage).trials
    assert running.state == optuna.trial.TrialState.RUNNING and running.datetime_start is not None
    for step, mpjpe in ((1, 190.0), (2, 180.0)):
        recorder.on_trial_result(0, [], trial, {"mpjpe": mpjpe, "training_iteration": step})
    recorder.on_trial_start(0, [], trial)  # Tune restarts it: still one record
    trial.last_result = {"mpjpe": 180.0, "pa_mpjpe": 140.0, "training_iteration": 2}
    recorder.on_trial_complete(0, [], trial)
    stopped = _tune_trial("t2", "flip", {"mpjpe": 200.0, "training_iteration": 1})
    recorder.on_trial_start(0, [], stopped)
    recorder.on_trial_result(0, [], stopped, {"mpjpe": 200.0, "training_iteration": 1})
    recorder.on_trial_complete(0, [], stopped)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.metric_names == ["mpjpe"]
    done, pruned = study.trials
    assert done.state == optuna.trial.TrialState.COMPLETE and done.values == [180.0]
    assert done.intermediate_values == {1: 190.0, 2: 180.0} and done.datetime_complete >= done.datetime_start
    assert done.user_attrs == {"tune_trial_id": "t1", "relation_set": "flip", "set_score": 0.8, "pa_mpjpe": 140.0}
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.intermediate_values == {1: 200.0}
    figure = optuna.visualization.plot_optimization_history(study)  # Optuna's own plots open the study
    assert len(figure.data) >= 1
    assert len(optuna.visualization.plot_intermediate_values(study).data) == 2


def test_the_warm_up_runs_the_best_scoring_kept_sets_first_with_knobs_in_the_middle():
    space = copy.deepcopy(TINY_SPACE)
    space["prefilter"] = {"keep_fraction": 0.5, "warmup": 2}
    space["params"] = {"lr_nonlocal": "tag(log, interval(1e-5, 1e-3))", "tau": "choice(0.07, 0.1)"}
    spec = parse_space(space, "tiny.yaml")
    decisions = [
        SetDecision(("flip",), 0.6, True, "kept"),
        SetDecision(("flip", "inplane5"), 0.9, True, "kept"),
        SetDecision(("inplane5",), 0.95, False, "score below"),
        SetDecision(("flip_backward",), 0.7, True, "kept"),
    ]
    points = warmup_points(spec, decisions)
    assert [p[RELATIONS_KEY] for p in points] == ["flip+inplane5", "flip_backward"]  # kept only, best first
    assert points[0]["lr_nonlocal"] == pytest.approx(1e-4) and points[0]["tau"] == 0.07
    searcher = OptunaSearch(
        search_distributions(spec, decisions), metric="mpjpe", mode="min", points_to_evaluate=points, sampler=None
    )
    suggested = [searcher.suggest(f"t{i}")[RELATIONS_KEY] for i in range(3)]
    assert suggested[:2] == ["flip+inplane5", "flip_backward"]  # the enqueued trials come first
    assert warmup_points(parse_space(TINY_SPACE, "tiny.yaml"), decisions) == []  # warmup 0: the cut alone


_STATES = st.recursive(
    st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=30,
)


@given(state=_STATES, protocol=st.integers(2, pickle.HIGHEST_PROTOCOL), data=st.data())
def test_a_pickle_is_whole_and_every_cut_of_it_is_not(tmp_path_factory, state, protocol, data):
    """How ``--resume`` tells a ``tuner.pkl`` that a kill cut short (empty, or a prefix) without unpickling it."""
    blob = pickle.dumps(state, protocol=protocol)
    path = tmp_path_factory.mktemp("pickle") / "tuner.pkl"
    path.write_bytes(blob)
    assert whole_pickle(path)
    path.write_bytes(blob[: data.draw(st.integers(0, len(blob) - 1))])
    assert not whole_pickle(path)

"""Assemble the Ray Tune search: OptunaSearch over the kept relation sets and the tuned knobs, ASHA on top, and
the callbacks that print progress and keep the run directory's tables and study current."""

from __future__ import annotations

import math
import pickletools
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from search.export import trials_table, write_trials
from search.loggers import logger_callbacks
from search.prefilter import SetDecision, warmup_sets
from search.run_dir import RunDir
from search.space import ObjectiveSpec, SearchSpec
from search.trainable import RELATIONS_KEY
from search.trials import ran_to_the_end, record_from_trial, reference_rows, rejected_rows, trial_row


def num_evaluations(spec: SearchSpec) -> int:
    """Reports a full-length trial makes: the ASHA budget ``max_t`` (the largest steps the space allows)."""
    return math.ceil(int(spec.knob_range("steps")[1]) / int(spec.knob_range("eval_every")[0]))


def search_distributions(
    spec: SearchSpec, decisions: list[SetDecision]
) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's space: the relation sets the pre-filter kept, plus the space's tuned knobs."""
    kept = [d.label for d in decisions if d.kept]
    space: dict[str, optuna.distributions.BaseDistribution] = {
        RELATIONS_KEY: optuna.distributions.CategoricalDistribution(kept)
    }
    space.update({param.name: param.distribution() for param in spec.params})
    return space


def warmup_points(spec: SearchSpec, decisions: list[SetDecision]) -> list[dict[str, Any]]:
    """The trials the search runs first (``prefilter.warmup``): the best-scoring kept sets, each knob at the middle
    of its range."""
    knobs = {param.name: param.middle() for param in spec.params}
    return [{RELATIONS_KEY: d.label, **knobs} for d in warmup_sets(decisions, spec.prefilter)]


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable.  Tune pickles the searcher with the sampler in it (its saved state and
    checkpoints), and Optuna 5.1's genetic samplers hold a ``threading.Lock``, which pickle refuses: the lock
    is left out of the state and made anew on unpickling.  The class keeps Optuna's name because the genetic
    base class names its study attributes after the class, so studies read the same with either."""

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "_thread_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def make_sampler(spec: SearchSpec) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler.  Model-based samplers start from random trials: a third of the budget,
    between 2 and 10; NSGA-II's population is a quarter of the budget, between 4 and 50."""
    seed, budget = spec.searcher.seed, spec.searcher.num_trials
    startup = min(10, max(2, budget // 3))
    algorithm = spec.searcher.algorithm
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "nsga2":
        return NSGAIISampler(seed=seed, population_size=min(50, max(4, budget // 4)))
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


class ProgressPrinter(tune.Callback):
    """One short line per trial event, with the running count and the best value so far, instead of Ray's
    tables."""

    def __init__(self, total: int, metric: str, mode: str, rejected: int) -> None:
        self.total = total
        self.metric = metric
        self.mode = mode
        self.rejected = rejected
        self.best: float | None = None
        self.start = time.monotonic()

    def _line(self, trials: list, text: str) -> None:
        running = sum(t.status == "RUNNING" for t in trials)
        ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        best = "n/a" if self.best is None else f"{self.best:.4g}"
        print(
            f"[search {time.monotonic() - self.start:5.0f}s] {text} | running {running}, ended {ended}/{self.total}, "
            f"rejected by pre-filter {self.rejected}, best {self.metric} {best}",
            flush=True,
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        knobs = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.config.items() if k != RELATIONS_KEY)
        self._line(trials, f"{trial.trial_id} started {trial.config[RELATIONS_KEY]}" + (f" ({knobs})" if knobs else ""))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if value is not None:
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            self.best = value if better else self.best
            self._line(trials, f"{trial.trial_id} step {result.get('step')}: {self.metric} {value:.4g}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, f"{trial.trial_id} ended")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, f"{trial.trial_id} FAILED (reason in trials.csv)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, f"{trial.trial_id} failed; retrying it (its error is in trials.csv if it fails for good)")


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _run_dir_state(state: dict[str, Any]) -> dict[str, Any]:
    """A callback's pickled state with its run directory as a ``RunDir``.  Tune's ``tuner.pkl`` holds the callbacks
    and ``--resume`` unpickles them; runs saved before ``RunDir`` existed hold a ``Path`` there."""
    run_dir = state["run_dir"]
    return {**state, "run_dir": run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)}


class LiveTables(tune.Callback):
    """Rewrites ``trials.csv``/``trials.parquet`` each time a trial ends, so finished trials are on disk as
    soon as they finish, whatever happens to the driver afterwards; records each trial's reports for a replay.
    ``relation_values``: each relation's value of the score that ranked the sets (the ``nl_<relation>`` columns).
    ``references``: the reference lines' metrics (``nlrd.pipeline.reference_lines``), rows of the table too."""

    def __init__(
        self,
        run_dir: RunDir,
        decisions: list[SetDecision],
        relation_values: dict[str, float],
        objectives: Sequence[ObjectiveSpec],
        max_evaluations: int,
        references: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.references = references or {}
        self.decisions = decisions
        self.relation_values = relation_values
        self.objectives = tuple(objectives)
        self.max_evaluations = max_evaluations
        self.failed: dict[str, bool] = {}  # trials this driver saw end -> whether they failed
        self.reports = run_dir.reports

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = _run_dir_state(state)
        if "scores" in state:  # runs saved before prefilter.score hold each relation's NonLocalness, ranked by it
            state["relation_values"] = {name: value.normalised for name, value in state.pop("scores").items()}
        self.__dict__.update({"references": {}, **state})  # runs saved before reference lines

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.reports.start(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.reports.append(trial.trial_id, result)

    def _write(self, trials: list[Any]) -> None:
        set_scores = {d.label: d.score for d in self.decisions}
        records = [
            record_from_trial(t, t.trial_id in self.failed, self.failed.get(t.trial_id, False), self.reports)
            for t in trials
        ]
        rows = [trial_row(r, set_scores, self.max_evaluations, self.reports.attempts(r.trial_id)) for r in records]
        rows += rejected_rows(self.decisions) + reference_rows(self.references)
        write_trials(self.run_dir, trials_table(rows, self.relation_values, self.objectives))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed[trial.trial_id] = False
        self.reports.finish(trial.trial_id)
        self._write(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed[trial.trial_id] = True
        self._write(trials)


def study_storage(run_dir: RunDir) -> optuna.storages.BaseStorage:
    """The run's Optuna study storage: a journal file that ``optuna-dashboard`` and ``optuna.load_study`` open."""
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir.study_log)))


class StudyRecorder(tune.Callback):
    """Keeps the run's persistent Optuna study (``study.log``) as a full record of the search.

    The searcher's own study lives in Tune's checkpointed searcher state, so that after a crash the searcher and
    Tune agree on which trials ended; this persistent copy is what ``optuna-dashboard``, Optuna's plots and the
    multi-objective Pareto front read.  A trial appears when it starts (RUNNING, with its real start time), gets
    every evaluation as an intermediate value, and ends once: COMPLETE when it finished, PRUNED when ASHA stopped
    it, FAIL when it failed.  Its Tune trial id (which keeps a resumed search from recording a trial twice), relation
    set, set score and last PA-MPJPE are trial attributes; the study names its metrics.
    """

    def __init__(
        self,
        run_dir: RunDir,
        spec: SearchSpec,
        distributions: dict,
        max_evaluations: int,
        set_scores: dict[str, float] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.study_name = spec.name
        self.metrics = [o.metric for o in spec.objectives]
        self.directions = ["minimize" if o.mode == "min" else "maximize" for o in spec.objectives]
        self.distributions = distributions
        self.max_evaluations = max_evaluations
        self.set_scores = set_scores or {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"set_scores": {}, **_run_dir_state(state)})  # runs saved before set scores

    def _study(self) -> optuna.Study:
        study = optuna.create_study(
            storage=study_storage(self.run_dir),
            study_name=self.study_name,
            directions=self.directions,
            load_if_exists=True,
        )
        if study.metric_names is None:
            with warnings.catch_warnings():  # experimental in Optuna 5, and what the dashboard labels its axes with
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(self.metrics)
        return study

    @staticmethod
    def _find(study: optuna.Study, tune_id: str) -> optuna.trial.FrozenTrial | None:
        return next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("tune_trial_id") == tune_id), None)

    def _attrs(self, trial: Any) -> dict[str, Any]:
        label = trial.config.get(RELATIONS_KEY, "")
        return {"tune_trial_id": trial.trial_id, "relation_set": label, "set_score": self.set_scores.get(label)}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        study = self._study()
        if self._find(study, trial.trial_id) is not None:
            return  # a trial Tune starts again (a retry, a resumed search) keeps its record
        study.add_trial(
            optuna.trial.FrozenTrial(
                number=-1,
                trial_id=-1,
                state=optuna.trial.TrialState.RUNNING,
                value=None,
                values=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params={name: trial.config[name] for name in self.distributions},
                distributions=self.distributions,
                user_attrs=self._attrs(trial),
                system_attrs={},
                intermediate_values={},
            )
        )

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        study = self._study()
        record = self._find(study, trial.trial_id)
        value, step = result.get(self.metrics[0]), result.get("training_iteration")
        if record is None or record.state.is_finished() or value is None or step is None:
            return
        storage, trial_id = self._storage_id(record)
        storage.set_trial_intermediate_value(trial_id, int(step), float(value))

    def _storage_id(self, record: optuna.trial.FrozenTrial) -> tuple[optuna.storages.BaseStorage, int]:
        """The study's storage and the storage's id of ``record``, to change a trial that is already recorded."""
        storage = study_storage(self.run_dir)
        study_id = storage.get_study_id_from_name(self.study_name)
        return storage, storage.get_trial_id_from_study_id_trial_number(study_id, record.number)

    def _record(self, trial: Any, failed: bool) -> None:
        study = self._study()
        record = self._find(study, trial.trial_id)
        if record is None:  # started before this recorder existed (a run saved by an earlier version)
            self.on_trial_start(0, [], trial)
            record = self._find(study, trial.trial_id)
        if record.state.is_finished():
            return
        result = trial.last_result or {}
        values = [result.get(m) for m in self.metrics]
        if failed or any(v is None for v in values):
            state, values = optuna.trial.TrialState.FAIL, None
        elif not ran_to_the_end(result, self.max_evaluations):
            state, values = optuna.trial.TrialState.PRUNED, None
        else:
            state = optuna.trial.TrialState.COMPLETE
        storage, trial_id = self._storage_id(record)
        if result.get("pa_mpjpe") is not None:
            storage.set_trial_user_attr(trial_id, "pa_mpjpe", float(result["pa_mpjpe"]))
        storage.set_trial_state_values(trial_id, state, values)

    def setup(self, **info: Any) -> None:
        self._study()  # the study exists from the start, for dashboards watching the run

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial, failed=True)


def build_tuner(
    spec: SearchSpec,
    trainable: Any,
    decisions: list[SetDecision],
    relation_values: dict[str, float],
    run_dir: RunDir,
    references: dict[str, dict[str, float]] | None = None,
) -> tune.Tuner:
    """The Tuner of a new search: Optuna's sampler over the kept sets and knobs, its study in ``run_dir``,
    ASHA for single-objective runs, callbacks that print progress and keep the tables current, and the space's
    experiment trackers (``search.loggers``)."""
    metric, mode = spec.objective.metric, spec.objective.mode
    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    distributions = search_distributions(spec, decisions)
    searcher = OptunaSearch(
        distributions,
        metric=metrics if spec.multi_objective else metric,
        mode=modes if spec.multi_objective else mode,
        sampler=make_sampler(spec),
        points_to_evaluate=warmup_points(spec, decisions) or None,
    )
    if spec.scheduler.type == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            metric=metric,
            mode=mode,
            max_t=num_evaluations(spec),
            grace_period=min(spec.scheduler.grace_period, num_evaluations(spec)),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    printer = ProgressPrinter(spec.searcher.num_trials, metric, mode, sum(not d.kept for d in decisions))
    tables = LiveTables(run_dir, decisions, relation_values, spec.objectives, num_evaluations(spec), references)
    set_scores = {d.label: d.score for d in decisions}
    study = StudyRecorder(run_dir, spec, distributions, num_evaluations(spec), set_scores)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=spec.searcher.num_trials,
            max_concurrent_trials=spec.searcher.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=run_dir.tune.name,
            storage_path=run_dir.storage_path,
            storage_filesystem=run_dir.storage_filesystem,
            verbose=0,
            callbacks=[tables, study, printer, *logger_callbacks(spec, run_dir)],
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_retries),
        ),
    )


def whole_pickle(path: Path) -> bool:
    """Whether ``path`` holds a pickle that runs to its end, judged from its opcodes without unpickling it."""
    try:
        for _ in pickletools.genops(path.read_bytes()):
            pass
    except ValueError:  # "pickle exhausted before seeing STOP", or a cut in an opcode's argument
        return False
    return True


def restore_tuner(run_dir: RunDir, trainable: Any, build: Callable[[], tune.Tuner]) -> tune.Tuner:
    """The search Tune saved in ``run_dir``, to continue it; ``build()`` when it saved none (the run stopped before
    its search started).  Tune unpickles the saved state: ``run_dir`` must have passed ``RunDir.read_manifest``.

    A ``tuner.pkl`` cut short (runs written before ``search.storage``, whose Tune could be killed while it copied
    the file) is written again by ``build()``: it holds only what the Tuner was built with, which ``build`` makes
    again from the run's space, and the search's progress lives in Tune's other state files."""
    path, filesystem = str(run_dir.tune), run_dir.storage_filesystem
    if not tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        return build()
    if not whole_pickle(run_dir.tuner_state):
        print(
            f"[run] {run_dir.tuner_state} was cut short (a kill while Tune wrote it); "
            "written again from the run's space",
            flush=True,
        )
        build()
    return tune.Tuner.restore(
        path,
        trainable=trainable,
        resume_unfinished=True,
        resume_errored=False,
        storage_filesystem=filesystem,
    )

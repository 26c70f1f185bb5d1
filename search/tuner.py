"""Assemble the Ray Tune search: OptunaSearch over the kept relation sets and the tuned knobs, ASHA on top."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from nlrd.train.adapt import AdaptConfig
from search.prefilter import SetDecision
from search.space import SearchSpec
from search.trainable import RELATIONS_KEY

STUDY_FILE = "study.log"
TUNE_DIR = "tune"


def num_evaluations(spec: SearchSpec) -> int:
    """Reports a full-length trial makes: the ASHA budget ``max_t`` (the largest steps the space allows)."""
    default = AdaptConfig(relations=())
    steps = spec.adapt.get("steps", default.steps)
    every = spec.adapt.get("eval_every", default.eval_every)
    for param in spec.params:
        if param.name == "steps":
            steps = max(param.choices) if param.choices is not None else int(param.high)
        if param.name == "eval_every":
            every = min(param.choices) if param.choices is not None else int(param.low)
    return math.ceil(steps / every)


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


def make_sampler(spec: SearchSpec) -> optuna.samplers.BaseSampler:
    seed = spec.searcher.seed
    if spec.searcher.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, spec.searcher.num_trials // 3)))


class ProgressPrinter(tune.Callback):
    """One short line per trial event, instead of Ray's tables."""

    def __init__(self, total: int, metric: str) -> None:
        self.total = total
        self.metric = metric
        self.done = 0
        self.best: float | None = None
        self.start = time.monotonic()

    def _line(self, text: str) -> None:
        print(f"[search {time.monotonic() - self.start:5.0f}s] {text}", flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        knobs = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.config.items() if k != RELATIONS_KEY)
        self._line(f"{trial.trial_id} started: {trial.config[RELATIONS_KEY]}" + (f" ({knobs})" if knobs else ""))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if value is not None:
            self.best = value if self.best is None else min(self.best, value)
            self._line(f"{trial.trial_id} step {result.get('step')}: {self.metric} {value:.1f} mm")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        best = "n/a" if self.best is None else f"{self.best:.1f} mm"
        self._line(f"{trial.trial_id} ended ({self.done}/{self.total} trials; best {self.metric} so far {best})")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        self._line(f"{trial.trial_id} FAILED ({self.done}/{self.total}); see trials.csv")


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def build_tuner(spec: SearchSpec, trainable: Any, decisions: list[SetDecision], run_dir: Path) -> tune.Tuner:
    metric, mode = spec.objective.metric, spec.objective.mode
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / STUDY_FILE)))
    searcher = OptunaSearch(
        search_distributions(spec, decisions),
        metric=metric,
        mode=mode,
        sampler=make_sampler(spec),
        storage=storage,
        study_name=spec.name,
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
    printer = ProgressPrinter(spec.searcher.num_trials, metric)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=spec.searcher.num_trials,
            max_concurrent_trials=spec.searcher.max_concurrent,
        ),
        run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(run_dir.resolve()), verbose=0, callbacks=[printer]),
    )

"""One search trial: a Tune function trainable that launches a Ray Train ``TorchTrainer``.

This is the pattern Ray recommends since Train V2: the Tune trial holds a sliver of CPU and only
coordinates; the Train worker holds the real resources and runs ``nlrd.train.adapt``.  Metrics reach
Tune (and so ASHA and Optuna) through ``TuneReportCallback``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray.train
import torch
from ray import tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.result import AUTO_RESULT_KEYS

from nlrd.pipeline import StageCache, StageKeys, load_stages, load_world
from nlrd.train.adapt import STATE_FILE, AdaptConfig, adapt, adapt_state_step
from search.prefilter import parse_set_label
from search.space import SearchSpec

#: Tune config key of the relation set; the other keys are AdaptConfig fields.
RELATIONS_KEY = "relations"
#: CPU share of the coordinating Tune trial (zero is refused by Ray).
TRIAL_COORDINATOR_CPU = 0.1


#: Keys Tune adds to every result; a replay reports only what the trial itself reported.
_TUNE_KEYS = {*AUTO_RESULT_KEYS, "trial_id", "done", "experiment_tag", "should_checkpoint"}


class DivergedTrialError(RuntimeError):
    """A trial's loss turned NaN/inf: it ends failed, and a retry fails at once (its seed would diverge again)."""


class InjectedTrialError(RuntimeError):
    """Raised by the fault-injection hook (``INJECT_ERRORS_ENV``) to exercise the failure policy."""


#: Testing hook: with ``NLRD_INJECT_TRIAL_ERRORS=N`` in the driver's environment, every trial raises on its first
#: N attempts, before it launches any training, so the space's ``failure.max_retries`` can be seen at work.
INJECT_ERRORS_ENV = "NLRD_INJECT_TRIAL_ERRORS"


class TrialReports:
    """Each trial's reports as JSON lines under ``<run>/reports``, a marker once it ended normally, its
    attempt count, and the reason it diverged if it did.

    Tune saves its own state a moment after a trial ends; a crash in between would make a resumed search
    train that trial again.  Instead the trainable replays the recorded reports of a trial marked done
    (``replay``), so the searcher and ASHA see the same values and nothing is trained twice.  The run
    directory must be on storage every node sees (it is Ray Train's ``storage_path`` too).
    """

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "reports"

    def _log(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.jsonl"

    def _done(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.done"

    def _attempts(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.attempts"

    def _diverged(self, trial_id: str) -> Path:
        return self.root / f"{trial_id}.diverged"

    def new_attempt(self, trial_id: str) -> int:
        """Count one more attempt at ``trial_id`` (the first is 1); returns the count."""
        self.root.mkdir(parents=True, exist_ok=True)
        count = self.attempts(trial_id) + 1
        self._attempts(trial_id).write_text(str(count))
        return count

    def attempts(self, trial_id: str) -> int:
        try:
            return int(self._attempts(trial_id).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def mark_diverged(self, trial_id: str, reason: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._diverged(trial_id).write_text(reason)

    def diverged(self, trial_id: str) -> str | None:
        """Why ``trial_id`` diverged, or None when it did not."""
        path = self._diverged(trial_id)
        return path.read_text() if path.exists() else None

    def start(self, trial_id: str) -> None:
        """A trial (re)starts from scratch: forget a partial history, keep a finished one for its replay."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._done(trial_id).exists():
            self._log(trial_id).unlink(missing_ok=True)

    def append(self, trial_id: str, result: dict[str, Any]) -> None:
        if self._done(trial_id).exists():
            return  # a replay reports what is already recorded
        reported = {k: v for k, v in result.items() if k not in _TUNE_KEYS and isinstance(v, (int, float, str))}
        with open(self._log(trial_id), "a") as handle:
            handle.write(json.dumps(reported) + "\n")

    def finish(self, trial_id: str) -> None:
        self._done(trial_id).touch()

    def ended(self, trial_id: str) -> bool:
        """Whether ``trial_id`` ended normally: ran to its end or was stopped by the scheduler."""
        return self._done(trial_id).exists()

    def replay(self, trial_id: str) -> list[dict[str, Any]] | None:
        """The reports of a trial that already ended, or None when it must train."""
        if not self._done(trial_id).exists():
            return None
        return [json.loads(line) for line in self._log(trial_id).read_text().splitlines() if line.strip()]


def adapt_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: adapt the source encoder to the target domain, reporting each evaluation with the
    relation set's non-localness, the cost so far and a checkpoint of the encoder."""
    torch.set_num_threads(max(1, int(config["cpus"])))
    start = time.monotonic()
    cache = StageCache(config["cache_root"])
    keys = StageKeys(**config["keys"])
    adapt_config = AdaptConfig(**config["adapt"])
    device = ray.train.torch.get_device()
    stages = load_stages(cache, keys, adapt_config.relations, device)
    world = load_world(cache, keys.world)
    saved = ray.train.get_checkpoint()  # set when Train restarts a lost worker or Tune retries the trial
    with tempfile.TemporaryDirectory(prefix="nlrd-ckpt-") as checkpoint_dir:
        resumed_from = 0
        if saved is not None:
            with saved.as_directory() as folder:
                shutil.copytree(folder, checkpoint_dir, dirs_exist_ok=True)
            resumed_from = adapt_state_step(Path(checkpoint_dir) / STATE_FILE)

        def report(metrics: dict[str, float]) -> None:
            cost = (time.monotonic() - start) * config["devices"]
            extra = {
                "nonlocalness": config["nonlocalness"],
                "device_seconds": cost,
                "planned_steps": adapt_config.steps,
                "resumed_from_step": resumed_from,
            }
            ray.train.report({**metrics, **extra}, checkpoint=Checkpoint.from_directory(checkpoint_dir))

        try:
            adapt(
                adapt_config,
                stages,
                world.target_train,
                world.target_val,
                report=report,
                device=device,
                checkpoint_dir=checkpoint_dir,
                resume_from=checkpoint_dir if saved is not None else None,
                source=world.source,
            )
        except FloatingPointError as exc:  # deterministic: ending the run normally keeps Train from retrying it
            TrialReports(config["run_dir"]).mark_diverged(config["trial_id"], f"FloatingPointError: {exc}")


def make_trainable(
    spec: SearchSpec, cache: StageCache, keys: StageKeys, storage_path: str, set_scores: dict[str, float]
) -> Any:
    """The Tune trainable for ``spec``, with its resources declared.  ``set_scores``: each relation set's
    pre-filter score by label, reported by the trial as ``nonlocalness``."""
    resources = spec.resources

    reports = TrialReports(storage_path)

    inject_errors = int(os.environ.get(INJECT_ERRORS_ENV, "0") or 0)  # read on the driver, shipped with `trial`

    def trial(config: dict[str, Any]) -> None:
        trial_id = tune.get_context().get_trial_id()
        recorded = reports.replay(trial_id)
        if recorded is not None:  # it ended before a crash that Tune's saved state did not see
            for metrics in recorded:
                tune.report(metrics)
            return
        reason = reports.diverged(trial_id)
        if reason is not None:
            raise DivergedTrialError(reason)
        if reports.new_attempt(trial_id) <= inject_errors:
            raise InjectedTrialError(f"injected error ({INJECT_ERRORS_ENV}={inject_errors})")
        sampled = {name: value for name, value in config.items() if name != RELATIONS_KEY}
        adapt_config = spec.adapt_config(parse_set_label(config[RELATIONS_KEY]), sampled)
        trainer = TorchTrainer(
            adapt_loop,
            train_loop_config={
                "adapt": asdict(adapt_config),
                "keys": keys.as_dict(),
                "cache_root": str(cache.root),
                "cpus": resources.trial_cpus,
                "devices": resources.trial_gpus or resources.trial_cpus,
                "nonlocalness": set_scores[config[RELATIONS_KEY]],
                "run_dir": storage_path,
                "trial_id": trial_id,
            },
            scaling_config=ScalingConfig(
                num_workers=1,
                use_gpu=resources.trial_gpus > 0,
                resources_per_worker={"CPU": resources.trial_cpus, "GPU": resources.trial_gpus},
            ),
            run_config=RunConfig(
                name=f"train-{trial_id}",
                storage_path=storage_path,
                callbacks=[TuneReportCallback()],
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                failure_config=FailureConfig(max_failures=spec.failure.worker_restarts),
            ),
        )
        trainer.fit()
        reason = reports.diverged(trial_id)
        if reason is not None:
            raise DivergedTrialError(reason)

    return tune.with_resources(trial, {"CPU": TRIAL_COORDINATOR_CPU})

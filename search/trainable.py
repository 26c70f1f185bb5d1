"""One search trial: a Tune function trainable that launches a one-worker Ray Train run.

This is the pattern Ray recommends since Train V2: the Tune trial holds a sliver of CPU and only
coordinates; the Train worker holds the real resources and runs ``nlrd.train.adapt``.  Metrics reach
Tune (and so ASHA and Optuna) through ``search.report_relay``.

The run is Train V2's ``DataParallelTrainer``, the base of ``TorchTrainer`` without its torch backend: a trial has
one worker and no DistributedDataParallel, so the gloo/NCCL process group ``TorchTrainer`` sets up on every launch
would connect that worker to nobody (about 0.5 s of a smoke trial's launch on 2 cores, ``bench/RESULTS.md``
section 6).
Train's controller, worker placement, checkpoints, failure retries and report callbacks are the same.

The trial's own process needs no torch: the trial function holds plain values (the space's adaptation fields, the
cache's root, the stage keys) and the Train worker builds the ``AdaptConfig`` and imports torch and ``nlrd``.  A
Tune trial actor thus skips torch's import (over a second on 2 cores) and its memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train
from ray import tune
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from search.launch_marks import LaunchMarks
from search.report_relay import ReportRelay, relay_fit

if TYPE_CHECKING:
    from nlrd.pipeline import StageCache, StageKeys
    from search.run_dir import RunDir
    from search.space import SearchSpec

#: Tune config key of the relation set; the other keys are AdaptConfig fields.
RELATIONS_KEY = "relations"
#: Ray Train settings of a trial's Train run (``ray.train.v2._internal.constants``), set in the trial's
#: process unless the user set them; Train passes them on to its controller and worker.  The controller polls the
#: worker every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (default 2 s), and a report or the end of training waits for
#: that poll before it reaches Tune; a poll that misses it is no failure (only one hanging for
#: ``RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S`` is).  The preemption watcher is one more actor process per trial,
#: started while the worker starts on the same cores; it lets Train wait out a node's drain notice, and without it
#: a preempted node is a lost worker, which ``failure.worker_restarts`` retries.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
#: File in each checkpoint holding the report it was made with: a retried trial restored at its last step has
#: nothing left to train, and reports that again (Tune needs a result from every attempt).
LAST_REPORT_FILE = "report.json"


class DivergedTrialError(RuntimeError):
    """A trial's loss turned NaN/inf: it ends failed, and a retry fails at once (its seed would diverge again)."""


class InjectedTrialError(RuntimeError):
    """Raised by the fault-injection hook (``INJECT_ERRORS_ENV``) to exercise the failure policy."""


#: Testing hook: with ``NLRD_INJECT_TRIAL_ERRORS=N`` in the driver's environment, every trial raises on its first
#: N attempts, before it launches any training, so the space's ``failure.max_retries`` can be seen at work.
INJECT_ERRORS_ENV = "NLRD_INJECT_TRIAL_ERRORS"


def __getattr__(name: str) -> Any:
    """``search.trainable.TrialReports``, the class's name before it moved to ``search.trial_reports``: the Tune
    state (``tune/tuner.pkl``) of runs started then names it, and ``--resume`` unpickles that."""
    if name == "TrialReports":
        from search.trial_reports import TrialReports

        return TrialReports
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def report_again(checkpoint_dir: Path, resumed_from: int, steps: int) -> dict[str, Any] | None:
    """The report to make again when a trial is restored at its last step (``resumed_from`` of ``steps``): it
    has nothing left to train, and a Tune attempt that reports nothing ends without the objective.  None when
    there are steps left, or the checkpoint predates ``LAST_REPORT_FILE``."""
    saved = checkpoint_dir / LAST_REPORT_FILE
    if resumed_from < steps or not saved.exists():
        return None
    return {**json.loads(saved.read_text()), "resumed_from_step": resumed_from}


def adapt_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: adapt the source encoder to the target domain, reporting each evaluation with the
    relation set's pre-filter score (as ``nonlocalness``), the cost so far and a checkpoint of the encoder."""
    marks = LaunchMarks(config["launch_marks"])
    marks.mark_process_start("worker_process")
    # Imported here, in the worker: the trial's process imports this module and needs none of them.
    import torch
    from ray.train.torch import get_device

    from nlrd.pipeline import StageCache, StageKeys, load_stages, load_world
    from nlrd.train.adapt import STATE_FILE, adapt, adapt_state_step
    from search.prefilter import parse_set_label
    from search.space_spec import trial_adapt_config

    marks.mark("loop_entered")
    torch.set_num_threads(max(1, int(config["cpus"])))
    start = time.monotonic()
    cache = StageCache(config["cache_root"])
    keys = StageKeys(**config["keys"])
    adapt_config = trial_adapt_config(
        config["encoder"], config["fixed"], parse_set_label(config["relation_set"]), config["sampled"]
    )
    device = get_device()
    stages = load_stages(cache, keys, adapt_config.relations, device)
    marks.mark("stages_loaded")
    world = load_world(cache, keys.world, mmap=True)
    marks.mark("world_loaded")
    saved = ray.train.get_checkpoint()  # set when Train restarts a lost worker or Tune retries the trial
    with tempfile.TemporaryDirectory(prefix="nlrd-ckpt-") as checkpoint_dir:
        resumed_from = 0
        if saved is not None:
            with saved.as_directory() as folder:
                shutil.copytree(folder, checkpoint_dir, dirs_exist_ok=True)
            resumed_from = adapt_state_step(Path(checkpoint_dir) / STATE_FILE)

        def report(metrics: dict[str, float]) -> None:
            cost = (time.monotonic() - start) * config["devices"]
            marks.mark("first_report")
            extra = {
                "nonlocalness": config["nonlocalness"],
                "device_seconds": cost,
                "planned_steps": adapt_config.steps,
                "resumed_from_step": resumed_from,
                **marks.first_report_fields(),
            }
            full = {**metrics, **extra}
            (Path(checkpoint_dir) / LAST_REPORT_FILE).write_text(json.dumps(full))
            ray.train.report(full, checkpoint=Checkpoint.from_directory(checkpoint_dir))

        again = report_again(Path(checkpoint_dir), resumed_from, adapt_config.steps)
        if again is not None:
            ray.train.report(again, checkpoint=Checkpoint.from_directory(checkpoint_dir))
            return
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
                on_phase=marks.mark,
            )
        except FloatingPointError as exc:  # deterministic: ending the run normally keeps Train from retrying it
            config["reports"].mark_diverged(config["trial_id"], f"FloatingPointError: {exc}")


def make_trainable(
    spec: SearchSpec, cache: StageCache, keys: StageKeys, run_dir: RunDir, set_scores: dict[str, float]
) -> Any:
    """The Tune trainable for ``spec``, with its resources declared.  ``set_scores``: each relation set's
    pre-filter score by label (``SetDecision.score``: the space's ``prefilter.score`` under its ``aggregate``, as the
    sets were ranked), reported by the trial as ``nonlocalness``, the metric name the spaces' objectives use."""
    from search.space_spec import TRIAL_COORDINATOR_CPU

    resources = spec.resources
    # What the trial function holds: plain values and the torch-free TrialReports (see the module's docstring).
    reports = run_dir.reports
    storage_path, storage_filesystem = run_dir.storage_path, run_dir.storage_filesystem
    run_name = run_dir.trial_run("{trial_id}")  # RunDir's naming as a template, filled in by each trial
    encoder, fixed = spec.stages.source.encoder, dict(spec.adapt)
    worker_restarts = spec.failure.worker_restarts
    trial_cpus, trial_gpus, worker_cpus = resources.trial_cpus, resources.trial_gpus, resources.trial_worker_cpus
    cache_root, stage_keys = str(cache.root), keys.as_dict()

    inject_errors = int(os.environ.get(INJECT_ERRORS_ENV, "0") or 0)  # read on the driver, shipped with `trial`

    def trial(config: dict[str, Any]) -> None:
        marks = LaunchMarks()
        marks.mark_process_start("trial_process")
        marks.mark("trial_entered")
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
        marks.mark("train_launch")
        for name, value in TRAIN_ENV.items():
            os.environ.setdefault(name, value)
        relay = ReportRelay()
        trainer = DataParallelTrainer(
            adapt_loop,
            train_loop_config={
                "encoder": encoder,
                "fixed": fixed,
                "relation_set": config[RELATIONS_KEY],
                "sampled": sampled,
                "keys": stage_keys,
                "cache_root": cache_root,
                "cpus": trial_cpus,
                "devices": trial_gpus or trial_cpus,
                "nonlocalness": set_scores[config[RELATIONS_KEY]],
                "reports": reports,
                "trial_id": trial_id,
                "launch_marks": marks.marks,
            },
            scaling_config=ScalingConfig(
                num_workers=1,
                use_gpu=trial_gpus > 0,
                resources_per_worker={"CPU": worker_cpus, "GPU": trial_gpus},
            ),
            run_config=RunConfig(
                name=run_name.format(trial_id=trial_id),
                storage_path=storage_path,
                storage_filesystem=storage_filesystem,
                callbacks=[relay],
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                failure_config=FailureConfig(max_failures=worker_restarts),
            ),
        )
        relay_fit(trainer.fit, relay, tune.report)
        reason = reports.diverged(trial_id)
        if reason is not None:
            raise DivergedTrialError(reason)

    return tune.with_resources(trial, {"CPU": TRIAL_COORDINATOR_CPU})

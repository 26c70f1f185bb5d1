"""Train the shared stages once, each group a Ray Train job, and fill the stage cache.

The graph is world -> prior -> (motion -> relation transformers) and prior -> source encoder, so on a
cluster that holds two stage jobs at once three jobs cover it: ``world+prior`` first, then ``motion+relations`` and
``source`` side by side.  On one that holds a single stage job (a laptop, the smoke space on 2 cores) the branches
could only take turns, so one job trains the whole graph.  Grouping keeps launches few (a Train job costs seconds
to start).  A graph already in the cache launches nothing, and the cache's
per-key locks make concurrent runs sharing a cache train each stage once.  Workers send their progress
through a Ray queue; the driver prints it.

A job is Train V2's ``DataParallelTrainer`` with one worker, as a trial is (``search.trainable``): nothing is
distributed, so ``TorchTrainer``'s gloo/NCCL process group would connect the worker to nobody.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import get_device
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
from ray.util.queue import Empty, Queue

from nlrd.pipeline import StageCache, StageConfigs, StageKeys, stage_keys, train_stages
from search.errors import first_error_line
from search.run_dir import RunDir
from search.space import ResourcesSpec


class StageJobError(RuntimeError):
    """A shared-stage job failed (bad data found while loading it, a diverged stage, a lost node past its retries);
    the message holds the innermost error."""


#: A plan of stage jobs: each job's name, the stages it trains and the jobs it waits for, in launch order.
StagePlan = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
#: The plan on a cluster that holds two stage jobs at once: the graph's two branches side by side.
STAGE_JOBS: StagePlan = {
    "world+prior": (("world", "prior"), ()),
    "motion+relations": (("motion", "relations"), ("world+prior",)),
    "source": (("source",), ("world+prior",)),
}
#: The plan on a cluster that holds one at a time: the branches would run one after the other anyway, so one job
#: trains the whole graph and pays one launch instead of three (``bench/RESULTS.md``, "Smoke search, end to end").
ONE_STAGE_JOB: StagePlan = {"all": (("world", "prior", "motion", "relations", "source"), ())}


def _stages_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: train this job's missing stages (on the GPU when the worker has one)."""
    torch.set_num_threads(max(1, int(config["cpus"])))
    progress: Queue = config["progress"]
    train_stages(
        config["configs"],
        config["relations"],
        StageCache(config["cache_root"]),
        report=lambda metrics: progress.put(metrics),
        device=get_device(),
        only=config["only"],
    )
    ray.train.report({"done": 1})


def _named(keys: StageKeys) -> dict[str, str]:
    named = {"world": keys.world, "prior": keys.prior, "motion": keys.motion, "source": keys.source}
    named.update({f"relation {name}": key for name, key in keys.relations.items()})
    return named


def missing_stages(cache: StageCache, keys: StageKeys) -> list[str]:
    return [name for name, key in _named(keys).items() if key not in cache]


def unreadable_stages(cache: StageCache, keys: StageKeys) -> list[str]:
    """Why each cached stage of the graph that cannot be read (truncated, foreign, tampered) is unusable; checked
    before a run starts, so a broken cache is a clear message rather than a failure inside a Ray worker."""
    problems = []
    for key in _named(keys).values():
        if key in cache:
            try:
                cache.load(key, mmap=True)
            except ValueError as exc:
                problems.append(str(exc))
    return problems


def _missing_in(job_stages: Sequence[str], missing: Sequence[str]) -> bool:
    return any(m in job_stages or (m.startswith("relation ") and "relations" in job_stages) for m in missing)


def _progress_line(metrics: dict[str, Any]) -> str | None:
    if metrics.get("cached"):
        return None
    values = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("stage", "step") and _number(v))
    return f"[stages] {metrics['stage']} step {metrics.get('step', '?')}: {values}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ensure_stages(
    configs: StageConfigs,
    relations: Sequence[str],
    cache: StageCache,
    resources: ResourcesSpec,
    run_dir: RunDir,
    side_by_side: bool = True,
) -> StageKeys:
    """Keys of the stage graph for ``relations``, training the missing stages first; the jobs' Ray Train runs are
    folders of ``run_dir``.  ``side_by_side``: whether the cluster holds two stage jobs at once
    (``search.resources.stage_branches_side_by_side``), which picks ``STAGE_JOBS`` over ``ONE_STAGE_JOB``."""
    keys = stage_keys(configs, relations)
    missing = missing_stages(cache, keys)
    if not missing:
        print(f"[stages] all {len(keys.relations) + 4} stages found in the cache {cache.root}", flush=True)
        return keys
    plan = STAGE_JOBS if side_by_side else ONE_STAGE_JOB
    jobs = [name for name, (stages, _) in plan.items() if _missing_in(stages, missing)]
    why = "" if side_by_side else "; the cluster holds one stage job at a time"
    count = f"{len(jobs)} Ray Train job{'s' * (len(jobs) != 1)}"
    print(f"[stages] training {', '.join(missing)} ({count}: {', '.join(jobs)}{why})", flush=True)
    start = time.monotonic()
    progress = Queue(actor_options={"num_cpus": 0})
    done: dict[str, threading.Event] = {name: threading.Event() for name in plan}
    errors: dict[str, BaseException] = {}

    def run_job(name: str) -> None:
        stages, after = plan[name]
        try:
            for dependency in after:
                done[dependency].wait()
                if dependency in errors:
                    raise RuntimeError(f"stage job {dependency} failed")
            if name in jobs:
                _fit(name, stages, configs, relations, cache, resources, run_dir, progress)
        except BaseException as exc:  # reported by the driver thread below
            errors[name] = exc
        finally:
            done[name].set()

    threads = [threading.Thread(target=run_job, args=(name,), daemon=True) for name in plan]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads) or not progress.empty():
        try:
            line = _progress_line(progress.get(timeout=0.5))
        except Empty:
            continue
        if line:
            print(line, flush=True)
    ray.kill(progress.actor)
    if errors:
        name, exc = next(iter(errors.items()))  # the first to fail: the jobs waiting on it fail after it
        logs = run_dir.path / run_dir.stage_run("*")
        raise StageJobError(f"stage job {name} failed: {first_error_line(str(exc))} (its log: {logs}/)") from exc
    still_missing = missing_stages(cache, keys)
    if still_missing:
        raise StageJobError(f"the stage jobs finished but {', '.join(still_missing)} is not in {cache.root}")
    print(f"[stages] done in {time.monotonic() - start:.0f} s", flush=True)
    return keys


def _fit(
    name: str,
    stages: Sequence[str],
    configs: StageConfigs,
    relations: Sequence[str],
    cache: StageCache,
    resources: ResourcesSpec,
    run_dir: RunDir,
    progress: Queue,
) -> None:
    DataParallelTrainer(
        _stages_loop,
        train_loop_config={
            "configs": configs,
            "relations": list(relations),
            "cache_root": str(cache.root),
            "cpus": resources.stage_cpus,
            "only": list(stages),
            "progress": progress,
        },
        scaling_config=ScalingConfig(
            num_workers=1,
            use_gpu=resources.stage_gpus > 0,
            resources_per_worker={"CPU": resources.stage_cpus, "GPU": resources.stage_gpus},
        ),
        run_config=RunConfig(
            name=run_dir.stage_run(name),
            storage_path=run_dir.storage_path,
            storage_filesystem=run_dir.storage_filesystem,
        ),
    ).fit()

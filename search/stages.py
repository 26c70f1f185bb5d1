"""Train the shared stages once, as one Ray Train job, and fill the stage cache.

All stages run in one job because a Train job costs seconds to launch: the stages are small and
sequential (each needs the one before), so one worker holding the node's resources is the fast path.
A graph already in the cache launches nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from nlrd.pipeline import StageCache, StageConfigs, StageKeys, stage_keys, train_stages
from search.space import ResourcesSpec


def _stages_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: train what is missing from the cache (runs on the GPU when the worker has one)."""
    torch.set_num_threads(max(1, int(config["cpus"])))
    train_stages(
        config["configs"], config["relations"], StageCache(config["cache_root"]), device=ray.train.torch.get_device()
    )
    ray.train.report({"done": 1})


def missing_stages(cache: StageCache, keys: StageKeys) -> list[str]:
    named = {"world": keys.world, "prior": keys.prior, "motion": keys.motion, "source": keys.source}
    named.update({f"relation {name}": key for name, key in keys.relations.items()})
    return [name for name, key in named.items() if key not in cache]


def ensure_stages(
    configs: StageConfigs,
    relations: Sequence[str],
    cache: StageCache,
    resources: ResourcesSpec,
    storage_path: str,
) -> StageKeys:
    """Keys of the stage graph for ``relations``, training the missing stages first."""
    keys = stage_keys(configs, relations)
    missing = missing_stages(cache, keys)
    if not missing:
        print(f"[stages] all {len(keys.relations) + 4} stages found in the cache {cache.root}", flush=True)
        return keys
    print(f"[stages] training {', '.join(missing)} (one Ray Train job)", flush=True)
    start = time.monotonic()
    trainer = TorchTrainer(
        _stages_loop,
        train_loop_config={
            "configs": configs,
            "relations": list(relations),
            "cache_root": str(cache.root),
            "cpus": resources.stage_cpus,
        },
        scaling_config=ScalingConfig(
            num_workers=1,
            use_gpu=resources.stage_gpus > 0,
            resources_per_worker={"CPU": resources.stage_cpus, "GPU": resources.stage_gpus},
        ),
        run_config=RunConfig(name="stages", storage_path=storage_path),
    )
    trainer.fit()
    still_missing = missing_stages(cache, keys)
    if still_missing:
        raise RuntimeError(f"the stage job finished but {', '.join(still_missing)} is not in {cache.root}")
    print(f"[stages] done in {time.monotonic() - start:.0f} s", flush=True)
    return keys

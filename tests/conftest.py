"""Shared fixtures: one local Ray cluster per test session, and tiny search spaces."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

#: A space small enough for an end-to-end search in about a minute on 2 cores.
TINY_SPACE = {
    "name": "tiny",
    "world": {
        "image_size": 32,
        "clip_len": 8,
        "mocap_sequences": 40,
        "source_clips": 16,
        "target_clips": 16,
        "val_clips": 4,
        "seed": 0,
    },
    "stages": {
        "prior": {"steps": 30, "batch_size": 64},
        "motion": {"steps": 10, "batch_size": 16},
        "relation": {"steps": 10, "batch_size": 16},
        "source": {"steps": 10, "batch_size": 32},
    },
    "relations": {"candidates": ["flip", "inplane5", "flip_backward"], "min_set_size": 1, "max_set_size": 2},
    "prefilter": {"keep_fraction": 0.5, "aggregate": "mean"},
    "searcher": {"algorithm": "tpe", "seed": 0, "num_trials": 4, "max_concurrent": 2},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "objectives": [{"metric": "mpjpe", "mode": "min"}],
    "adapt": {"steps": 6, "eval_every": 2, "batch_clips": 2},
    "params": {"lr_nonlocal": "tag(log, interval(1e-5, 1e-3))", "tau": "choice(0.07, 0.1)"},
    "resources": {"trial_cpus": 1, "stage_cpus": 2},
}


def write_space(path: Path, space: dict) -> Path:
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Test tensors are tiny: one intra-op thread is as fast, and immune to stalls when the cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray with the dashboard on (Train-in-Tune needs it to release stopped trials' resources)."""
    import ray

    ray.init(num_cpus=2, object_store_memory=256 * 1024**2, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()

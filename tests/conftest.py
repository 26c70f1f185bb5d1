"""Shared fixtures: one local Ray cluster per test session, and tiny search spaces."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
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


class Cli:
    """``search/run.py`` in a process group of its own, starting its own local Ray unless given ``--address``
    (as on a laptop).  A thread collects its output, so a test can wait for a line and still read everything."""

    def __init__(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "search" / "run.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str, timeout: float) -> bool:
        """Collect output until a line holds ``marker`` (True), or until the output ends or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                self._queue.put(None)
                return False
            self.lines.append(line)
            if marker in line:
                return True
        return False

    def kill(self) -> None:
        """SIGKILL the driver and the local Ray it started, as in a crash."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def interrupt(self) -> None:
        """SIGINT the driver, as Ctrl-C does."""
        os.kill(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float) -> int:
        """Wait for the run to end (killing it after ``timeout`` s); its exit code."""
        self.wait_for("\0never printed\0", timeout)
        if self.proc.poll() is None:
            self.kill()
        return self.proc.wait(timeout=60)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "own_ray: starts its own Ray; runs before the session's shared cluster exists")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start their own Ray (a killed driver, a multi-node cluster) run first, while no other Ray
    holds the cores; the rest keep their order."""
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)


@pytest.fixture(scope="session")
def tiny_stages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage cache trained once for ``TINY_SPACE`` (no Ray): tests that search copy it, so they spend their
    time on the search rather than on the same shared stages."""
    from nlrd.pipeline import StageCache, train_stages
    from search.space import parse_space

    spec = parse_space(TINY_SPACE, "tiny.yaml")
    root = tmp_path_factory.mktemp("tiny-stages")
    train_stages(spec.stages, spec.relations.candidates, StageCache(root))
    return root


def trial_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``trials.csv`` that are trials: not sets the pre-filter rejected, not reference lines."""
    return table[~table["status"].isin(["rejected_by_prefilter", "reference"])]


def with_stages(out: Path, stages: Path) -> Path:
    """``out`` (a ``--out`` folder) with a copy of the trained ``stages`` as its stage cache."""
    shutil.copytree(stages, out / "cache")
    return out


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

    ray.init(address="local", num_cpus=2, object_store_memory=256 * 1024**2, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()

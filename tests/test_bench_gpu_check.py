"""``bench/gpu_check.sh``, the CUDA path in one call: its commands run, at toy size on the CPU, and a failure shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.sh"


def _run(out: Path, device: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(SCRIPT), str(out), device], env=env, capture_output=True, text=True, timeout=900)


def test_the_gpu_check_runs_both_benchmarks_at_toy_size_and_writes_its_files_flat(tmp_path: Path):
    out = tmp_path / "out"
    done = _run(out, "cpu", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ablation.json", "ablation.log", "ablation.md", "gpu.json", "gpu.md", "throughput.log"]
    assert "trials packed" in (out / "gpu.md").read_text()
    assert "oracle" in (out / "ablation.md").read_text() and "mean pose" in (out / "ablation.md").read_text()


def test_a_failing_command_fails_the_check(tmp_path: Path):
    done = _run(tmp_path / "out", "tpu", tmp_path)
    assert done.returncode == 1
    assert "unknown device 'tpu'" in (tmp_path / "out" / "ablation.log").read_text()

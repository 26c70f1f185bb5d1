"""Wall-clock marks of a trial's launch, from the Tune trial's process to its first adaptation step.

A trial pays for a Ray Train launch (Tune trial actor, Train controller, placement group, worker process and its
imports, loading the stages and the world) before it trains.  The marks travel with the trial's
first report as ``launch_<mark>`` fields (epoch seconds, one clock per machine), so every real search records where
its trials' time went; ``phase_seconds`` turns them into the phases ``bench/trial_overhead.py`` tabulates.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Prefix of the marks' fields in a trial's first report.
PREFIX = "launch_"

#: The marks in the order a trial passes them.
MARKS = (
    "trial_process",  # the Tune trial actor's process started
    "trial_entered",  # the trial function began
    "train_launch",  # the trial builds its Train trainer and calls fit()
    "worker_process",  # the Train worker's process started (earlier than train_launch when Ray had it idle)
    "loop_entered",  # the training function began (Train context set up)
    "stages_loaded",  # the frozen stages loaded
    "world_loaded",  # the world file loaded
    "ready",  # the models built: the first adaptation step begins
    "first_step",  # the first adaptation step done
    "first_report",  # the first evaluation done and being reported
)

#: Phases between consecutive marks, by the mark that ends them.
PHASES = {
    "trial_entered": "Tune trial actor start, trainable imports",
    "train_launch": "trial setup",
    "worker_process": "Train controller, placement group, worker process spawn",
    "loop_entered": "worker imports, Train context",
    "stages_loaded": "load cached stages",
    "world_loaded": "load world file",
    "ready": "build models and optimisers",
    "first_step": "first adaptation step",
    "first_report": "steps to the first evaluation, evaluation, checkpoint",
}


def process_start_time() -> float | None:
    """When this process started, in epoch seconds (Linux ``/proc``, 10 ms resolution); None elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class LaunchMarks:
    """The marks one trial has passed; built in the Tune trial, carried to the Train worker in its config."""

    def __init__(self, marks: dict[str, float] | None = None) -> None:
        self.marks = dict(marks or {})
        self._reported = False

    def mark(self, name: str, at: float | None = None) -> None:
        """Record ``name`` now (or ``at``); a mark passed again (a later step, a restarted worker) keeps its first."""
        if name not in MARKS:
            raise ValueError(f"unknown launch mark {name!r}; known: {', '.join(MARKS)}")
        self.marks.setdefault(name, time.time() if at is None else at)

    def mark_process_start(self, name: str) -> None:
        start = process_start_time()
        if start is not None:
            self.mark(name, start)

    def first_report_fields(self) -> dict[str, float]:
        """The marks as report fields, once: later reports carry none."""
        if self._reported:
            return {}
        self._reported = True
        return {PREFIX + name: self.marks[name] for name in MARKS if name in self.marks}


def phase_seconds(report: dict[str, float]) -> dict[str, float]:
    """Seconds of each phase (``PHASES``, by its ending mark) from a first report's ``launch_`` fields.

    A phase runs from the latest earlier mark present; a mark earlier than that one (a worker process Ray started
    before the trial asked for it) ends a phase of zero seconds.
    """
    seconds: dict[str, float] = {}
    previous: float | None = None
    for name in MARKS:
        at = report.get(PREFIX + name)
        if at is None:
            continue
        if previous is not None:
            seconds[name] = max(0.0, at - previous)
        previous = max(at, previous) if previous is not None else at
    return seconds

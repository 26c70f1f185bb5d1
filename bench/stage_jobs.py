"""Stage jobs: the wall time of a space's shared stages through Ray Train, trained as one job or as three.

    .venv/bin/python -m bench.stage_jobs --plans three one --repeats 1

starts a local Ray as ``search/run.py`` does and, for each plan of ``--plans`` (``three``:
``search.stages.STAGE_JOBS``, ``one``: ``ONE_STAGE_JOB``; in turn, ``--repeats`` times), trains the stages of
``--space`` (default ``spaces/smoke.yaml``) into a fresh cache under ``--out`` through
``search.stages.ensure_stages``, the code a run calls, with the space's ``resources.stage_cpus``.  Every progress
line is timed: a run's record holds the stages' wall time, each stage's first and last progress line (seconds from
the start) and the time between one stage's last line and the next stage's first, where the launches, the loads and
the stage's own start-up (the relation pools' encoding, the world) go.  The last line of every stage is kept, so
runs can be checked to have trained the same stages.  Writes ``stage_jobs.json`` and ``stage_jobs.md`` into
``--out`` (each run's cache is deleted after it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import cli

REPO = Path(__file__).resolve().parent.parent
#: A progress line of ``search.stages``: the stage and its step.
PROGRESS = re.compile(r"^\[stages\] (\w+) step (\d+):")


class TimedLines(io.TextIOBase):
    """A stdout that keeps every whole line with its time (seconds from ``start``) and passes it on to ``echo``."""

    def __init__(self, start: float, echo: Any) -> None:
        self.start, self.echo = start, echo
        self.lines: list[tuple[float, str]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self.echo.write(text)
        self._partial += text
        *whole, self._partial = self._partial.split("\n")
        now = time.monotonic() - self.start
        self.lines += [(now, line) for line in whole]
        return len(text)

    def flush(self) -> None:
        self.echo.flush()


def stage_spans(lines: list[tuple[float, str]]) -> dict[str, dict[str, Any]]:
    """Each stage's first and last progress line (seconds) and its last line's text, in the order the stages
    began."""
    spans: dict[str, dict[str, Any]] = {}
    for seconds, line in lines:
        match = PROGRESS.match(line)
        if match is None:
            continue
        span = spans.setdefault(match.group(1), {"first_s": seconds})
        span.update(last_s=seconds, last_line=line)
    return spans


def gaps(spans: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Seconds from one stage's last progress line to the next stage's first, keyed ``"prior -> motion"``."""
    names = list(spans)
    return {f"{a} -> {b}": spans[b]["first_s"] - spans[a]["last_s"] for a, b in zip(names, names[1:], strict=False)}


def measure(space: Path, plan: str, folder: Path) -> dict[str, Any]:
    """Train ``space``'s stages into a fresh cache in ``folder`` with ``plan`` (``one`` or ``three``) on the Ray
    this process is connected to; the run's record.  The caller deletes ``folder``."""
    from nlrd.pipeline import StageCache
    from search.run_dir import RunDir
    from search.space import load_space
    from search.stages import ensure_stages

    spec = load_space(space)
    cache, run_dir = StageCache(folder / "cache"), RunDir(folder / "run")
    run_dir.path.mkdir(parents=True)
    start = time.monotonic()
    timed = TimedLines(start, sys.stdout)
    with contextlib.redirect_stdout(timed):
        ensure_stages(spec.stages, spec.relations.candidates, cache, spec.resources, run_dir, plan == "three")
    seconds = time.monotonic() - start
    spans = stage_spans(timed.lines)
    return {"plan": plan, "seconds": seconds, "stages": spans, "gaps": gaps(spans)}


def markdown(header: str, runs: list[dict[str, Any]]) -> str:
    """The runs as a table: the stages' wall time, each stage's span and the time between stages."""
    lines = [
        header,
        "",
        "| run | plan | stages (s) | each stage's progress lines, first-last (s) | between stages (s) |",
        "|---|---|---|---|---|",
    ]
    for i, run in enumerate(runs, 1):
        spans = ", ".join(f"{name} {s['first_s']:.0f}-{s['last_s']:.0f}" for name, s in run["stages"].items())
        between = ", ".join(f"{name} {value:.1f}" for name, value in run["gaps"].items())
        lines.append(f"| {i} | {run['plan']} | {run['seconds']:.1f} | {spans} | {between} |")
    finals = {tuple(s["last_line"] for s in run["stages"].values()) for run in runs}
    same = "Every run's last progress lines are the same." if len(finals) == 1 else "The runs' last lines differ."
    lines += ["", same]
    return "\n".join(lines) + "\n"


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.stage_jobs", __doc__)
    parser.add_argument("--space", type=Path, default=REPO / "spaces" / "smoke.yaml")
    parser.add_argument("--plans", nargs="+", choices=("one", "three"), default=["three", "one"])
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the plans, in turn")
    parser.add_argument("--out", type=Path, default=Path("bench/out/stage_jobs"))
    return parser


def main() -> None:
    from search.run import start_ray

    parser = arg_parser()
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"{cli.run_header(parser)}; load average {os.getloadavg()[0]:.2f} before"
    start_ray(None)
    runs = []
    for round_ in range(args.repeats):
        for plan in args.plans:
            folder = args.out / f"{plan}-{round_}"
            shutil.rmtree(folder, ignore_errors=True)
            runs.append(measure(args.space, plan, folder))
            shutil.rmtree(folder)
    cli.write_result(args.out, "stage_jobs", {"header": header, "runs": runs}, markdown(header, runs))


if __name__ == "__main__":
    main()

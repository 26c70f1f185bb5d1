"""Trial launch overhead: where a search trial's time goes before its first adaptation step, from a real search.

    nice -n 10 .venv/bin/python -m bench.trial_overhead --label before

runs a small search through ``search/run.py`` (its own local Ray; by default ``bench/spaces/trial-overhead.yaml``:
the smoke world, models and adaptation, 4 trials one at a time, each run to its end) with the stage cache under
``--out``, then reads each trial's launch marks from its first report (``search.launch_marks``: the fields
``launch_<mark>`` of Tune's ``result.json``) and Tune's own trial start and last-result times.  It writes
``<label>.md`` and ``<label>.json`` into ``--out``: the seconds of every launch phase per trial and their median, the
time before the first step (from the moment Tune marks the trial running), the median trial wall time (running to
its last report reaching Tune) and their ratio; and, for ``spaces/default.yaml`` on a GPU, the same ratio with the
median trial computed as its median ASHA rung x steps per rung x ``--gpu-step-s`` (an assumption: no GPU step time
of that space has been measured) against the launch overhead measured here.  ``--analyse RUN_DIR`` re-reads a
finished run instead of running one.  ``--import-floor`` runs no search: it times, in fresh Python processes, the
imports each of a trial's three processes makes before the launch can go on (``LAUNCH_IMPORTS``), with and without
this project's modules (what is left is a floor under the launch that no change here removes), and writes
``import_floor.md`` and ``import_floor.json``.  The load average before and after the run is written beside every
figure: on a shared machine the launch phases stretch with other users' load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import cli
from search.launch_marks import MARKS, PHASES, PREFIX, phase_seconds
from search.run_dir import RunDir

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = REPO / "bench" / "spaces" / "trial-overhead.yaml"
GPU_SPACE = REPO / "spaces" / "default.yaml"
#: Assumed seconds of one adaptation step of ``spaces/default.yaml`` on a GPU (small CNN, 128 px, 8 clips x 30
#: frames, a quarter of the GPU): an assumption, not a measurement; ``--gpu-step-s`` changes it.
ASSUMED_GPU_STEP_S = 0.05
#: The project's goals: seconds before the first step on 2 cores, and overhead share of the median GPU trial.
GOAL_BEFORE_FIRST_STEP_S = 4.0
GOAL_GPU_SHARE = 0.05
#: The machine's load average before and after the search, kept in its run directory.
LOAD_FILE = "loadavg.json"
#: What each of a trial's processes imports before the launch can go on, in launch order: the Tune trial actor
#: (Tune's function trainable and this project's), Ray Train's controller actor, and the Train worker (Train's worker
#: actor, what ``search.trainable.adapt_loop`` imports, and ``torch._dynamo``, which ``torch.optim`` imports on an
#: optimiser's first call).  Each process is created by the one before it, so their imports add up.
LAUNCH_IMPORTS = {
    "Tune trial actor": ("ray.tune.trainable.function_trainable", "search.trainable"),
    "Train controller": ("ray.train.v2._internal.execution.controller.controller",),
    "Train worker": (
        "ray.train.v2._internal.execution.worker_group.worker",
        "torch",
        "torch._dynamo",
        "ray.train.torch",
        "nlrd.pipeline",
        "nlrd.train.adapt",
        "search.prefilter",
        "search.space_spec",
    ),
}


def run_search(space: Path, out: Path, name: str, overrides: list[str]) -> RunDir:
    """The search, as a user starts it, in a process of its own (its own local Ray, stopped when it ends)."""
    command = [sys.executable, str(REPO / "search" / "run.py"), "--space", str(space), "--out", str(out)]
    command += ["--name", name, *[arg for item in overrides for arg in ("--set", item)]]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    subprocess.run(command, check=True, env=env, cwd=REPO)
    return RunDir(out / name)


def tune_trials(run_dir: RunDir) -> tuple[float | None, dict[str, dict[str, float]]]:
    """Tune's start time and, by trial id, when Tune marked each trial running and when its last result arrived
    (driver clock, epoch seconds), from the experiment state Tune saved."""
    state_file = max(run_dir.tune.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    state = json.loads(state_file.read_text())
    trials = {}
    for trial_json, metadata_json in state["trial_data"]:
        trial, metadata = json.loads(trial_json), json.loads(metadata_json)
        trials[trial["trial_id"]] = {"running": metadata["start_time"], "last_result": metadata["last_result_time"]}
    return state.get("runner_data", {}).get("_start_time"), trials


def first_reports(run_dir: RunDir) -> dict[str, dict[str, Any]]:
    """Each trial's first result as Tune recorded it (``result.json``, one JSON line per result)."""
    reports = {}
    for path in run_dir.tune.glob("*/result.json"):
        lines = path.read_text().splitlines()
        if lines:
            first = json.loads(lines[0])
            reports[first["trial_id"]] = first
    return reports


def trial_starts(tune_times: dict[str, dict[str, float]], reports: dict[str, dict[str, Any]]) -> dict[str, float]:
    """When each trial started: its Tune actor's process start when Tune started a fresh actor for it, else (an
    actor whose process started before an earlier trial ran: a Ray worker process started before it was needed) the
    moment Tune marked it running."""
    starts, earlier = {}, []
    for trial_id in sorted(tune_times, key=lambda t: tune_times[t]["running"]):
        running = tune_times[trial_id]["running"]
        process = reports.get(trial_id, {}).get(PREFIX + "trial_process")
        fresh = process is not None and all(process > other for other in earlier)
        starts[trial_id] = process if fresh else running
        earlier.append(running)
    return starts


def trial_breakdown(start: float, tune_times: dict[str, float], first: dict[str, Any]) -> dict[str, float]:
    """One trial's phases (seconds, ``PHASES``) and totals, counted from ``start`` (``trial_starts``)."""
    row = phase_seconds({**first, PREFIX + "trial_process": start})
    running = tune_times["running"]
    if PREFIX + "ready" in first:
        row["before first step"] = first[PREFIX + "ready"] - start
        row["before first step, from running"] = first[PREFIX + "ready"] - running
    if PREFIX + "first_report" in first:
        row["to first report"] = first[PREFIX + "first_report"] - start
    row["trial wall"] = tune_times["last_result"] - start
    return row


def default_space_trial(step_s: float) -> dict[str, Any]:
    """The median trial of ``spaces/default.yaml`` under ASHA: with reduction factor r >= 2, a share 1 - 1/r >= 1/2
    of the trials stop at the first rung, so the median trial runs ``grace_period`` evaluations."""
    from search.space import load_space
    from search.tuner import num_evaluations

    spec = load_space(GPU_SPACE)
    shared = spec.adapt_config((), {})
    rungs, rung = [], spec.scheduler.grace_period
    while rung < num_evaluations(spec):
        rungs.append(rung)
        rung *= spec.scheduler.reduction_factor
    rungs.append(num_evaluations(spec))
    steps = rungs[0] * shared.eval_every
    return {
        "space": str(GPU_SPACE.relative_to(REPO)),
        "rungs_evaluations": rungs,
        "eval_every": shared.eval_every,
        "median_trial_steps": steps,
        "gpu_step_s": step_s,
        "median_trial_s": steps * step_s,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(rows: dict[str, dict[str, float]], tuner_to_first: float | None, gpu: dict[str, Any]) -> dict[str, Any]:
    names = [*PHASES, "before first step", "before first step, from running", "to first report", "trial wall"]
    medians = {name: median([r[name] for r in rows.values() if name in r]) for name in names}
    before, wall = medians["before first step"], medians["trial wall"]
    return {
        "medians": medians,
        "tuner_start_to_first_trial_running_s": tuner_to_first,
        "before_first_step_over_median_trial": before / wall,
        "goal_before_first_step_s": GOAL_BEFORE_FIRST_STEP_S,
        "default_space_gpu": {
            **gpu,
            "launch_overhead_s": before,
            "overhead_over_median_trial": before / gpu["median_trial_s"],
            "goal_share": GOAL_GPU_SHARE,
            "launch_for_goal_s": GOAL_GPU_SHARE * gpu["median_trial_s"],
        },
    }


def markdown(header: str, rows: dict[str, dict[str, float]], summary: dict[str, Any]) -> str:
    columns = [*PHASES, "before first step", "to first report", "trial wall"]
    lines = [
        header,
        "",
        "Seconds per trial. Phases run between consecutive launch marks (`search/launch_marks.py`), from the "
        "trial's start: its Tune actor's process start, or, for an actor in a process older than an earlier trial, "
        "the moment Tune marked the trial running. 'trial wall': from the start to the trial's last report reaching "
        "Tune.",
        "",
        "| trial | " + " | ".join(PHASES.get(c, c) for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    fmt = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"  # noqa: E731
    for trial_id, row in sorted(rows.items()):
        lines.append(f"| {trial_id} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    medians = summary["medians"]
    lines.append("| **median** | " + " | ".join(f"**{fmt(medians[c])}**" for c in columns) + " |")
    gpu = summary["default_space_gpu"]
    tuner = summary["tuner_start_to_first_trial_running_s"]
    lines += [
        "",
        f"- Tuner start to the first trial's start: {fmt(tuner)} s. Before the first step counted from Tune marking "
        f"the trial running (the progress line 'started'), median: {fmt(medians['before first step, from running'])} "
        "s.",
        f"- Time before the first step (median): {fmt(medians['before first step'])} s (goal <= "
        f"{GOAL_BEFORE_FIRST_STEP_S:.0f} s); median trial wall time {fmt(medians['trial wall'])} s; ratio "
        f"{summary['before_first_step_over_median_trial']:.1%}.",
        f"- `{gpu['space']}` on a GPU: median trial = {gpu['median_trial_steps']} steps (ASHA's first rung, "
        f"{gpu['rungs_evaluations'][0]} evaluations x {gpu['eval_every']} steps; rungs {gpu['rungs_evaluations']}) x "
        f"{gpu['gpu_step_s']} s per step (**assumed**, not measured) = {gpu['median_trial_s']:.1f} s; the launch "
        f"overhead measured here is {gpu['overhead_over_median_trial']:.0%} of it (goal <= {GOAL_GPU_SHARE:.0%}, "
        f"which needs a launch of {gpu['launch_for_goal_s']:.2f} s or a step of "
        f"{medians['before first step'] / GOAL_GPU_SHARE / gpu['median_trial_steps']:.2f} s).",
    ]
    return "\n".join(lines) + "\n"


def import_once(modules: tuple[str, ...]) -> float:
    """Seconds of a fresh Python process that imports ``modules`` and exits (process start included)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "; ".join(f"import {name}" for name in modules)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing {', '.join(modules)} failed: {done.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - start


#: Top-level packages of this project: their share of a process's imports is what this project could still cut.
PROJECT_PACKAGES = ("nlrd", "search", "bench")


def _is_project(module: str) -> bool:
    return module.split(".")[0] in PROJECT_PACKAGES


def import_floor(imports: dict[str, tuple[str, ...]], repeats: int) -> dict[str, dict[str, float]]:
    """Per process, the fastest of ``repeats`` fresh processes importing all its modules and those outside this
    project (alternated, so that a change in the machine's load falls on both), and their sums as ``"all three"``."""
    variants = {
        process: {"all": modules, "outside": tuple(m for m in modules if not _is_project(m))}
        for process, modules in imports.items()
    }
    times: dict[tuple[str, ...], list[float]] = {m: [] for kinds in variants.values() for m in kinds.values()}
    for _ in range(repeats):  # each distinct set of modules once per round (a process with none of this project's)
        for modules, seen in times.items():
            seen.append(import_once(modules))
    seconds = {process: {kind: min(times[m]) for kind, m in kinds.items()} for process, kinds in variants.items()}
    seconds["all three"] = {kind: sum(row[kind] for row in seconds.values()) for kind in ("all", "outside")}
    return seconds


def import_floor_markdown(
    header: str, imports: dict[str, tuple[str, ...]], seconds: dict[str, dict[str, float]]
) -> str:
    def row(process: str, label: str, modules: str) -> str:
        whole, outside = seconds[process]["all"], seconds[process]["outside"]
        return f"| {label} | {modules} | {whole:.2f} | {outside:.2f} | {whole - outside:.2f} |"

    total = seconds["all three"]
    lines = [
        header,
        "",
        "Seconds a fresh Python process takes to import what each of a trial's processes imports before the launch "
        "can go on (fastest of the repeats, process start included), and the same without this project's modules "
        f"({', '.join(PROJECT_PACKAGES)}). Each process is started by the one before it, so the sums add up: the "
        "imports outside this project are a floor under the time before the first step that no change to this "
        "project removes.",
        "",
        "| process | imports | seconds | outside this project | this project's share |",
        "|---|---|---|---|---|",
        *(row(process, process, ", ".join(f"`{m}`" for m in modules)) for process, modules in imports.items()),
        row("all three", "**all three**", ""),
        "",
        f"- Goal before the first step on this machine: {GOAL_BEFORE_FIRST_STEP_S:.0f} s; the imports take "
        f"{total['all']:.2f} s ({total['all'] / GOAL_BEFORE_FIRST_STEP_S:.0%} of it), those outside this project "
        f"{total['outside']:.2f} s ({total['outside'] / GOAL_BEFORE_FIRST_STEP_S:.0%}).",
    ]
    return "\n".join(lines) + "\n"


def _load(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.trial_overhead", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/trial_overhead"))
    parser.add_argument("--label", default="run", help="names the run directory and the output files")
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="search space (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--gpu-step-s", type=float, default=ASSUMED_GPU_STEP_S, help="assumed default-space GPU step")
    parser.add_argument("--analyse", type=Path, default=None, metavar="RUN_DIR", help="read a finished run")
    parser.add_argument("--import-floor", action="store_true", help="time the launch's imports instead of a search")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per --import-floor figure")
    return parser


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.import_floor:
        load = os.getloadavg()
        seconds = import_floor(LAUNCH_IMPORTS, args.repeats)
        header = f"{cli.run_header(parser)}; load average (1, 5, 15 min) before {_load(load)}"
        text = import_floor_markdown(header, LAUNCH_IMPORTS, seconds)
        cli.write_result(
            args.out, "import_floor", {"header": header, "imports": LAUNCH_IMPORTS, "seconds": seconds}, text
        )
        return
    if args.analyse is None:
        before = os.getloadavg()
        run_dir = run_search(args.space, args.out, f"{args.label}-{time.strftime('%Y%m%d-%H%M%S')}", args.overrides)
        (run_dir.path / LOAD_FILE).write_text(json.dumps({"before": before, "after": os.getloadavg()}))
    else:
        run_dir = RunDir(args.analyse)
    load = json.loads((run_dir.path / LOAD_FILE).read_text()) if (run_dir.path / LOAD_FILE).exists() else None
    tuner_start, tune_times = tune_trials(run_dir)
    reports = first_reports(run_dir)
    starts = trial_starts(tune_times, reports)
    rows = {t: trial_breakdown(starts[t], tune_times[t], reports[t]) for t in sorted(reports) if t in tune_times}
    tuner_to_first = min(starts.values()) - tuner_start if starts and tuner_start else None
    summary = summarise(rows, tuner_to_first, default_space_trial(args.gpu_step_s))
    header = f"{cli.run_header(parser)}; run {run_dir.path}; load average (1, 5, 15 min) " + (
        f"before {_load(load['before'])}, after {_load(load['after'])}" if load else "not recorded"
    )
    text = markdown(header, rows, summary)
    cli.write_result(args.out, args.label, {"header": header, "marks": list(MARKS), "trials": rows, **summary}, text)


if __name__ == "__main__":
    main()

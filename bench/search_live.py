"""Live search efficiency: real searches through ``search/run.py``, trial-epochs and wall time to a good relation set.

``nice -n 10 .venv/bin/python -m bench.search_live --study-seeds 0 1 2 3 4 --out bench/out/search_live``

The tabular replay (``bench/search_efficiency.py``) simulates the searches on recorded runs; this benchmark runs
them.  The space is ``bench/spaces/search-live.yaml``: the smoke world, stages and adaptation, relation sets only (21
sets of one or two of six relations), the loss weights fixed, 10 trials per study, two at a time.  Each search is
``search/run.py --space ... --set ...`` in a process of its own (its own local Ray), named ``<mode>-s<seed>`` under
``<out>/runs`` (the stage cache is ``<out>/runs/cache``, trained by the first run and shared by all).  The modes are
``--set`` overrides of the space's searcher, scheduler and pre-filter (``MODES``); ``searcher.seed`` is the study
seed, which also draws the pre-filter's random-pair baseline, as in any run.

The exhaustive best comes from one more run, ``exhaustive``: every relation set enqueued once by the pre-filter's
warm-up (``prefilter.warmup`` = the number of sets, ``keep_fraction: 1``, ``num_trials`` = the number of sets, no
ASHA), so every set is trained to the end by the same trial code, config and seed as in the studies.

A study's trials are read from its Optuna study (``study.log``, kept by ``search.tuner.StudyRecorder``: each trial's
start and end on the driver's clock, its relation set, state and every reported MPJPE; ``trials.csv`` has no clock
times).  They are taken in the order they ended; trial-epochs are the evaluations a trial reported (a trial that
ASHA stopped counts the rungs it ran), summed over the trials ended so far, so a trial still running beside them
is not counted yet.  A study reaches the target at the first trial that ran to its end with a final MPJPE within
``--tolerance`` (2%) of the exhaustive best; wall seconds count from the study's first trial start to that trial's
end (the stage check, the pre-filter and Ray's start are left out, alike for every mode).  A study that never gets
there counts as not reached.

Runs interleave the modes seed by seed, so an interrupted benchmark leaves every mode with about as many studies.
A finished run is skipped; an unfinished one is continued with ``search/run.py --resume`` (its wall times then
span the interruption: such a study is marked resumed).  Writes ``<out>/search_live.md`` and ``.json``;
``--analyse-only`` re-reads what ``<out>/runs`` holds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from bench import cli
from bench.prefilter_quality import git_commit, machine
from search.export import unended_trials
from search.prefilter import load_prefilter, score_label, set_label
from search.run_dir import RunDir, RunDirError
from search.space import SearchSpec, load_space
from search.trainable import RELATIONS_KEY
from search.trials import ERROR, FINISHED, STOPPED
from search.tuner import num_evaluations, study_storage

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = REPO / "bench" / "spaces" / "search-live.yaml"
#: The run that trains every relation set once to the end.
EXHAUSTIVE = "exhaustive"
#: Each run directory's record of the benchmark's calls of ``search/run.py`` on it (time, load, exit status).
INVOCATIONS_FILE = "search_live_invocations.json"
#: The modes each ratio is taken against.
BASELINES = ("random", "tpe-asha")


@dataclass(frozen=True)
class Mode:
    """A search method, as ``--set`` items on the bench space.  Every searcher, scheduler and pre-filter key the
    method depends on is set, so the bench space's own sections never leak into a mode."""

    name: str
    algorithm: str
    asha: bool
    cut: bool
    warmup: bool

    def overrides(self, seed: int, keep_fraction: float, warmup: int) -> list[str]:
        """``scheduler.type: none`` runs every trial to the end; ``prefilter.enabled: false`` keeps every set and
        warms up none (the sets are still scored, as in any run); the warm-up without the cut keeps every set."""
        return [
            f"searcher.algorithm={self.algorithm}",
            f"searcher.seed={seed}",
            f"scheduler.type={'asha' if self.asha else 'none'}",
            f"prefilter.enabled={'true' if self.cut or self.warmup else 'false'}",
            f"prefilter.keep_fraction={keep_fraction if self.cut else 1.0}",
            "prefilter.threshold=null",
            f"prefilter.warmup={warmup if self.warmup else 0}",
        ]


MODES = (
    Mode("random", "random", asha=False, cut=False, warmup=False),
    Mode("tpe", "tpe", asha=False, cut=False, warmup=False),
    Mode("tpe-asha", "tpe", asha=True, cut=False, warmup=False),
    Mode("tpe-asha-cut", "tpe", asha=True, cut=True, warmup=False),
    Mode("tpe-asha-warmup", "tpe", asha=True, cut=False, warmup=True),
    Mode("tpe-asha-both", "tpe", asha=True, cut=True, warmup=True),
)
MODE_NAMES = tuple(mode.name for mode in MODES)


def exhaustive_overrides(spec: SearchSpec) -> list[str]:
    """Every relation set of ``spec`` once, to the end: the warm-up enqueues all of them (best score first) and the
    budget is exactly their number, so the sampler never picks one."""
    sets = len(spec.relations.sets())
    return [
        f"searcher.num_trials={sets}",
        "scheduler.type=none",
        "prefilter.enabled=true",
        "prefilter.keep_fraction=1.0",
        "prefilter.threshold=null",
        f"prefilter.warmup={sets}",
    ]


@dataclass(frozen=True)
class Run:
    """One search of the benchmark: its run directory's name, mode, study seed (None: the exhaustive run) and the
    ``--set`` items it adds to the bench space."""

    name: str
    mode: str
    seed: int | None
    overrides: tuple[str, ...]


def exhaustive_run(space: Path) -> Run:
    return Run(EXHAUSTIVE, EXHAUSTIVE, None, tuple(exhaustive_overrides(load_space(space))))


def planned_runs(
    space: Path, modes: Sequence[str], seeds: Sequence[int], keep_fraction: float, warmup: int
) -> list[Run]:
    """The exhaustive run first (when asked for), then the modes interleaved seed by seed."""
    runs = [exhaustive_run(space)] if EXHAUSTIVE in modes else []
    for seed in seeds:
        for mode in MODES:
            if mode.name in modes:
                overrides = tuple(mode.overrides(seed, keep_fraction, warmup))
                runs.append(Run(f"{mode.name}-s{seed}", mode.name, seed, overrides))
    return runs


def run_state(run_dir: RunDir, spec: SearchSpec) -> str:
    """``absent``, ``finished`` (its summary written and every trial of its budget ended) or ``unfinished``.
    A directory holding a run of another space or other overrides stops the benchmark: mixing them would be
    silent."""
    if not run_dir.manifest_json.exists():
        return "absent"
    try:
        digest = run_dir.read_manifest().space_digest
    except RunDirError as exc:
        raise SystemExit(str(exc)) from None
    if digest != spec.digest:
        raise SystemExit(
            f"{run_dir.path} holds a run of another configuration (space digest {digest}, expected {spec.digest}); "
            "use another --out"
        )
    ended = run_dir.summary_md.exists() and run_dir.trials_csv.exists()
    return "finished" if ended and unended_trials(spec, pd.read_csv(run_dir.trials_csv)) == 0 else "unfinished"


def run_command(space: Path, runs_dir: Path, run: Run, state: str) -> list[str]:
    """``search/run.py`` for a new run, or ``--resume`` for an unfinished one (which keeps its space and items)."""
    command = [sys.executable, str(REPO / "search" / "run.py")]
    if state == "unfinished":
        return [*command, "--resume", str(runs_dir / run.name)]
    command += ["--space", str(space), "--out", str(runs_dir), "--name", run.name]
    return command + [arg for item in run.overrides for arg in ("--set", item)]


def run_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The search's environment: no ``RAY_ADDRESS`` (each run starts its own local Ray), and this checkout first on
    the module path, so the run and its Ray workers import this repository's ``search`` and ``nlrd`` even where an
    editable install points at another checkout."""
    env = {k: v for k, v in environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [environ.get("PYTHONPATH")])])
    return env


def execute(space: Path, runs_dir: Path, run: Run) -> None:
    """Run ``run`` unless it finished, in its own process and local Ray; record the call in its directory."""
    spec = load_space(space, run.overrides)
    run_dir = RunDir(runs_dir / run.name)
    state = run_state(run_dir, spec)
    if state == "finished":
        print(f"[bench] {run.name}: finished, skipped", flush=True)
        return
    if state == "absent" and run_dir.path.exists():
        shutil.rmtree(run_dir.path)  # stopped before writing its manifest: nothing in it to keep
    print(f"[bench] {run.name}: {'resuming' if state == 'unfinished' else 'starting'}", flush=True)
    env = run_env(os.environ)
    before, start = os.getloadavg(), time.time()
    returncode = subprocess.run(run_command(space, runs_dir, run, state), env=env, cwd=REPO).returncode
    invocation = {
        "date": datetime.fromtimestamp(start).isoformat(timespec="seconds"),
        "seconds": time.time() - start,
        "load_before": before,
        "load_after": os.getloadavg(),
        "resumed": state == "unfinished",
        "returncode": returncode,
    }
    if run_dir.path.exists():
        path = run_dir.path / INVOCATIONS_FILE
        path.write_text(json.dumps([*read_invocations(run_dir), invocation], indent=1))
    if returncode != 0:
        raise SystemExit(f"{run.name}: search/run.py exited with {returncode}; run this command again to continue")


def read_invocations(run_dir: RunDir) -> list[dict[str, Any]]:
    path = run_dir.path / INVOCATIONS_FILE
    return json.loads(path.read_text()) if path.exists() else []


@dataclass(frozen=True)
class EndedTrial:
    """One trial that ended, as the run's Optuna study recorded it: its set, status (``search.trials``), how many
    evaluations it reported, its last reported MPJPE (mm) and when it started and ended (the driver's clock)."""

    relation_set: str
    status: str
    evaluations: int
    mpjpe: float
    started: datetime
    ended: datetime


_STATUS = {
    optuna.trial.TrialState.COMPLETE: FINISHED,
    optuna.trial.TrialState.PRUNED: STOPPED,
    optuna.trial.TrialState.FAIL: ERROR,
}


def ended_trials(run_dir: RunDir) -> list[EndedTrial]:
    """The run's ended trials in the order they ended; trials the study still holds as running are left out."""
    study = optuna.load_study(study_name=None, storage=study_storage(run_dir))
    trials = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in _STATUS or trial.datetime_start is None or trial.datetime_complete is None:
            continue
        reports = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
        last = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else (reports or [math.nan])[-1]
        trials.append(
            EndedTrial(
                relation_set=str(trial.params[RELATIONS_KEY]),
                status=_STATUS[trial.state],
                evaluations=len(reports),
                mpjpe=float(last),
                started=trial.datetime_start,
                ended=trial.datetime_complete,
            )
        )
    return sorted(trials, key=lambda t: t.ended)


def set_errors(trials: Sequence[EndedTrial]) -> dict[str, float]:
    """Each relation set's final MPJPE over the trials that ran to the end (the mean, should a set have several)."""
    finals: dict[str, list[float]] = {}
    for trial in trials:
        if trial.status == FINISHED:
            finals.setdefault(trial.relation_set, []).append(trial.mpjpe)
    return {label: statistics.fmean(values) for label, values in finals.items()}


@dataclass(frozen=True)
class StudyOutcome:
    """What one study spent and found.  ``reached_at``: the position, in the order trials ended, of the first trial
    that ran to its end within the target (None: never); ``epochs_to_target`` and ``wall_to_target_s``: what was
    spent until that trial ended; ``rerun_gaps_mm``: for each trial that ran to its end, how far its final MPJPE is
    from its set's in the exhaustive run (the noise of training the same set again)."""

    trials: int
    epochs: int
    wall_s: float
    reached_at: int | None
    epochs_to_target: int | None
    wall_to_target_s: float | None
    best_set: str | None
    best_mpjpe: float | None
    rerun_gaps_mm: list[float] = field(default_factory=list)


def study_outcome(trials: Sequence[EndedTrial], target_mm: float, exhaustive: dict[str, float]) -> StudyOutcome:
    order = sorted(trials, key=lambda t: t.ended)
    start = min(t.started for t in order)
    spent, reached = 0, None
    for position, trial in enumerate(order, 1):
        spent += trial.evaluations
        if reached is None and trial.status == FINISHED and trial.mpjpe <= target_mm:
            reached = (position, spent, (trial.ended - start).total_seconds())
    finished = [t for t in order if t.status == FINISHED]
    best = min(finished, key=lambda t: t.mpjpe) if finished else None
    return StudyOutcome(
        trials=len(order),
        epochs=spent,
        wall_s=(order[-1].ended - start).total_seconds(),
        reached_at=reached[0] if reached else None,
        epochs_to_target=reached[1] if reached else None,
        wall_to_target_s=reached[2] if reached else None,
        best_set=best.relation_set if best else None,
        best_mpjpe=best.mpjpe if best else None,
        rerun_gaps_mm=[abs(t.mpjpe - exhaustive[t.relation_set]) for t in finished if t.relation_set in exhaustive],
    )


@dataclass(frozen=True)
class Study:
    """A finished study of the benchmark: its run, outcome, the sets its pre-filter offered the searcher (and how
    many of them meet the target), and the benchmark's calls of ``search/run.py`` on it."""

    run: str
    mode: str
    seed: int | None
    outcome: StudyOutcome
    offered: int | None
    targets_offered: int | None
    invocations: list[dict[str, Any]]

    @property
    def resumed(self) -> bool:
        return any(call.get("resumed") for call in self.invocations)


@dataclass(frozen=True)
class ModeSummary:
    """One mode over its studies; the ``*_to_target`` figures are over the studies that reached (None: none did)."""

    studies: int
    reached: int
    median_epochs_to_target: float | None
    mean_epochs_to_target: float | None
    median_wall_to_target_s: float | None
    mean_wall_to_target_s: float | None
    median_best_mpjpe: float | None
    mean_epochs: float

    @property
    def reached_share(self) -> float:
        return self.reached / self.studies


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def summarise(outcomes: Sequence[StudyOutcome]) -> ModeSummary:
    epochs = [o.epochs_to_target for o in outcomes if o.epochs_to_target is not None]
    wall = [o.wall_to_target_s for o in outcomes if o.wall_to_target_s is not None]
    return ModeSummary(
        studies=len(outcomes),
        reached=len(epochs),
        median_epochs_to_target=_median(epochs),
        mean_epochs_to_target=_mean(epochs),
        median_wall_to_target_s=_median(wall),
        mean_wall_to_target_s=_mean(wall),
        median_best_mpjpe=_median([o.best_mpjpe for o in outcomes if o.best_mpjpe is not None]),
        mean_epochs=float(statistics.fmean(o.epochs for o in outcomes)),
    )


def speedup(base: float | None, value: float | None) -> float | None:
    """How many times less ``value`` is than ``base`` (medians to the target); None when either never reached."""
    if base is None or value is None or value == 0:
        return None
    return base / value


def ratios(summaries: dict[str, ModeSummary]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per mode and baseline (``BASELINES`` that were run): the speed-ups of the median trial-epochs and wall
    seconds to the target."""
    return {
        mode: {
            base: {
                "epochs": speedup(summaries[base].median_epochs_to_target, s.median_epochs_to_target),
                "wall": speedup(summaries[base].median_wall_to_target_s, s.median_wall_to_target_s),
            }
            for base in BASELINES
            if base in summaries
        }
        for mode, s in summaries.items()
    }


def read_study(run: Run, run_dir: RunDir, target_mm: float, exhaustive: dict[str, float]) -> Study:
    offered = targets = None
    if run_dir.prefilter_json.exists():
        kept = [d.label for d in load_prefilter(run_dir.prefilter_json).decisions if d.kept]
        offered, targets = len(kept), sum(exhaustive.get(label, math.inf) <= target_mm for label in kept)
    return Study(
        run=run.name,
        mode=run.mode,
        seed=run.seed,
        outcome=study_outcome(ended_trials(run_dir), target_mm, exhaustive),
        offered=offered,
        targets_offered=targets,
        invocations=read_invocations(run_dir),
    )


def finished_dir(space: Path, runs_dir: Path, run: Run) -> RunDir | None:
    run_dir = RunDir(runs_dir / run.name)
    return run_dir if run_state(run_dir, load_space(space, run.overrides)) == "finished" else None


def random_search_expectation(sets: int, targets: int, evaluations: int, budget: int) -> dict[str, float | None]:
    """What uniform random draws of a set (with replacement, as Optuna's random sampler draws a categorical), each
    run to its end, give on average: the trials until the first target set (geometric, ``sets / targets``), those
    trials' evaluations, and the chance of drawing a target within ``budget`` trials.  The line a study's few seeds
    scatter around, free of their luck."""
    if targets == 0:
        return {"trials": None, "trial_epochs": None, "reach_share": 0.0}
    hit = targets / sets
    return {"trials": 1 / hit, "trial_epochs": evaluations / hit, "reach_share": 1 - (1 - hit) ** budget}


def analyse(space: Path, runs_dir: Path, runs: Sequence[Run], tolerance: float) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready mapping, measured against the exhaustive run; the studies of
    ``runs`` not finished are listed as missing."""
    exhaustive_dir = finished_dir(space, runs_dir, exhaustive_run(space))
    if exhaustive_dir is None:
        raise SystemExit(f"no finished exhaustive run in {runs_dir / EXHAUSTIVE}: run with --modes {EXHAUSTIVE} first")
    exhaustive = set_errors(ended_trials(exhaustive_dir))
    best_set = min(exhaustive, key=exhaustive.get)
    target = (1 + tolerance) * exhaustive[best_set]
    studies, missing = [], []
    for run in runs:
        if run.mode == EXHAUSTIVE:
            continue
        run_dir = finished_dir(space, runs_dir, run)
        if run_dir is None:
            missing.append(run.name)
        else:
            studies.append(read_study(run, run_dir, target, exhaustive))
    summaries = {
        mode: summarise([s.outcome for s in studies if s.mode == mode])
        for mode in MODE_NAMES
        if any(s.mode == mode for s in studies)
    }
    spec = load_space(space)
    record = load_prefilter(exhaustive_dir.prefilter_json)
    scores = {d.label: d.score for d in record.decisions}
    quality_json = exhaustive_dir.stage_quality_json
    quality = json.loads(quality_json.read_text()) if quality_json.exists() else {}
    gaps = [gap for s in studies for gap in s.outcome.rerun_gaps_mm]
    studies.sort(key=lambda s: (MODE_NAMES.index(s.mode), s.seed))
    return {
        "space": str(space.relative_to(REPO) if space.is_relative_to(REPO) else space),
        "sets": len(spec.relations.sets()),
        "num_trials": spec.searcher.num_trials,
        "max_concurrent": spec.searcher.max_concurrent,
        "evaluations_per_trial": num_evaluations(spec),
        "adapt_seed": spec.adapt_config((), {}).seed,
        "tolerance": tolerance,
        "exhaustive": {
            "mpjpe": exhaustive,
            "scores": scores,
            "ranked_by": score_label(record.score, spec.prefilter.aggregate),
            "missing_sets": sorted({set_label(s) for s in spec.relations.sets()} - set(exhaustive)),
            "best_set": best_set,
            "best_mpjpe": exhaustive[best_set],
            "source_only_mpjpe": quality.get("references", {}).get("source_only", {}).get("mpjpe"),
        },
        "target_mpjpe": target,
        "random_expectation": random_search_expectation(
            len(exhaustive),
            sum(value <= target for value in exhaustive.values()),
            num_evaluations(spec),
            spec.searcher.num_trials,
        ),
        "rerun_gap_mm": {"trials": len(gaps), "median": _median(gaps), "max": max(gaps, default=None)},
        "studies": [asdict(s) | {"resumed": s.resumed} for s in studies],
        "missing_runs": missing,
        "summary": {mode: asdict(s) | {"reached_share": s.reached_share} for mode, s in summaries.items()},
        "ratios": ratios(summaries),
    }


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _load(values: Sequence[float] | None) -> str:
    return "not recorded" if not values else ", ".join(f"{v:.2f}" for v in values)


def markdown(result: dict[str, Any]) -> str:
    ex = result["exhaustive"]
    target = result["target_mpjpe"]
    good = sorted((label for label, v in ex["mpjpe"].items() if v <= target), key=ex["mpjpe"].get)
    gap = result["rerun_gap_mm"]
    source = ex["source_only_mpjpe"]
    lines = [
        "# Live search efficiency (real trials through search/run.py)",
        "",
        f"{result['date']}; {result['machine']}; commit `{result['commit']}`; `{result['command']}`; "
        + (
            "this call ran no search (each study's load average is in its row)."
            if result["load_before"] is None
            else f"load average (1, 5, 15 min) before {_load(result['load_before'])}, after "
            f"{_load(result['load_after'])}."
        ),
        "",
        f"Space `{result['space']}`: {result['sets']} relation sets, {result['num_trials']} trials per study, "
        f"{result['max_concurrent']} at a time, {result['evaluations_per_trial']} evaluations per full trial. Every "
        f"trial adapts with seed {result['adapt_seed']} (fixed in the space), so a set trained again should differ "
        "only by floating-point nondeterminism; measured over the "
        f"{gap['trials']} study trials run to the end, against the same set in the exhaustive run: "
        f"{_num(gap['median'], 2)} mm median, {_num(gap['max'], 2)} mm at most.",
        "",
        f"Exhaustive run (every set once to the end): best `{ex['best_set']}` {ex['best_mpjpe']:.1f} mm"
        + (f" (source only {source:.1f} mm)" if source is not None else "")
        + f"; target: within {result['tolerance']:.0%}, at most {target:.1f} mm, met by {len(good)} of "
        f"{len(ex['mpjpe'])} sets ({', '.join(f'`{label}`' for label in good)})"
        + (f"; sets without a finished trial: {', '.join(ex['missing_sets'])}" if ex["missing_sets"] else "")
        + ".",
        "",
        "Random search's expectation on these sets (uniform draws with replacement, each trial to its end): "
        + (
            "no set meets the target."
            if (expect := result["random_expectation"])["trials"] is None
            else f"the first target set at trial {expect['trials']:.2f} on average, {expect['trial_epochs']:.1f} "
            f"trial-epochs; reached within {result['num_trials']} trials with probability {expect['reach_share']:.0%}."
        ),
        "",
        "Trials in the order they ended; trial-epochs = evaluations reported by the trials ended so far; wall = from "
        "the study's first trial start to the end of the first trial that ran to its end within the target. "
        "To-target figures are over the studies that reached it; ratios are of those medians (how many times fewer).",
        "",
        "| mode | studies | reached | trial-epochs to target, median / mean | wall s to target, median / mean | "
        "vs random (trial-epochs / wall) | vs tpe-asha (trial-epochs / wall) | best found, median (mm) | "
        "trial-epochs per study, mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, s in result["summary"].items():
        r = result["ratios"][mode]
        vs = [f"{_ratio(r[b]['epochs'])} / {_ratio(r[b]['wall'])}" if b in r else "n/a" for b in BASELINES]
        lines.append(
            f"| {mode} | {s['studies']} | {s['reached_share']:.0%} | {_num(s['median_epochs_to_target'], 1)} / "
            f"{_num(s['mean_epochs_to_target'], 1)} | {_num(s['median_wall_to_target_s'])} / "
            f"{_num(s['mean_wall_to_target_s'])} | {vs[0]} | {vs[1]} | {_num(s['median_best_mpjpe'], 1)} | "
            f"{s['mean_epochs']:.1f} |"
        )
    lines += [
        "",
        "| study | reached at trial | trial-epochs / wall s to target | best found | trials / trial-epochs / wall s "
        "in all | sets offered (meeting the target) | load (1 min) before, after | resumed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in result["studies"]:
        o = s["outcome"]
        best = "–" if o["best_set"] is None else f"`{o['best_set']}` {o['best_mpjpe']:.1f}"
        offered = "–" if s["offered"] is None else f"{s['offered']} ({s['targets_offered']})"
        loads = ", ".join(f"{c['load_before'][0]:.1f} → {c['load_after'][0]:.1f}" for c in s["invocations"]) or "–"
        lines.append(
            f"| {s['run']} | {_num(o['reached_at'])} | {_num(o['epochs_to_target'])} / "
            f"{_num(o['wall_to_target_s'])} | {best} | {o['trials']} / {o['epochs']} / {o['wall_s']:.0f} | "
            f"{offered} | {loads} | {'yes' if s['resumed'] else 'no'} |"
        )
    header = f"| set | MPJPE (mm), exhaustive run | within target | pre-filter {ex['ranked_by']} |"
    lines += ["", header, "|---|---|---|---|"]
    for label, value in sorted(ex["mpjpe"].items(), key=lambda item: item[1]):
        score = ex["scores"].get(label)
        lines.append(f"| `{label}` | {value:.1f} | {'yes' if value <= target else ''} | {_num(score, 3)} |")
    if result["missing_runs"]:
        lines += ["", f"Not finished (left out): {', '.join(result['missing_runs'])}."]
    return "\n".join(lines) + "\n"


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.search_live", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/search_live"))
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="bench space (default: %(default)s)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=(EXHAUSTIVE, *MODE_NAMES),
        default=[EXHAUSTIVE, *MODE_NAMES],
        help="runs to make and analyse (default: all; the analysis needs the exhaustive run)",
    )
    parser.add_argument("--study-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="searcher.seed of each")
    parser.add_argument("--keep-fraction", type=float, default=0.5, help="the cut's prefilter.keep_fraction")
    parser.add_argument("--warmup", type=int, default=3, help="prefilter.warmup of the warm-up modes")
    parser.add_argument("--tolerance", type=float, default=0.02, help="target: within this share of the best")
    parser.add_argument("--analyse-only", action="store_true", help="run nothing, analyse what <out>/runs holds")
    return parser


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs_dir = (args.out / "runs").resolve()
    space = args.space.resolve()
    runs = planned_runs(space, args.modes, args.study_seeds, args.keep_fraction, args.warmup)
    load_before = load_after = None
    if not args.analyse_only:
        runs_dir.mkdir(parents=True, exist_ok=True)
        load_before = os.getloadavg()
        for run in runs:
            execute(space, runs_dir, run)
        load_after = os.getloadavg()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "commit": git_commit(),
        "command": cli.command(parser),
        "load_before": load_before,
        "load_after": load_after,
        **analyse(space, runs_dir, runs, args.tolerance),
    }
    (args.out / "search_live.json").write_text(json.dumps(result, indent=1))
    (args.out / "search_live.md").write_text(markdown(result))
    print((args.out / "search_live.md").read_text())


if __name__ == "__main__":
    main()

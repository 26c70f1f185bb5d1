"""Run a relation-set search: ``nlrd-search`` or ``python search/run.py [--space spaces/smoke.yaml] [--out results]``.

Starts a local Ray when no ``--address`` is given, trains the shared stages once (cached), scores every
candidate relation set with the label-free pre-filter, searches the kept sets and the tuned knobs
with Ray Tune + Optuna (+ ASHA; each trial a Ray Train job), and writes tables and plots into a run
directory.  ``--resume RUN_DIR`` continues a search that was interrupted; ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray

from nlrd.atomic import remove_temporary_files
from nlrd.pipeline import StageCache, StageKeys, reference_lines, stage_keys, stage_quality
from nlrd.quality import StageQuality
from nlrd.quality import warnings as quality_warnings
from search.estimate import estimate_lines
from search.export import (
    accuracy_text,
    plotted_objective,
    prefilter_correlation,
    trials_table,
    unended_trials,
    write_best,
    write_stage_quality,
    write_summary,
    write_tables,
)
from search.plots import metric_subject, pareto_plot, prefilter_plot
from search.prefilter import (
    PrefilterRecord,
    SetDecision,
    decide,
    load_prefilter,
    rule_text,
    save_prefilter,
    score_label,
    score_relations,
    score_relations_here,
    warmup_sets,
)
from search.resources import (
    Node,
    autoscaling,
    cluster_nodes,
    stage_branches_side_by_side,
    this_machine,
    trials_at_once,
    unplaceable,
)
from search.run_dir import RunDir, RunDirError
from search.space import ACCURACY_METRICS, PrefilterSpec, SearchSpec, SpaceError, load_space
from search.stages import StageJobError, ensure_stages, missing_stages, unreadable_stages
from search.trainable import make_trainable
from search.trials import (
    INTERRUPTED,
    METRIC_COLUMNS,
    OBJECTIVE,
    REFERENCE_LINES,
    record_from_result,
    reference_rows,
    rejected_rows,
    trial_row,
)
from search.tuner import build_tuner, num_evaluations, restore_tuner, study_storage

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "spaces" / "smoke.yaml"
#: Exit status of a search interrupted (Ctrl-C) before its trials ended: the shell's for SIGINT.
INTERRUPTED_EXIT = 130


class RunError(Exception):
    """A problem with the command line or the run directory; the message says what to do."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # The terminal shows the docstring's first line as plain text, without its reStructuredText literals; the
    # program is named as it was called (``nlrd-search`` or ``search/run.py``).
    called = Path(sys.argv[0]).name
    prog = "nlrd-search" if called == "nlrd-search" else "search/run.py"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--space", type=Path, default=None, help=f"search space YAML (default: {DEFAULT_SPACE})")
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="parent of run directories (default: %(default)s)"
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address, e.g. 'auto' on a head node (default: $RAY_ADDRESS, else start a local Ray)",
    )
    parser.add_argument("--name", default=None, help="run directory name (default: <space name>-<timestamp>)")
    parser.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue an interrupted search")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit without training")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="change one value of the space, checked like the file and recorded in the run's space.yaml, e.g. "
        "searcher.num_trials=4 (repeatable; VALUE is YAML)",
    )
    return parser.parse_args(argv)


#: Seconds to wait for a TCP answer from ``--address`` before telling the user no cluster is there (``ray.init``
#: itself retries for minutes, printing warnings).
ADDRESS_PROBE_S = 5.0


def cluster_address(address: str | None) -> tuple[str | None, str]:
    """The cluster to join and where that came from: ``--address``, else ``RAY_ADDRESS`` (``ray job submit`` sets
    it in the job's environment, so a submitted search runs on the cluster it was submitted to), else ``None``: a
    fresh local Ray."""
    if address is not None:
        return address, f"--address {address}"
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if not env:
        return None, "a local Ray"
    if env.startswith(("http://", "https://")):
        raise RunError(
            f"RAY_ADDRESS={env} is a dashboard URL, the address `ray job submit` takes; search/run.py joins a cluster "
            "at HOST:PORT or 'auto': pass --address, or unset RAY_ADDRESS to start a local Ray"
        )
    return env, f"RAY_ADDRESS={env}"


def probe_address(address: str, origin: str) -> None:
    """Fail fast, with a clear message, when nothing listens at an explicit ``host:port`` address."""
    if address in ("auto", "local"):
        return  # resolved by Ray from RAY_ADDRESS or the cluster started on this machine
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RunError(f"{origin}: expected 'auto' or HOST:PORT (e.g. 10.0.0.5:6379 or ray://HOST:10001)")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_PROBE_S).close()
    except OSError as exc:
        raise RunError(
            f"{origin}: no Ray cluster answered ({exc.strerror or exc}); start one with `ray start --head` "
            f"or `ray up cluster.yaml`, or leave out --address (and RAY_ADDRESS) to start a local Ray"
        ) from None


def start_ray(address: str | None) -> None:
    """Connect to the cluster ``cluster_address`` names or start a local Ray, keeping its logs out of the user's
    terminal.  An explicit address is probed first, even when this process already holds a Ray: a wrong address
    is an error whatever else is running."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Save Tune's experiment state at every step, not every 10+ s: a crash then loses no ended trial.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    address, origin = cluster_address(address)
    if address is not None:
        probe_address(address, origin)
    if ray.is_initialized():
        return
    try:
        # No address: always a fresh local Ray, never one that `ray start` left running on this machine.
        ray.init(address=address or "local", logging_level="ERROR", log_to_driver=False, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RunError(f"{origin}: no Ray cluster answered ({str(exc).splitlines()[0]})") from None
    # A failed trial's traceback goes to its row in trials.csv and its error.txt; the terminal gets one line.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def check_run_name(name: str) -> None:
    """Refuse a ``--name`` that is not one folder name: with a separator, ``.`` or ``..`` the run directory would
    land outside ``--out`` (or be ``--out`` itself)."""
    if name in ("", ".", "..") or set(name) & set("/\\\0"):
        raise RunError(
            f"--name {name!r}: must be one folder name inside --out: not empty, '.' or '..', without '/' or '\\'"
        )


def open_run(args: argparse.Namespace) -> tuple[SearchSpec, RunDir, StageCache, bool]:
    """The space, run directory and stage cache of this invocation, and whether it resumes a search.

    A resumed run must be ours and belong to the same space: its directory is as trusted as code (Tune
    unpickles its state), so it is checked before Ray sees it.
    """
    if args.name is not None:
        check_run_name(args.name)
    if args.resume is None:
        spec = load_space(args.space or DEFAULT_SPACE, args.overrides)
        run_dir = RunDir(args.out / (args.name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"))
        if run_dir.path.exists() and not args.dry_run:
            raise RunError(
                f"run directory {run_dir.path} already exists; choose another --name or --out, or --resume it"
            )
        return spec, run_dir, StageCache(args.out.resolve() / "cache"), False
    if args.overrides:
        raise RunError(
            f"--resume {args.resume} with --set: a run keeps the space it started with (its space.yaml, --set "
            "items included); start a new run to change it"
        )
    run_dir = RunDir(args.resume)
    try:
        manifest = run_dir.read_manifest()
        spec = run_dir.read_space(manifest)
    except RunDirError as exc:
        raise RunError(f"--resume {exc}") from None
    if args.space is not None and load_space(args.space).digest != manifest.space_digest:
        raise RunError(
            f"--resume {run_dir.path}: this run belongs to a different space than {args.space}; "
            f"resume without --space, or start a new run"
        )
    return spec, run_dir, StageCache(manifest.cache), True


def check_resources(spec: SearchSpec, where: str, nodes: list[Node], autoscaled: bool) -> None:
    """Refuse a space whose stage job or trials no node of ``nodes`` can hold (Ray would wait for ever, silently),
    unless an autoscaler adds nodes on demand: then say that the run waits for them."""
    problems = unplaceable(spec.resources, nodes, where)
    if not problems:
        at_once = trials_at_once(spec.resources, nodes)
        if at_once < spec.searcher.max_concurrent and not autoscaled:
            print(
                f"[resources] searcher.max_concurrent is {spec.searcher.max_concurrent}, but {where} holds "
                f"{at_once} trial{'s' * (at_once != 1)} of resources.trial_cpus {spec.resources.trial_cpus:g}"
                + (f" and trial_gpus {spec.resources.trial_gpus:g}" if spec.resources.trial_gpus else "")
                + " at once: the others wait for a free slot",
                flush=True,
            )
        return
    if not autoscaled:
        raise RunError(f"{spec.path}: " + "\n".join(problems))
    print(
        f"[resources] {where} cannot place all of it yet, and its autoscaler adds nodes on demand: the run waits for "
        "them (a cloud node takes minutes to start; Ray waits without a time limit, Ctrl-C stops the run and "
        "--resume continues it):",
        flush=True,
    )
    for line in problems:
        print(f"[resources]   {line}", flush=True)


def dry_run(spec: SearchSpec, cache: StageCache, address: str | None) -> None:
    """Print what a run would do, scoring the relation sets only when the stages they need are cached."""
    side_by_side = True
    if cluster_address(address)[0] is None:
        check_resources(spec, "this machine (a local Ray)", this_machine(), autoscaled=False)
        at_once = trials_at_once(spec.resources, this_machine())
        side_by_side = stage_branches_side_by_side(spec.resources, this_machine(), autoscaled=False)
        jobs = "two stage jobs side by side" if side_by_side else "one stage job at a time (one job trains them all)"
        print(f"[plan] resources: this machine can place {jobs} and {at_once} trial{'s' * (at_once != 1)} at once")
    else:
        print("[plan] resources: checked against the cluster when the run joins it")
    keys = stage_keys(spec.stages, spec.relations.candidates)
    missing = missing_stages(cache, keys)
    sets = spec.relations.sets()
    changed = f" with {' '.join(f'--set {item}' for item in spec.overrides)}" if spec.overrides else ""
    print(f"[plan] space {spec.name} ({spec.path}{changed}), digest {spec.digest}; stage cache {cache.root}")
    print(f"[plan] stages to train: {', '.join(missing)}" if missing else "[plan] every stage is cached")
    print(f"[plan] {len(sets)} candidate relation sets from {len(spec.relations.candidates)} relations")
    print(f"[plan] pre-filter: {rule_text(spec.prefilter)}")
    if missing:
        print("[plan] reference lines and stage quality are measured once the stages are trained")
    else:
        report_stages(spec, cache, keys)
    decisions = None
    if any(name in ("world", "prior", "motion") or name.startswith("relation ") for name in missing):
        print(
            "[plan] set scores need the cached world, pose prior, motion embedding and relation transformers; a run "
            "trains them first"
        )
    else:
        root, clip_len = str(cache.root), spec.stages.world.clip_len
        scores = score_relations_here(root, keys, spec.relations.candidates, clip_len, spec.searcher.seed)
        decisions = decide(sets, scores, spec.prefilter, str(spec.path))
        print_decisions(decisions, score_label(spec.prefilter.score, spec.prefilter.aggregate), spec.prefilter)
    print_parameters(spec, decisions)
    adapt = spec.adapt_config((), {})
    steps = max(num_evaluations(spec) * adapt.eval_every, adapt.steps)
    images = spec.searcher.num_trials * steps * adapt.batch_clips * 2 * spec.stages.world.clip_len
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in spec.objectives)
    print(
        f"[plan] {spec.searcher.num_trials} trials with {spec.searcher.algorithm}, at most "
        f"{spec.searcher.max_concurrent} at once, scheduler {spec.scheduler.type}; objectives: {objectives}"
    )
    print(
        f"[plan] cost: at most {spec.searcher.num_trials} x {steps} adaptation steps, about {images:,} frames "
        f"through the encoder ({adapt.batch_clips} clips x {2 * spec.stages.world.clip_len} frames per step), plus "
        f"a Ray Train launch per trial; each trial holds {spec.resources.trial_cpus} CPU and "
        f"{spec.resources.trial_gpus} GPU"
    )
    for line in estimate_lines(spec, missing, side_by_side=side_by_side):
        print(f"[plan] {line}")


def print_parameters(spec: SearchSpec, decisions: list[SetDecision] | None) -> None:
    """What the searcher samples, as Optuna's distributions: the relation set (from the sets the pre-filter keeps,
    ``decisions``, or None before the sets can be scored), then the space's ``params``."""
    sets = len(spec.relations.sets())
    if decisions is None:
        relations = f"choice of the relation sets the pre-filter keeps, of {sets} (scored once the stages are trained)"
    else:
        relations = f"choice of the {sum(d.kept for d in decisions)} relation sets the pre-filter keeps, of {sets}"
    rows = [("relations", relations)] + [(param.name, param.describe()) for param in spec.params]
    width = max(len(name) for name, _ in rows)
    print("[plan] tuned parameters (Optuna's distributions):")
    for name, text in rows:
        print(f"[plan]   {name:<{width}}  {text}")


def report_stages(
    spec: SearchSpec, cache: StageCache, keys: StageKeys
) -> tuple[dict[str, dict[str, float]], StageQuality]:
    """Print the reference lines and the stage-quality figures of trained stages (measured once, then cached),
    each missed bar as a warning naming the knob to raise."""
    references = reference_lines(cache, keys)
    lines = ", ".join(f"{REFERENCE_LINES[name]} {values['mpjpe']:.1f} mm" for name, values in references.items())
    print(f"[stages] target MPJPE of the reference lines: {lines}", flush=True)
    quality = stage_quality(spec.stages, cache, keys)
    gaps = ", ".join(f"{name} {left:.2f}" for name, left in sorted(quality.relations.items()))
    print(
        f"[quality] held-out mocap: prior {quality.prior_mm:.1f} mm, motion {quality.motion_mm:.1f} mm; relation "
        f"gap left (0 = reached): {gaps}",
        flush=True,
    )
    for line in quality_warnings(quality):
        print(f"[quality] WARNING: {line}", flush=True)
    return references, quality


def print_decisions(decisions: list[SetDecision], label: str, rule: PrefilterSpec) -> None:
    """The verdicts, best score first; ``label`` names the score that ranked them (``score_label``), and the
    warm-up's sets are named last."""
    kept, count = sum(d.kept for d in decisions), len(decisions)
    print(f"[prefilter] {count} relation sets ranked by {label}: {kept} kept, {count - kept} rejected")
    for d in sorted(decisions, key=lambda d: -d.score):
        print(f"  {'keep  ' if d.kept else 'reject'} {d.score:6.3f}  {d.label}", flush=True)
    if first := warmup_sets(decisions, rule):
        print(f"[prefilter] warm-up: the first trials run {', '.join(d.label for d in first)}, knobs mid-range")


def prefilter(spec: SearchSpec, cache: StageCache, keys: StageKeys, run_dir: RunDir) -> PrefilterRecord:
    """Score and decide once per run; a resumed run reads the saved verdicts, and the score that made them (a run
    started before ``prefilter.score`` existed was ranked by ``latent``, whatever its space says now)."""
    path = run_dir.prefilter_json
    if path.exists():
        record = load_prefilter(path)
        print(f"[prefilter] verdicts read from {path}", flush=True)
    else:
        scores = score_relations(cache, keys, spec.relations.candidates, spec.stages.world.clip_len, spec.searcher.seed)
        decisions = decide(spec.relations.sets(), scores, spec.prefilter, str(spec.path))
        record = PrefilterRecord(spec.prefilter.score, scores, decisions)
        save_prefilter(path, record)
    print_decisions(record.decisions, score_label(record.score, spec.prefilter.aggregate), spec.prefilter)
    return record


def optuna_front(spec: SearchSpec, run_dir: RunDir) -> list[dict[str, Any]] | None:
    """The Pareto front as the Optuna study records it (multi-objective runs only)."""
    if not spec.multi_objective:
        return None
    study = optuna.load_study(study_name=spec.name, storage=study_storage(run_dir))
    names = [o.metric for o in spec.objectives]
    return [{"number": t.number, "values": dict(zip(names, t.values, strict=True)), "params": t.params}
            for t in study.best_trials]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C stops a run in every phase, as Tune's own handler does during the search: a process started in the
    # background of a script inherits SIGINT ignored, which would leave stage training unstoppable by it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(args)
    except (SpaceError, RunError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageJobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    spec, run_dir, cache, resuming = open_run(args)
    if args.dry_run:
        dry_run(spec, cache, args.address)
        return 0
    problems = unreadable_stages(cache, stage_keys(spec.stages, spec.relations.candidates))
    if problems:
        raise RunError("\n".join(problems))
    with contextlib.ExitStack() as held:
        if resuming:  # a run another search holds is refused before Ray starts
            held.enter_context(run_dir.hold())
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        start = time.monotonic()
        start_ray(args.address)  # before anything is written: a cluster that does not answer leaves no run behind
        # A local Ray this run started has the size it has; only a cluster it joined may grow.
        joined = cluster_address(args.address)[0] is not None
        nodes, autoscaled = cluster_nodes(), joined and autoscaling()
        check_resources(spec, "this cluster", nodes, autoscaled)
        side_by_side = stage_branches_side_by_side(spec.resources, nodes, autoscaled)
        if not resuming:
            run_dir.create(spec, cache)
            held.enter_context(run_dir.hold())
        return search(args, spec, run_dir, cache, resuming, side_by_side, start)


def search(
    args: argparse.Namespace,
    spec: SearchSpec,
    run_dir: RunDir,
    cache: StageCache,
    resuming: bool,
    side_by_side: bool,
    start: float,
) -> int:
    """The run itself, from its stages to its tables, while this process holds the run directory."""
    where = cluster_address(args.address)[1]
    print(f"[run] {spec.name}: {'resuming' if resuming else 'results in'} {run_dir.path} (Ray: {where})", flush=True)
    if resuming:
        left = remove_temporary_files(run_dir.path)
        if left:
            print(f"[run] removed {len(left)} temporary files of writes the interruption cut short", flush=True)
    try:
        keys = ensure_stages(spec.stages, spec.relations.candidates, cache, spec.resources, run_dir, side_by_side)
        references, quality = report_stages(spec, cache, keys)
        write_stage_quality(run_dir, quality, references)
        record = prefilter(spec, cache, keys, run_dir)
    except SpaceError:
        if not resuming:  # a keep rule that keeps nothing: no trial ran, so leave no half-made run behind
            shutil.rmtree(run_dir.path, ignore_errors=True)
        raise
    except KeyboardInterrupt:  # Tune handles Ctrl-C in the search itself; before it, this is the one place
        print(
            f"\n[run] interrupted before the search started (stages already trained stay in {cache.root}); "
            f"continue with: python search/run.py --resume {run_dir.path}",
            flush=True,
        )
        return INTERRUPTED_EXIT

    decisions, relation_values = record.decisions, record.relation_values()
    label = score_label(record.score, spec.prefilter.aggregate)
    set_scores = {d.label: d.score for d in decisions}
    trainable = make_trainable(spec, cache, keys, run_dir, set_scores)
    build = functools.partial(build_tuner, spec, trainable, decisions, relation_values, run_dir, references)
    tuner = restore_tuner(run_dir, trainable, build) if resuming else build()
    results = tuner.fit()

    reports = run_dir.reports
    records = [record_from_result(r, reports) for r in results]
    evaluations = num_evaluations(spec)
    rows = [trial_row(r, set_scores, evaluations, reports.attempts(r.trial_id), INTERRUPTED) for r in records]
    rows += rejected_rows(decisions) + reference_rows(references)
    table = trials_table(rows, relation_values, spec.objectives)
    write_tables(run_dir, table, decisions, label, references, spec.objectives, optuna_front(spec, run_dir))
    plotted = plotted_objective(spec.objectives)
    title = f"{spec.name}: {label} vs {metric_subject(plotted.metric)}"
    paths = [run_dir.pareto_png, run_dir.pareto_svg]
    pareto_plot(table, paths, references, title=title, objective=plotted, score_name=label)
    correlation = prefilter_correlation(table)
    title = f"{spec.name}: pre-filter vs training"
    prefilter_plot(table, run_dir.prefilter_png, correlation, title=title, score_name=label)
    best = write_best(run_dir, spec, table)
    write_summary(
        run_dir, spec, table, references, correlation, best, time.monotonic() - start, quality, score_name=label
    )

    done = table[table["status"] != "rejected_by_prefilter"]
    columns = ["trial_id", "relation_set", "set_score", "status", "mpjpe", "pa_mpjpe"]
    columns += [c for c in (METRIC_COLUMNS.get(o.metric, o.metric) for o in spec.objectives) if c not in columns]
    with pd.option_context("display.width", 120, "display.max_columns", len(columns)):
        print(done[columns].to_string(index=False))
    if best is not None:
        metric = spec.objective.metric if spec.objective.metric in ACCURACY_METRICS else OBJECTIVE
        print(f"[run] best: {best['relation_set']} at {accuracy_text(metric, best[metric])}; {run_dir.best_yaml}")
    elapsed = time.monotonic() - start
    unended = unended_trials(spec, table)
    if unended:
        print(
            f"[run] interrupted after {elapsed:.0f} s with {unended} of {spec.searcher.num_trials} trials not ended"
            f" (tables so far: {run_dir.summary_md}); continue with: python search/run.py --resume {run_dir.path}",
            flush=True,
        )
        return INTERRUPTED_EXIT
    print(f"[run] finished in {elapsed:.0f} s: {run_dir.summary_md}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

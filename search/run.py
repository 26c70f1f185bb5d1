"""Run a relation-set search: ``python search/run.py [--space spaces/smoke.yaml] [--out results]``.

Starts a local Ray when no ``--address`` is given, trains the shared stages once (cached), scores every
candidate relation set with the non-localness pre-filter, searches the kept sets and the tuned knobs
with Ray Tune + Optuna + ASHA (each trial a Ray Train job), and writes tables and plots into a new
run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd
import ray

from nlrd.pipeline import StageCache, source_only_metrics
from search.export import rejected_rows, trial_rows, trials_table, write_tables
from search.plots import pareto_plot
from search.prefilter import candidate_sets, decide, score_relations
from search.space import SpaceError, load_space
from search.stages import ensure_stages
from search.trainable import make_trainable
from search.tuner import build_tuner, num_evaluations

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "spaces" / "smoke.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="search/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=DEFAULT_SPACE, help="search space YAML (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="parent of run directories (default: %(default)s)"
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster address, e.g. 'auto' on a head node (default: start a local Ray)"
    )
    parser.add_argument("--name", default=None, help="run directory name (default: <space name>-<timestamp>)")
    return parser.parse_args(argv)


def start_ray(address: str | None) -> None:
    """Connect to ``address`` or start a local Ray, keeping its logs out of the user's terminal."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = load_space(args.space)
    except SpaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.monotonic()
    run_dir = (args.out / (args.name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}")).resolve()
    if run_dir.exists():
        print(f"error: run directory {run_dir} already exists; choose another --name or --out", file=sys.stderr)
        return 2
    run_dir.mkdir(parents=True)
    manifest = {"space": str(args.space.resolve()), "space_digest": spec.digest, "created": datetime.now().isoformat()}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (run_dir / "space.yaml").write_text(args.space.read_text())
    print(f"[run] {spec.name}: results in {run_dir}", flush=True)

    start_ray(args.address)
    cache = StageCache(args.out.resolve() / "cache")
    keys = ensure_stages(spec.stages, spec.relations.candidates, cache, spec.resources, str(run_dir))

    baseline = source_only_metrics(cache, keys)
    print(f"[stages] source only, before adaptation: target MPJPE {baseline['mpjpe']:.1f} mm", flush=True)

    sets = candidate_sets(spec.relations)
    scores = score_relations(cache, keys, spec.relations.candidates, spec.stages.world.clip_len, spec.searcher.seed)
    try:
        decisions = decide(sets, scores, spec.prefilter, str(spec.path))
    except SpaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = sum(d.kept for d in decisions)
    print(f"[prefilter] {len(sets)} relation sets scored, {kept} kept, {len(sets) - kept} rejected", flush=True)
    for d in sorted(decisions, key=lambda d: -d.score):
        print(f"  {'keep  ' if d.kept else 'reject'} {d.score:6.3f}  {d.label}", flush=True)

    tuner = build_tuner(spec, make_trainable(spec, cache, keys, str(run_dir)), decisions, run_dir)
    results = tuner.fit()

    rows = trial_rows(results, decisions, num_evaluations(spec)) + rejected_rows(decisions)
    table = trials_table(rows, scores)
    write_tables(run_dir, table, decisions, baseline)
    pareto_plot(table, run_dir / "pareto.png", baseline["mpjpe"], title=f"{spec.name}: non-localness vs target MPJPE")

    done = table[table["status"] != "rejected_by_prefilter"]
    with pd.option_context("display.width", 120, "display.max_columns", 8):
        print(done[["trial_id", "relation_set", "set_score", "status", "mpjpe", "pa_mpjpe"]].to_string(index=False))
    print(f"[run] finished in {time.monotonic() - start:.0f} s: {run_dir / 'trials.csv'}, {run_dir / 'pareto.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pre-filter quality: does a relation set's non-localness score rank sets by their trained target error?

``nice -n 10 .venv/bin/python -m bench.prefilter_quality --out bench/out/prefilter_quality``

Enumerates every relation set of size 1..``--max-size`` from the whole catalogue (``nlrd.relations``), trains each
at one small fixed fidelity with every seed in ``--seeds`` (plain nlrd calls, no Ray; stages cached in
``--cache``), and records every evaluation of every run in ``<out>/tabular.json``: a tabular benchmark that
``bench/search_efficiency.py`` replays.  The file is written after each run and finished runs are skipped, so an
interrupted run continues where it stopped.  Then it reports Spearman / Kendall of score vs trained MPJPE (two-level
bootstrap 95% intervals) against two baselines (random order, set size), and what keeping the top 10/25/50% would
have cost (recall, best rank, regret, compute saved): ``<out>/quality.md``, ``<out>/quality.json``,
``<out>/scatter.png``.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import cli, figures, stats
from nlrd.nonlocalness import AGGREGATES, NonLocalness
from nlrd.pipeline import StageCache, StageConfigs, load_stages, load_world, source_only_metrics, train_stages
from nlrd.relations import RELATION_NAMES
from nlrd.train.adapt import AdaptConfig, adapt
from nlrd.train.motion import MotionConfig
from nlrd.train.prior import PriorConfig
from nlrd.train.relation import RelationConfig
from nlrd.train.source import SourceConfig
from nlrd.world import WorldConfig
from search.prefilter import decide, parse_set_label, score_relations_here, set_label
from search.space import PrefilterSpec

KEEP_FRACTIONS = (0.10, 0.25, 0.50)
#: Random orders / tie-breaks averaged for the baselines' keep outcomes.
BASELINE_DRAWS = 1000


def small_configs(image_size: int) -> StageConfigs:
    """Shared stages at a size where ~100 adaptation runs fit in ~30 CPU-minutes: 8-frame clips, small world,
    the smoke space's stage lengths."""
    return StageConfigs(
        world=WorldConfig(
            image_size=image_size, clip_len=8, mocap_sequences=256, source_clips=64, target_clips=64, val_clips=16
        ),
        prior=PriorConfig(steps=600),
        motion=MotionConfig(steps=200),
        relation=RelationConfig(steps=200),
        source=SourceConfig(steps=1200),
    )


def enumerate_sets(names: tuple[str, ...], max_size: int) -> list[tuple[str, ...]]:
    """Every set of 1..``max_size`` relations, smallest first, members in catalogue order (as ``RelationsSpec``)."""
    return [c for k in range(1, max_size + 1) for c in itertools.combinations(names, k)]


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpus} CPU cores, {mem:.0f} GiB, Python {platform.python_version()}, torch {torch.__version__}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def same_fidelity(recorded: Any, current: Any) -> bool:
    """Equal on every field the table recorded; fields added to the configs since (at their defaults) are ignored,
    so a config gaining an option does not orphan a table."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return all(k in current and same_fidelity(v, current[k]) for k, v in recorded.items())
    return recorded == current


@dataclass
class Table:
    """The tabular benchmark: per-relation scores and, per set label and seed, every evaluation of the run."""

    meta: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    runs: dict[str, dict[str, dict[str, Any]]]

    @classmethod
    def load_or_new(cls, path: Path, meta: dict[str, Any]) -> Table:
        if path.is_file():
            data = json.loads(path.read_text())
            if not same_fidelity(data["meta"]["fidelity"], meta["fidelity"]):
                raise SystemExit(f"{path} was recorded at another fidelity; use another --out")
            return cls(data["meta"], data["scores"], data["runs"])
        return cls(meta, {}, {})

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    def merge_save(self, path: Path) -> None:
        """Save under a lock after taking in what other shards wrote since, so parallel shards lose nothing."""
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.is_file():
                disk = json.loads(path.read_text())
                self.scores = {**disk["scores"], **self.scores}
                for label, runs in disk["runs"].items():
                    self.runs[label] = {**runs, **self.runs.get(label, {})}
            self.save(path)


def train_run(cfg: AdaptConfig, stages: Any, world: Any) -> dict[str, Any]:
    """One adaptation: every report (step, mm errors, seconds since start) and the run's total seconds."""
    evals: list[dict[str, float]] = []
    start = time.perf_counter()

    def report(metrics: dict) -> None:
        evals.append(
            {**{k: float(metrics[k]) for k in ("step", "mpjpe", "pa_mpjpe")}, "seconds": time.perf_counter() - start}
        )

    adapt(cfg, stages, world.target_train, world.target_val, report=report)
    return {"evals": evals, "seconds": time.perf_counter() - start}


def collect(args: argparse.Namespace, table: Table, path: Path) -> None:
    """Train the stages (or find them cached), score every relation, then train every missing (set, seed)."""
    configs = small_configs(args.image_size)
    cache = StageCache(args.cache)
    start = time.perf_counter()
    keys = train_stages(configs, RELATION_NAMES, cache)
    table.meta.setdefault("stage_seconds", time.perf_counter() - start)
    table.meta["source_only"] = source_only_metrics(cache, keys)
    if not table.scores:
        scores = score_relations_here(str(cache.root), keys, RELATION_NAMES, configs.world.clip_len, seed=0)
        table.scores.update({name: asdict(value) for name, value in scores.items()})
        table.merge_save(path)
    world = load_world(cache, keys.world)
    base = AdaptConfig(**table.meta["fidelity"]["adapt"])
    sets = enumerate_sets(RELATION_NAMES, args.max_size)
    todo = [(s, seed) for s in sets for seed in args.seeds if str(seed) not in table.runs.get(set_label(s), {})]
    shard, shards = args.shard
    todo = todo[shard::shards]
    print(f"{len(sets)} sets x {len(args.seeds)} seeds; shard {shard}/{shards} trains {len(todo)} runs", flush=True)
    for i, (relations, seed) in enumerate(todo, 1):
        stages = load_stages(cache, keys, relations)
        run = train_run(replace(base, relations=relations, seed=seed), stages, world)
        table.runs.setdefault(set_label(relations), {})[str(seed)] = run
        table.merge_save(path)
        final = run["evals"][-1]["mpjpe"]
        print(
            f"[{i}/{len(todo)}] {set_label(relations)} seed {seed}: MPJPE {final:.1f} mm ({run['seconds']:.1f} s)",
            flush=True,
        )


@dataclass(frozen=True)
class SetRow:
    """One relation set in the analysis: its score per aggregate, per-seed final MPJPE, and its training cost."""

    label: str
    size: int
    score: dict[str, float]
    final_mpjpe: list[float]
    seconds: float

    @property
    def mpjpe(self) -> float:
        return float(np.mean(self.final_mpjpe))


def set_rows(table: Table, seeds: list[int]) -> list[SetRow]:
    """Sets that have a run for every seed, scored as the pre-filter scores them (``decide``) per aggregate."""
    scores = {name: NonLocalness(**{k: v for k, v in s.items() if k != "seconds"}) for name, s in table.scores.items()}
    rows = []
    for label, runs in table.runs.items():
        if not all(str(s) in runs for s in seeds):
            continue
        relations = parse_set_label(label)
        per_agg = {
            agg: decide([relations], scores, PrefilterSpec(enabled=False, aggregate=agg), "<bench>")[0].score
            for agg in AGGREGATES
        }
        rows.append(
            SetRow(
                label=label,
                size=len(relations),
                score=per_agg,
                final_mpjpe=[runs[str(s)]["evals"][-1]["mpjpe"] for s in seeds],
                seconds=float(np.mean([runs[str(s)]["seconds"] for s in seeds])),
            )
        )
    return rows


def keep_table(rows: list[SetRow], aggregate: str, scores: dict[str, NonLocalness]) -> dict[str, dict[float, Any]]:
    """Keep outcomes at each fraction for the pre-filter (through ``decide``), set size and random order.

    Compute is counted in trials (all run the same steps and evaluations): the recorded wall seconds carry the
    load of a shared machine (8-90 s for the same work), too noisy to weight by.  The pre-filter's own cost is
    measured by ``bench/prefilter_cost.py``.
    """
    error = [r.mpjpe for r in rows]
    cost = [1.0] * len(rows)
    n = len(rows)
    rng = np.random.default_rng(0)
    out: dict[str, dict[float, Any]] = {"pre-filter": {}, "set size": {}, "random": {}}
    sets = [parse_set_label(r.label) for r in rows]
    for f in KEEP_FRACTIONS:
        decisions = decide(sets, scores, PrefilterSpec(keep_fraction=f, aggregate=aggregate), "<bench>")
        out["pre-filter"][f] = stats.keep_outcome([i for i, d in enumerate(decisions) if d.kept], error, cost)
        k = stats.keep_count(n, f)
        sizes = [r.size for r in rows]
        out["set size"][f] = stats.mean_outcome(
            [stats.keep_outcome(stats.top_by_score(sizes, k, rng), error, cost) for _ in range(BASELINE_DRAWS)]
        )
        out["random"][f] = stats.mean_outcome(
            [stats.keep_outcome(rng.permutation(n)[:k].tolist(), error, cost) for _ in range(BASELINE_DRAWS)]
        )
    return out


def analyse(table: Table, seeds: list[int], out: Path, aggregate: str) -> dict[str, Any]:
    """Correlations, keep outcomes and the scatter plot; returns what ``quality.json`` holds."""
    rows = set_rows(table, seeds)
    scores = {name: NonLocalness(**{k: v for k, v in s.items() if k != "seconds"}) for name, s in table.scores.items()}
    runs = [r.final_mpjpe for r in rows]
    neg_runs = [[-v for v in r] for r in runs]  # correlate with -MPJPE: positive = ranks well
    rng = np.random.default_rng(1)
    candidates = {
        **{f"non-localness ({agg})": [r.score[agg] for r in rows] for agg in AGGREGATES},
        "set size": [float(r.size) for r in rows],
        "random order": rng.permutation(len(rows)).astype(float).tolist(),
    }
    correlations = {
        name: {
            "spearman": stats.bootstrap_correlation(score, neg_runs, stats.spearman),
            "kendall": stats.bootstrap_correlation(score, neg_runs, stats.kendall),
        }
        for name, score in candidates.items()
    }
    # The random-order baseline's correlation is itself random: its null spread over many orders.
    null = np.array([stats.spearman(rng.permutation(len(rows)), [r.mpjpe for r in rows]) for _ in range(2000)])
    keep = keep_table(rows, aggregate, scores)
    seed_sd = float(np.mean([np.std(r, ddof=1) for r in runs])) if len(seeds) > 1 else 0.0
    payload = {
        "sets": len(rows),
        "seeds": seeds,
        "aggregate": aggregate,
        "source_only": table.meta["source_only"],
        "best": min(rows, key=lambda r: r.mpjpe).label,
        "best_mpjpe": min(r.mpjpe for r in rows),
        "worst_mpjpe": max(r.mpjpe for r in rows),
        "mean_seed_sd_mpjpe": seed_sd,
        "correlations": {k: {m: asdict(v) for m, v in c.items()} for k, c in correlations.items()},
        "random_order_null_spearman_95": np.percentile(null, [2.5, 97.5]).tolist(),
        "keep": {name: {str(f): asdict(o) for f, o in per.items()} for name, per in keep.items()},
        "rows": [asdict(r) | {"mpjpe": r.mpjpe} for r in rows],
    }
    (out / "quality.json").write_text(json.dumps(payload, indent=1))
    (out / "quality.md").write_text(markdown(payload, correlations, keep))
    scatter(rows, aggregate, table.meta["source_only"]["mpjpe"], correlations, out / "scatter.png")
    return payload


def markdown(payload: dict[str, Any], correlations: dict, keep: dict) -> str:
    lines = [
        f"{payload['sets']} relation sets x seeds {payload['seeds']}; set error = mean over seeds of the final "
        f"target-validation MPJPE. Best set `{payload['best']}` {payload['best_mpjpe']:.1f} mm, worst "
        f"{payload['worst_mpjpe']:.1f} mm, source only {payload['source_only']['mpjpe']:.1f} mm; mean per-set seed "
        f"std {payload['mean_seed_sd_mpjpe']:.1f} mm.",
        "",
        "Rank correlation with -MPJPE (positive = higher score, lower error), two-level bootstrap 95% interval "
        "(sets and seeds resampled):",
        "",
        "| ranking | Spearman | Kendall |",
        "|---|---|---|",
    ]
    for name, c in correlations.items():
        lines.append(f"| {name} | {c['spearman']} | {c['kendall']} |")
    lo, hi = payload["random_order_null_spearman_95"]
    lines += [
        "",
        f"Random order over 2000 permutations: Spearman 95% range [{lo:+.2f}, {hi:+.2f}].",
        "",
        f"Keeping the top fraction (pre-filter score = `{payload['aggregate']}` of members' normalised "
        "non-localness; random and set size averaged over 1000 orders / tie-breaks):",
        "",
        "| keep | ranking | top-1 recall | top-5 recall | best true rank kept | regret (mm) | regret (%) | "
        "compute saved (trials) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in KEEP_FRACTIONS:
        for name in ("pre-filter", "set size", "random"):
            o = keep[name][f]
            lines.append(
                f"| {f:.0%} | {name} | {o.top1:.2f} | {o.top5:.2f} | {o.best_rank:.1f} | {o.regret:.1f} | "
                f"{o.regret_pct:.1f} | {o.saved:.0%} |"
            )
    return "\n".join(lines) + "\n"


def scatter(rows: list[SetRow], aggregate: str, source_only: float, correlations: dict, path: Path) -> None:
    """Set score (x) vs trained MPJPE (y, mean over seeds, bar = seed range), coloured by set size."""
    x = np.array([r.score[aggregate] for r in rows])
    y = np.array([r.mpjpe for r in rows])
    lo = y - np.array([min(r.final_mpjpe) for r in rows])
    hi = np.array([max(r.final_mpjpe) for r in rows]) - y
    with figures.axes(path, figsize=(6.4, 4.4)) as ax:
        ax.errorbar(x, y, yerr=[lo, hi], fmt="none", ecolor="0.7", lw=0.8, zorder=1)
        for size, marker in ((1, "o"), (2, "s"), (3, "^")):
            sel = np.array([r.size == size for r in rows])
            if sel.any():
                ax.scatter(x[sel], y[sel], marker=marker, s=22, zorder=2, label=f"{size} relation{'s' * (size > 1)}")
        best = int(np.argmin(y))
        ax.annotate(rows[best].label, (x[best], y[best]), fontsize=7, xytext=(4, -10), textcoords="offset points")
        ax.axhline(source_only, ls="--", c="0.4", lw=0.8, label="source only")
        c = correlations[f"non-localness ({aggregate})"]
        ax.set_title(f"Spearman {c['spearman']}, Kendall {c['kendall']} (vs -MPJPE)", fontsize=8)
        ax.set_xlabel(f"set score ({aggregate} of normalised non-localness)")
        ax.set_ylabel("target MPJPE after adaptation (mm)")


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.prefilter_quality", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/prefilter_quality"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-size", type=int, default=2, help="largest relation set enumerated")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="adaptation steps per run")
    parser.add_argument("--eval-every", type=int, default=10, help="steps between recorded evaluations")
    parser.add_argument("--aggregate", default="mean", choices=AGGREGATES, help="set score of the keep rule")
    parser.add_argument("--analyse-only", action="store_true", help="analyse what the table holds, train nothing")
    parser.add_argument(
        "--shard",
        type=int,
        nargs=2,
        default=(0, 1),
        metavar=("I", "N"),
        help="train only every N-th missing run from the I-th: N processes fill one table",
    )
    return parser


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    adapt_cfg = AdaptConfig(relations=(), steps=args.steps, eval_every=args.eval_every, batch_clips=4)
    # Through JSON once, so it compares equal to the copy read back from tabular.json (tuples become lists).
    fidelity = json.loads(json.dumps({"stages": asdict(small_configs(args.image_size)), "adapt": asdict(adapt_cfg)}))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "commit": git_commit(),
        "command": " ".join(
            [
                parser.prog,
                f"--seeds {' '.join(map(str, args.seeds))}",
                f"--max-size {args.max_size}",
                f"--image-size {args.image_size}",
                f"--steps {args.steps}",
                f"--eval-every {args.eval_every}",
            ]
        ),
        "fidelity": fidelity,
    }
    path = args.out / "tabular.json"
    table = Table.load_or_new(path, meta)
    if not args.analyse_only:
        start = time.perf_counter()
        collect(args, table, path)
        print(f"[time] collection: {time.perf_counter() - start:.0f} s", flush=True)
    payload = analyse(table, args.seeds, args.out, args.aggregate)
    print((args.out / "quality.md").read_text())
    print(f"best set {payload['best']} {payload['best_mpjpe']:.1f} mm")


if __name__ == "__main__":
    main()

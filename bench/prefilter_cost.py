"""Pre-filter cost: scoring every candidate against one full trial, measured in the same run.

``nice -n 10 .venv/bin/python -m bench.prefilter_cost --out bench/out/prefilter_cost``

On the smoke space's shared stages (``spaces/smoke.yaml``, trained into ``--cache`` when missing, with a relation
transformer for every catalogue relation), one thread throughout:

* per-relation scoring as the pre-filter's Ray tasks run it (each loads the frozen prior, motion embedding and
  world, and a relation's task its transformer): ``search.prefilter.level_baselines`` once per level (the random-pair
  baselines all relations of a level share), then ``search.prefilter.score_relation`` for every relation of the
  catalogue (every candidate of ``nlrd.relation_scores`` on the held-out mocap); the best of ``--repeats`` each;
* set scoring and the keep decision: ``search.prefilter.decide`` on 10, 100 and 1000 sets.  The catalogue has only
  9 relations (511 non-empty sets), so the 100 and 1000 sets are drawn from a synthetic catalogue of 30 relations
  whose values repeat the measured ones: a set's score is an aggregate of its members' values, so the decision's
  cost depends on the number of sets and their sizes, not on which relations they hold;
* one full trial: ``nlrd.train.adapt`` at the smoke space's settings (40 steps, an evaluation every 10) on a
  two-relation set, including loading its stages, as ``search.trainable.adapt_loop`` does (Ray's launch excluded).

Every time is taken twice: wall seconds and this process's CPU seconds.  Everything runs on one thread, so CPU
seconds are the compute spent, and they stay meaningful when other users load the machine; ratios use them.

Writes ``<out>/cost.md`` and ``<out>/cost.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench import cli
from bench.prefilter_quality import git_commit, machine
from nlrd.pipeline import StageCache, load_stages, load_world, train_stages
from nlrd.relation_scores import RelationScores
from nlrd.relations import RELATION_NAMES
from nlrd.train.adapt import adapt
from search.prefilter import LevelBaselines, decide, level_baselines, relation_levels, score_relation
from search.space import SearchSpec, load_space

SET_COUNTS = (10, 100, 1000)
SYNTHETIC_RELATIONS = 30


@dataclass(frozen=True)
class Cost:
    """Seconds of one measured piece of work: wall clock and this process's CPU."""

    wall: float
    cpu: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall + other.wall, self.cpu + other.cpu)


def timed(fn: Callable[[], Any]) -> tuple[Any, Cost]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, Cost(time.perf_counter() - wall, time.process_time() - cpu)


def synthetic_sets(
    count: int, scores: dict[str, RelationScores], seed: int = 0
) -> tuple[list, dict[str, RelationScores]]:
    """``count`` distinct sets of 1-3 relations over a synthetic catalogue whose values cycle through ``scores``."""
    values = list(scores.values())
    catalogue = {f"r{i:02d}": values[i % len(values)] for i in range(SYNTHETIC_RELATIONS)}
    rng = random.Random(seed)
    sets: set[tuple[str, ...]] = set()
    while len(sets) < count:
        sets.add(tuple(sorted(rng.sample(sorted(catalogue), rng.randint(1, 3)))))
    return sorted(sets), catalogue


def time_decide(spec: SearchSpec, sets: list, scores: dict[str, RelationScores]) -> float:
    """Median CPU seconds of one ``decide`` call over the sets (the pre-filter's set scoring and keep rule)."""
    timer = timeit.Timer(lambda: decide(sets, scores, spec.prefilter, str(spec.path)), timer=time.process_time)
    number, _ = timer.autorange()
    return sorted(t / number for t in timer.repeat(repeat=5, number=number))[2]


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.prefilter_cost", __doc__)
    parser.add_argument("--space", type=Path, default=Path("spaces/smoke.yaml"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/prefilter_cost"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--repeats", type=int, default=2, help="timings of each relation's scoring (best kept)")
    parser.add_argument("--trial-set", nargs="+", default=["flip", "flip_backward"], help="relations of the trial")
    return parser


def main() -> None:
    args = arg_parser().parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = load_space(args.space)
    cache = StageCache(args.cache)
    start = time.perf_counter()
    keys = train_stages(spec.stages, RELATION_NAMES, cache)
    stage_seconds = time.perf_counter() - start
    clip_len = spec.stages.world.clip_len

    def best_of(fn: Callable[[], Any]) -> tuple[Any, Cost]:
        runs = [timed(fn) for _ in range(args.repeats)]
        return runs[0][0], min((cost for _, cost in runs), key=lambda c: c.cpu)

    levels = relation_levels(RELATION_NAMES, clip_len)
    baselines: dict[str, LevelBaselines] = {}
    baseline_cost: dict[str, Cost] = {}
    for level in sorted(set(levels.values()), reverse=True):
        baselines[level], baseline_cost[level] = best_of(
            lambda level=level: level_baselines(str(cache.root), keys, level, clip_len, seed=spec.searcher.seed)
        )
        print(f"baselines {level}: {baseline_cost[level]} ({baselines[level].baselines})", flush=True)
    relation_cost: dict[str, Cost] = {}
    scores: dict[str, RelationScores] = {}
    score = spec.prefilter.score
    for name in RELATION_NAMES:
        scores[name], relation_cost[name] = best_of(
            lambda name=name: score_relation(str(cache.root), keys, name, clip_len, baselines[levels[name]])
        )
        print(f"score {name}: {relation_cost[name]} ({score} {scores[name].candidates[score]:.3f})", flush=True)

    smoke_sets = spec.relations.sets()
    decide_seconds = {len(smoke_sets): time_decide(spec, smoke_sets, scores)}
    for count in SET_COUNTS:
        if count != len(smoke_sets):
            sets, catalogue = synthetic_sets(count, scores)
            decide_seconds[count] = time_decide(spec, sets, catalogue)

    trial_relations = tuple(args.trial_set)
    lrs = {p.name: math.sqrt(p.low * p.high) for p in spec.params}  # the log-uniform ranges' midpoints
    cfg = spec.adapt_config(trial_relations, lrs)
    (stages, world), load_cost = timed(
        lambda: (load_stages(cache, keys, trial_relations), load_world(cache, keys.world))
    )
    reports: list[dict] = []
    _, adapt_cost = timed(lambda: adapt(cfg, stages, world.target_train, world.target_val, report=reports.append))
    trial = load_cost + adapt_cost
    print(f"one trial: {trial} ({load_cost} loading), final MPJPE {reports[-1]['mpjpe']:.1f}", flush=True)

    smoke_relations = spec.relations.candidates
    smoke_levels = {levels[n] for n in smoke_relations}
    smoke_scoring = sum(relation_cost[n].cpu for n in smoke_relations) + sum(baseline_cost[v].cpu for v in smoke_levels)
    catalogue_scoring = sum(c.cpu for c in relation_cost.values()) + sum(c.cpu for c in baseline_cost.values())
    growth = [
        {
            "sets": count,
            "relation_scoring_cpu_s": catalogue_scoring,
            "decide_cpu_s": decide_seconds[count],
            "total_cpu_s": catalogue_scoring + decide_seconds[count],
            "ratio_to_trial": (catalogue_scoring + decide_seconds[count]) / trial.cpu,
        }
        for count in SET_COUNTS
    ]
    smoke_total = smoke_scoring + decide_seconds[len(smoke_sets)]
    payload = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "commit": git_commit(),
        "command": "python -m bench.prefilter_cost " + f"--space {args.space} --repeats {args.repeats}",
        "stage_seconds": stage_seconds,
        "baseline_seconds": {level: asdict(c) for level, c in baseline_cost.items()},
        "relation_seconds": {n: asdict(c) for n, c in relation_cost.items()},
        "score": score,
        "scores": {n: asdict(s) | {"candidates": s.candidates} for n, s in scores.items()},
        "decide_cpu_seconds": decide_seconds,
        "trial": {
            "relations": trial_relations,
            "adapt": asdict(cfg),
            "seconds": asdict(trial),
            "load_seconds": asdict(load_cost),
            "reports": reports,
        },
        "smoke": {
            "relations": list(smoke_relations),
            "sets": len(smoke_sets),
            "total_cpu_s": smoke_total,
            "ratio_to_trial": smoke_total / trial.cpu,
            "ratio_to_search": smoke_total / (trial.cpu * spec.searcher.num_trials),
        },
        "growth": growth,
    }
    (args.out / "cost.json").write_text(json.dumps(payload, indent=1))
    text = markdown(payload, spec)
    (args.out / "cost.md").write_text(text)
    print(text)


def markdown(p: dict, spec: SearchSpec) -> str:
    trial = p["trial"]
    smoke = p["smoke"]
    t, load = trial["seconds"], trial["load_seconds"]
    lines = [
        f"One full trial (smoke settings: {trial['adapt']['steps']} steps, evaluation every "
        f"{trial['adapt']['eval_every']}, `{'+'.join(trial['relations'])}`, stages loaded): {t['cpu']:.1f} CPU s "
        f"({t['wall']:.1f} s wall), of which {load['cpu']:.1f} CPU s loading. Times in CPU seconds of one thread "
        "(the machine was shared; wall in cost.json).",
        "",
        f"| relation | level | scoring (CPU s) | scoring (wall s) | latent | {p['score']} (the space's score) |",
        "|---|---|---|---|---|---|",
    ]
    for level, c in p["baseline_seconds"].items():
        lines.append(f"| random-pair baselines, shared | {level} | {c['cpu']:.2f} | {c['wall']:.2f} | | |")
    for name, c in p["relation_seconds"].items():
        s = p["scores"][name]
        lines.append(
            f"| {name} | {s['nonlocalness']['level']} | {c['cpu']:.2f} | {c['wall']:.2f} | "
            f"{s['candidates']['latent']:.3f} | {s['candidates'][p['score']]:.3f} |"
        )
    lines += [
        "",
        f"Smoke space pre-filter ({len(smoke['relations'])} relations, {smoke['sets']} sets): "
        f"{smoke['total_cpu_s']:.2f} CPU s = **{smoke['ratio_to_trial']:.1%} of one trial** "
        f"({smoke['ratio_to_search']:.1%} of the {spec.searcher.num_trials}-trial search's adaptation). "
        "Target <= 0.5% of one trial.",
        "",
        "| candidate sets | per-relation scoring, whole catalogue (CPU s) | set scores + keep decision (CPU ms) | "
        "total (CPU s) | vs one trial |",
        "|---|---|---|---|---|",
    ]
    for g in p["growth"]:
        lines.append(
            f"| {g['sets']} | {g['relation_scoring_cpu_s']:.2f} | {1000 * g['decide_cpu_s']:.3f} | "
            f"{g['total_cpu_s']:.2f} | {g['ratio_to_trial']:.1%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

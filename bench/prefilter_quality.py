"""Pre-filter quality: which label-free relation score ranks relation sets by their trained target error?

``nice -n 10 .venv/bin/python -m bench.prefilter_quality --out bench/out/prefilter_quality``
``nice -n 10 .venv/bin/python -m bench.prefilter_quality --space spaces/smoke.yaml --sets singles-and-flip-pairs``
(the second with ``--seeds 0 1 2 --out bench/out/prefilter_quality_smoke``: the search's own config)

Trains relation sets from the whole catalogue (``nlrd.relations``) with every seed in ``--seeds`` (plain nlrd calls,
no Ray; stages cached in ``--cache``), and records every evaluation of every run in ``<out>/tabular.json``: a tabular
benchmark that ``bench/search_efficiency.py`` replays.  The file is written after each run and finished runs are
skipped, so an interrupted run continues where it stopped; ``--shard I N`` lets N processes fill one table.

Fidelity: without ``--space``, one small fixed fidelity (``small_configs``, 60 adaptation steps).  With ``--space``,
the config that space's search uses: its stages (world and gap included), its fixed ``adapt`` section and every
tuned knob at the middle of its range (where the search's warm-up trials put them); ``--image-size``, ``--steps`` and
``--eval-every`` replace that fidelity's value when given.  ``--sets all`` trains every set of 1..``--max-size``
relations; ``--sets singles-and-flip-pairs`` each relation alone and beside ``flip`` (17 sets).

Every relation is scored by each candidate of ``nlrd.relation_scores`` (held-out mocap through the frozen stages,
no labels; the space's searcher seed, else 0), and a set by each candidate under each aggregate (mean, max, min,
sum).  The analysis reports Spearman / Kendall of every such ranking with -PA-MPJPE and -MPJPE of the final
evaluation (mean over seeds; two-level bootstrap 95% intervals), against set size and random order, sorted by the
lower bound of the PA-MPJPE Spearman interval; it picks the candidate with the highest lower bound, says whether it
clears the bar (lower bound > +0.3, point >= +0.6) and set size's lower bound, and what keeping its top 10/25/50%
would have cost beside the pre-filter's rule (``--score`` under ``--aggregate``: default the space's ``prefilter``,
else ``latent`` under ``mean``, the rule of the tables recorded without a space): ``<out>/quality.md``,
``<out>/quality.json``, ``<out>/scatter.png``.  ``--analyse-only`` re-reads the table; tables written before the
candidates existed hold the latent score only, which the analysis then ranks alone.
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
from nlrd.nonlocalness import AGGREGATES, NonLocalness, set_score
from nlrd.pipeline import (
    StageCache,
    StageConfigs,
    StageKeys,
    heldout_mocap,
    load_stages,
    load_world,
    source_only_metrics,
    train_stages,
)
from nlrd.relation_scores import CANDIDATES, RelationScores, score_relations
from nlrd.relations import RELATION_NAMES, get_relation
from nlrd.train.adapt import AdaptConfig, adapt
from nlrd.train.motion import MotionConfig
from nlrd.train.prior import PriorConfig
from nlrd.train.relation import RelationConfig
from nlrd.train.source import SourceConfig
from nlrd.world import WorldConfig
from search.prefilter import parse_set_label, set_label
from search.space import SpaceError, load_space

KEEP_FRACTIONS = (0.10, 0.25, 0.50)
#: Random orders / tie-breaks averaged for the baselines' keep outcomes.
BASELINE_DRAWS = 1000
#: Bootstrap resamples of every correlation interval.
RESAMPLES = 2000
#: The target errors sets are ranked by, PA-MPJPE first: the choice of a candidate reads it.
METRICS = {"pa_mpjpe": "PA-MPJPE", "mpjpe": "MPJPE"}
#: A ranking worth wiring into the search: Spearman with -PA-MPJPE whose interval's lower bound exceeds ``BAR_LOW``
#: and whose point reaches ``BAR_POINT``.
BAR_LOW = 0.3
BAR_POINT = 0.6
SET_CHOICES = ("all", "singles-and-flip-pairs")
#: The baseline rankings every candidate is measured against.
SET_SIZE = "set size"
RANDOM_ORDER = "random order"


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


def singles_and_flip_pairs(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each relation alone, then ``flip`` with each other one (members in catalogue order): what a relation does on
    its own and beside the paper's first choice, at a fraction of the cost of every pair."""
    pairs = [tuple(sorted(("flip", name), key=names.index)) for name in names if name != "flip"]
    return [(name,) for name in names] + pairs


def candidate_sets(choice: str, names: tuple[str, ...], max_size: int) -> list[tuple[str, ...]]:
    """The relation sets ``--sets`` names (``SET_CHOICES``)."""
    if choice == "all":
        return enumerate_sets(names, max_size)
    if choice == "singles-and-flip-pairs":
        return singles_and_flip_pairs(names)
    raise ValueError(f"unknown set choice {choice!r}; allowed: {', '.join(SET_CHOICES)}")


@dataclass(frozen=True)
class Study:
    """What one table measures at: the stages and the adaptation every run shares (relations and seed aside), and
    the generator seed, relation score and aggregate the search's pre-filter would score with."""

    stages: StageConfigs
    adapt: AdaptConfig
    score_seed: int = 0
    score: str = "latent"
    aggregate: str = "mean"

    def fidelity(self) -> dict[str, Any]:
        """Stages and adaptation through JSON once, so they compare equal to the copy read back from
        ``tabular.json`` (tuples become lists)."""
        return json.loads(json.dumps({"stages": asdict(self.stages), "adapt": asdict(self.adapt)}, default=str))


def small_study() -> Study:
    return Study(small_configs(32), AdaptConfig(relations=(), steps=60, eval_every=10, batch_clips=4))


def space_study(path: Path) -> Study:
    """The config ``path``'s search runs at: its stages, its fixed adaptation fields, every tuned knob at the middle
    of its range (``search.tuner.warmup_points``), its searcher seed and pre-filter score and aggregate."""
    spec = load_space(path)
    adapt_cfg = spec.adapt_config((), {param.name: param.middle() for param in spec.params})
    return Study(spec.stages, adapt_cfg, spec.searcher.seed, spec.prefilter.score, spec.prefilter.aggregate)


def study_from_args(args: argparse.Namespace) -> Study:
    """``--space``'s study (else the small fidelity's) with ``--image-size``, ``--steps``, ``--eval-every``,
    ``--score`` and ``--aggregate`` replacing its values where given."""
    study = small_study() if args.space is None else space_study(args.space)
    if args.image_size is not None:
        world = replace(study.stages.world, image_size=args.image_size)
        study = replace(study, stages=replace(study.stages, world=world))
    for name in ("steps", "eval_every"):
        if getattr(args, name) is not None:
            study = replace(study, adapt=replace(study.adapt, **{name: getattr(args, name)}))
    for name in ("score", "aggregate"):
        if getattr(args, name) is not None:
            study = replace(study, **{name: getattr(args, name)})
    return study


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


def score_record(scores: RelationScores) -> dict[str, Any]:
    """A relation's entry in the table: every ingredient, the ratios made of them and every candidate score."""
    return asdict(scores) | {
        "support_ratio": scores.support_ratio,
        "closed_share": scores.closed_share,
        "candidates": scores.candidates,
    }


def record_candidates(record: dict[str, Any]) -> dict[str, float]:
    """A relation's candidate scores; an entry written before the candidates existed holds the latent one only."""
    return record["candidates"] if "candidates" in record else {"latent": record["normalised"]}


def record_nonlocalness(record: dict[str, Any]) -> NonLocalness:
    """A relation's latent non-localness, from an entry of either kind (``score_record``, or ``NonLocalness``)."""
    fields = record.get("nonlocalness", record)
    return NonLocalness(**{name: fields[name] for name in NonLocalness.__dataclass_fields__})


def record_scores(record: dict[str, Any]) -> RelationScores:
    """A relation's scores from its entry; one written before the candidates existed holds the latent score only
    (``RelationScores.latent_only``)."""
    if "candidates" in record:
        return RelationScores.from_dict(record)
    return RelationScores.latent_only(record_nonlocalness(record))


def table_scores(table: Table) -> dict[str, RelationScores]:
    """Every relation's scores, as ``search.prefilter.decide`` ranks by them."""
    return {name: record_scores(record) for name, record in table.scores.items()}


def score_here(
    cache: StageCache, keys: StageKeys, mocap: torch.Tensor, clip_len: int, seed: int
) -> dict[str, RelationScores]:
    """Every catalogue relation's candidate ingredients through the cached stages, on held-out ``mocap``."""
    stages = load_stages(cache, keys, RELATION_NAMES)
    relations = [get_relation(name, clip_len) for name in RELATION_NAMES]
    return score_relations(stages.prior, stages.motion, stages.transformers, mocap, relations, clip_len, seed)


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


def collect(args: argparse.Namespace, study: Study, table: Table, path: Path) -> None:
    """Train the stages (or find them cached), score every relation by every candidate (unless the table has),
    then train every missing (set, seed)."""
    cache = StageCache(args.cache)
    start = time.perf_counter()
    keys = train_stages(study.stages, RELATION_NAMES, cache)
    table.meta.setdefault("stage_seconds", time.perf_counter() - start)
    table.meta["source_only"] = source_only_metrics(cache, keys)
    world = load_world(cache, keys.world)
    if not all("candidates" in table.scores.get(name, {}) for name in RELATION_NAMES):
        clip_len = study.stages.world.clip_len
        scores = score_here(cache, keys, heldout_mocap(world), clip_len, study.score_seed)
        table.scores.update({name: score_record(value) for name, value in scores.items()})
        table.merge_save(path)
    base = AdaptConfig(**table.meta["fidelity"]["adapt"])
    sets = candidate_sets(args.sets, RELATION_NAMES, args.max_size)
    todo = [(s, seed) for s in sets for seed in args.seeds if str(seed) not in table.runs.get(set_label(s), {})]
    shard, shards = args.shard
    todo = todo[shard::shards]
    print(f"{len(sets)} sets x {len(args.seeds)} seeds; shard {shard}/{shards} trains {len(todo)} runs", flush=True)
    for i, (relations, seed) in enumerate(todo, 1):
        stages = load_stages(cache, keys, relations)
        run = train_run(replace(base, relations=relations, seed=seed), stages, world)
        table.runs.setdefault(set_label(relations), {})[str(seed)] = run
        table.merge_save(path)
        final = run["evals"][-1]
        print(
            f"[{i}/{len(todo)}] {set_label(relations)} seed {seed}: PA-MPJPE {final['pa_mpjpe']:.1f} mm, "
            f"MPJPE {final['mpjpe']:.1f} mm ({run['seconds']:.1f} s)",
            flush=True,
        )


def ranking_name(candidate: str, aggregate: str) -> str:
    """How a candidate under an aggregate is named in the analysis: ``"pose (mean)"``."""
    return f"{candidate} ({aggregate})"


@dataclass(frozen=True)
class SetRow:
    """One relation set in the analysis: its score under every ranking (``ranking_name``), its per-seed final
    error under each of ``METRICS``, and its training cost."""

    label: str
    size: int
    score: dict[str, float]
    final: dict[str, list[float]]
    seconds: float

    def error(self, metric: str) -> float:
        """Mean over seeds of the final evaluation's ``metric`` (mm)."""
        return float(np.mean(self.final[metric]))

    @property
    def mpjpe(self) -> float:
        return self.error("mpjpe")


def set_rows(table: Table, seeds: list[int]) -> list[SetRow]:
    """Sets that have a run for every seed, scored by every candidate that every relation of the table holds, under
    every aggregate (``nlrd.nonlocalness.set_score``, as ``search.prefilter.decide`` scores sets)."""
    values = {name: record_candidates(record) for name, record in table.scores.items()}
    candidates = [c for c in CANDIDATES if all(c in v for v in values.values())]
    rows = []
    for label, runs in table.runs.items():
        if not all(str(s) in runs for s in seeds):
            continue
        relations = parse_set_label(label)
        score = {
            ranking_name(c, agg): set_score([values[name][c] for name in relations], agg)
            for c in candidates
            for agg in AGGREGATES
        }
        rows.append(
            SetRow(
                label=label,
                size=len(relations),
                score=score,
                final={m: [runs[str(s)]["evals"][-1][m] for s in seeds] for m in METRICS},
                seconds=float(np.mean([runs[str(s)]["seconds"] for s in seeds])),
            )
        )
    return rows


def correlate(score: list[float], rows: list[SetRow], metric: str, resamples: int) -> dict[str, stats.Interval]:
    """Spearman and Kendall of ``score`` with -``metric`` (positive: higher score, lower error), two-level bootstrap
    95% intervals (sets and seeds resampled)."""
    negated = [[-v for v in r.final[metric]] for r in rows]
    return {
        "spearman": stats.bootstrap_correlation(score, negated, stats.spearman, resamples=resamples),
        "kendall": stats.bootstrap_correlation(score, negated, stats.kendall, resamples=resamples),
    }


@dataclass(frozen=True)
class Choice:
    """The candidate ranking with the highest lower bound of Spearman with -PA-MPJPE, against the bar and set size
    (``set_size``: set size's interval)."""

    ranking: str
    spearman: stats.Interval
    set_size: stats.Interval

    @property
    def meets_bar(self) -> bool:
        return self.spearman.low > BAR_LOW and self.spearman.value >= BAR_POINT

    @property
    def beats_set_size(self) -> bool:
        return self.spearman.low > self.set_size.low

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"meets_bar": self.meets_bar, "beats_set_size": self.beats_set_size}


def choose(correlations: dict[str, dict[str, dict[str, stats.Interval]]], candidates: list[str]) -> Choice:
    """The rule "highest bootstrap lower bound" over ``candidates`` (the earlier one on a tie)."""
    best = max(candidates, key=lambda name: correlations[name]["pa_mpjpe"]["spearman"].low)
    return Choice(best, correlations[best]["pa_mpjpe"]["spearman"], correlations[SET_SIZE]["pa_mpjpe"]["spearman"])


def keep_table(rows: list[SetRow], rankings: dict[str, list[float]], metric: str) -> dict[str, dict[float, Any]]:
    """Keep outcomes under ``metric`` at each fraction for each named ranking (its top ``ceil(f n)`` sets, ties to
    the earlier set, as ``search.prefilter.decide`` keeps), set size and random order (averaged over
    ``BASELINE_DRAWS`` tie-breaks / orders).

    Compute is counted in trials (all run the same steps and evaluations): the recorded wall seconds carry the
    load of a shared machine (8-90 s for the same work), too noisy to weight by.  The pre-filter's own cost is
    measured by ``bench/prefilter_cost.py``.
    """
    error = [r.error(metric) for r in rows]
    cost = [1.0] * len(rows)
    n = len(rows)
    rng = np.random.default_rng(0)
    out: dict[str, dict[float, Any]] = {name: {} for name in [*rankings, SET_SIZE, RANDOM_ORDER]}
    sizes = [r.size for r in rows]
    for f in KEEP_FRACTIONS:
        k = stats.keep_count(n, f)
        for name, score in rankings.items():
            out[name][f] = stats.keep_outcome(stats.top_by_score(score, k), error, cost)
        out[SET_SIZE][f] = stats.mean_outcome(
            [stats.keep_outcome(stats.top_by_score(sizes, k, rng), error, cost) for _ in range(BASELINE_DRAWS)]
        )
        out[RANDOM_ORDER][f] = stats.mean_outcome(
            [stats.keep_outcome(rng.permutation(n)[:k].tolist(), error, cost) for _ in range(BASELINE_DRAWS)]
        )
    return out


def relation_rows(table: Table) -> list[dict[str, Any]]:
    """Per relation: level, support ratio, closed share and every candidate score the table holds (None: not
    recorded)."""
    return [
        {
            "relation": name,
            "level": record_nonlocalness(record).level,
            "support_ratio": record.get("support_ratio"),
            "closed_share": record.get("closed_share"),
            **{c: record_candidates(record).get(c) for c in CANDIDATES},
        }
        for name, record in table.scores.items()
    ]


def analyse(
    table: Table, seeds: list[int], out: Path, score: str, aggregate: str, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """Correlations of every ranking, the choice, keep outcomes and the scatter plot; returns what ``quality.json``
    holds.  ``score`` under ``aggregate``: the pre-filter's rule, shown beside the choice."""
    rows = set_rows(table, seeds)
    if len(rows) < 3:
        raise SystemExit(f"only {len(rows)} relation sets have a run for every seed in {seeds}: too few to rank")
    rng = np.random.default_rng(1)
    candidates = {name: [r.score[name] for r in rows] for name in rows[0].score}
    shipped = ranking_name(score, aggregate)
    if shipped not in candidates:
        raise SystemExit(f"the table holds no {score} scores (recorded before the candidates): pass --score latent")
    rankings = {
        **candidates,
        SET_SIZE: [float(r.size) for r in rows],
        RANDOM_ORDER: rng.permutation(len(rows)).astype(float).tolist(),
    }
    unsorted = {name: {m: correlate(values, rows, m, resamples) for m in METRICS} for name, values in rankings.items()}
    order = sorted(unsorted, key=lambda name: -unsorted[name]["pa_mpjpe"]["spearman"].low)
    correlations = {name: unsorted[name] for name in order}
    choice = choose(correlations, list(candidates))
    # The random-order baseline's correlation is itself random: its null spread over many orders.
    pa = [r.error("pa_mpjpe") for r in rows]
    null = np.array([stats.spearman(rng.permutation(len(rows)), pa) for _ in range(2000)])
    keep_rankings = {
        f"chosen: {choice.ranking}": candidates[choice.ranking],
        f"pre-filter: {shipped}": candidates[shipped],
    }
    keep = {m: keep_table(rows, keep_rankings, m) for m in METRICS}
    best = {m: min(rows, key=lambda r, m=m: r.error(m)) for m in METRICS}
    payload = {
        "sets": len(rows),
        "seeds": seeds,
        "score": score,
        "aggregate": aggregate,
        "source_only": table.meta["source_only"],
        "best": {m: {"set": best[m].label, "mm": best[m].error(m)} for m in METRICS},
        "worst_mm": {m: max(r.error(m) for r in rows) for m in METRICS},
        "mean_seed_sd_mm": {
            m: float(np.mean([np.std(r.final[m], ddof=1) for r in rows])) if len(seeds) > 1 else 0.0 for m in METRICS
        },
        "relations": relation_rows(table),
        "correlations": {
            name: {m: {k: asdict(v) for k, v in c.items()} for m, c in per.items()}
            for name, per in correlations.items()
        },
        "choice": choice.as_dict(),
        "random_order_null_spearman_95": np.percentile(null, [2.5, 97.5]).tolist(),
        "keep": {
            m: {name: {str(f): asdict(o) for f, o in per.items()} for name, per in k.items()} for m, k in keep.items()
        },
        "rows": [asdict(r) | {m: r.error(m) for m in METRICS} for r in rows],
    }
    (out / "quality.json").write_text(json.dumps(payload, indent=1))
    (out / "quality.md").write_text(markdown(payload, correlations, choice, keep))
    scatter(rows, choice, table.meta["source_only"]["pa_mpjpe"], out / "scatter.png")
    return payload


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(payload: dict[str, Any], correlations: dict, choice: Choice, keep: dict) -> str:
    best, worst, sd, source = payload["best"], payload["worst_mm"], payload["mean_seed_sd_mm"], payload["source_only"]
    lines = [
        f"{payload['sets']} relation sets x seeds {payload['seeds']}; set error = mean over seeds of the final "
        "target-validation error.",
        "",
        "| error | best set | best (mm) | worst (mm) | source only (mm) | mean per-set seed std (mm) |",
        "|---|---|---|---|---|---|",
    ]
    for m, heading in METRICS.items():
        lines.append(
            f"| {heading} | `{best[m]['set']}` | {best[m]['mm']:.1f} | {worst[m]:.1f} | {source[m]:.1f} | {sd[m]:.1f} |"
        )
    lines += [
        "",
        "Per relation (held-out mocap through the frozen stages, no labels; `nlrd.relation_scores`):",
        "",
        "| relation | level | support ratio | closed share | " + " | ".join(CANDIDATES) + " |",
        "|---|---|---|---|" + "---|" * len(CANDIDATES),
    ]
    for r in payload["relations"]:
        cells = [_cell(r["support_ratio"]), _cell(r["closed_share"]), *(_cell(r[c]) for c in CANDIDATES)]
        lines.append(f"| {r['relation']} | {r['level']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Rank correlation of each set score (candidate (aggregate)) with -PA-MPJPE and -MPJPE (positive = higher "
        "score, lower error), two-level bootstrap 95% interval (sets and seeds resampled), sorted by the lower bound "
        "of Spearman with -PA-MPJPE:",
        "",
        "| ranking | Spearman, PA-MPJPE | Kendall, PA-MPJPE | Spearman, MPJPE | Kendall, MPJPE |",
        "|---|---|---|---|---|",
    ]
    for name, c in correlations.items():
        cells = [str(c[m][k]) for m in METRICS for k in ("spearman", "kendall")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lo, hi = payload["random_order_null_spearman_95"]
    lines += [
        "",
        f"Random order over 2000 permutations: Spearman 95% range [{lo:+.2f}, {hi:+.2f}].",
        "",
        f"**Choice** (highest lower bound of Spearman with -PA-MPJPE): `{choice.ranking}`, {choice.spearman}. "
        f"Bar (lower bound > {BAR_LOW:+.1f} and point >= {BAR_POINT:+.1f}): "
        f"{'met' if choice.meets_bar else 'not met'}. Set size {choice.set_size}: the choice's lower bound is "
        f"{'above' if choice.beats_set_size else 'not above'} set size's.",
    ]
    for m, heading in METRICS.items():
        lines += [
            "",
            f"Keeping the top fraction, sets judged by {heading} (chosen ranking and the pre-filter's rule keep "
            "their top sets, ties to the earlier set; random and set size averaged over 1000 orders / tie-breaks):",
            "",
            "| keep | ranking | top-1 recall | top-5 recall | best true rank kept | regret (mm) | regret (%) | "
            "compute saved (trials) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in KEEP_FRACTIONS:
            for name, per in keep[m].items():
                o = per[f]
                lines.append(
                    f"| {f:.0%} | {name} | {o.top1:.2f} | {o.top5:.2f} | {o.best_rank:.1f} | {o.regret:.1f} | "
                    f"{o.regret_pct:.1f} | {o.saved:.0%} |"
                )
    return "\n".join(lines) + "\n"


def scatter(rows: list[SetRow], choice: Choice, source_only: float, path: Path) -> None:
    """The chosen set score (x) vs trained PA-MPJPE (y, mean over seeds, bar = seed range), marker by set size."""
    x = np.array([r.score[choice.ranking] for r in rows])
    y = np.array([r.error("pa_mpjpe") for r in rows])
    lo = y - np.array([min(r.final["pa_mpjpe"]) for r in rows])
    hi = np.array([max(r.final["pa_mpjpe"]) for r in rows]) - y
    with figures.axes(path, figsize=(6.4, 4.4)) as ax:
        ax.errorbar(x, y, yerr=[lo, hi], fmt="none", ecolor="0.7", lw=0.8, zorder=1)
        for size, marker in zip(sorted({r.size for r in rows}), itertools.cycle("os^Dv"), strict=False):
            sel = np.array([r.size == size for r in rows])
            ax.scatter(x[sel], y[sel], marker=marker, s=22, zorder=2, label=f"{size} relation{'s' * (size > 1)}")
        best = int(np.argmin(y))
        ax.annotate(rows[best].label, (x[best], y[best]), fontsize=7, xytext=(4, -10), textcoords="offset points")
        ax.axhline(source_only, ls="--", c="0.4", lw=0.8, label="source only")
        ax.set_title(f"Spearman {choice.spearman} vs -PA-MPJPE; set size {choice.set_size}", fontsize=8)
        ax.set_xlabel(f"set score: {choice.ranking}")
        ax.set_ylabel("target PA-MPJPE after adaptation (mm)")


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.prefilter_quality", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/prefilter_quality"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--space", type=Path, help="measure at this space's config (default: the small fidelity)")
    parser.add_argument("--sets", default="all", choices=SET_CHOICES, help="which relation sets to train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-size", type=int, default=2, help="largest relation set of --sets all")
    parser.add_argument("--image-size", type=int, help="world image size (default: 32, or the space's)")
    parser.add_argument("--steps", type=int, help="adaptation steps per run (default: 60, or the space's)")
    parser.add_argument(
        "--eval-every", type=int, help="steps between recorded evaluations (default: 10, or the space's)"
    )
    parser.add_argument(
        "--score",
        choices=CANDIDATES,
        help="the pre-filter's relation score shown beside the choice (default: the space's, or latent)",
    )
    parser.add_argument(
        "--aggregate",
        choices=AGGREGATES,
        help="the pre-filter's aggregate shown beside the choice (default: the space's, or mean)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
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


def command_line(parser: argparse.ArgumentParser, args: argparse.Namespace, study: Study) -> str:
    """The command that reproduces this table, with the fidelity's values written out."""
    parts = [parser.prog]
    if args.space is not None:
        parts.append(f"--space {args.space}")
    parts.append(f"--sets {args.sets}")
    if args.sets == "all":
        parts.append(f"--max-size {args.max_size}")
    parts += [
        f"--seeds {' '.join(map(str, args.seeds))}",
        f"--image-size {study.stages.world.image_size}",
        f"--steps {study.adapt.steps}",
        f"--eval-every {study.adapt.eval_every}",
    ]
    return " ".join(parts)


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        study = study_from_args(args)
    except SpaceError as exc:
        parser.exit(2, f"error: {exc}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine(),
        "commit": git_commit(),
        "command": command_line(parser, args, study),
        "score_seed": study.score_seed,
        "fidelity": study.fidelity(),
    }
    path = args.out / "tabular.json"
    table = Table.load_or_new(path, meta)
    if not args.analyse_only:
        start = time.perf_counter()
        collect(args, study, table, path)
        print(f"[time] collection: {time.perf_counter() - start:.0f} s", flush=True)
    payload = analyse(table, args.seeds, args.out, study.score, study.aggregate)
    print((args.out / "quality.md").read_text())
    choice = payload["choice"]
    print(f"chosen ranking {choice['ranking']}: bar {'met' if choice['meets_bar'] else 'not met'}")


if __name__ == "__main__":
    main()

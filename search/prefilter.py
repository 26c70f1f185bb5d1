"""The pre-filter: score every candidate relation set before any adaptation runs.

Each candidate relation is scored by every label-free candidate of ``nlrd.relation_scores`` (latent non-localness and
the scores made of it) on held-out mocap through the frozen pose prior, motion embedding and the relation's
transformer, one Ray task per relation (seconds each) after one per level for the random-pair baselines that all
relations of the level share.  A relation set scores the aggregate of its members' values of the space's
``prefilter.score``; sets outside the keep rule are recorded as ``rejected_by_prefilter`` and are *excluded from the
searcher's space*, so Optuna never proposes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
import torch
from torch import nn

from nlrd.atomic import write_text_atomic
from nlrd.nonlocalness import NonLocalness, set_score
from nlrd.pipeline import (
    StageCache,
    StageKeys,
    heldout_mocap,
    load_prior_and_motion,
    load_transformers,
    load_world,
)
from nlrd.relation_scores import PairBaselines, RelationScores, random_pair_baselines, relation_scores
from nlrd.relation_scores import score_relations as score_relations_in_process
from nlrd.relations import get_relation
from search.space import PrefilterSpec, SpaceError

SET_SEPARATOR = "+"
#: The score that ranked the sets of a run whose ``prefilter.json`` predates ``prefilter.score``.
FORMER_SCORE = "latent"


@dataclass(frozen=True)
class SetDecision:
    """The pre-filter's verdict on one relation set."""

    relations: tuple[str, ...]
    score: float
    kept: bool
    reason: str

    @property
    def label(self) -> str:
        return set_label(self.relations)


def set_label(relations: tuple[str, ...]) -> str:
    """``("flip", "slow_backward")`` -> ``"flip+slow_backward"``: how a set appears in tables and to Optuna."""
    return SET_SEPARATOR.join(relations)


def parse_set_label(label: str) -> tuple[str, ...]:
    return tuple(label.split(SET_SEPARATOR))


def score_label(score: str, aggregate: str) -> str:
    """``"set score (latent_in_support, mean)"``: how tables, plots and the terminal name what ranked the sets."""
    return f"set score ({score}, {aggregate})"


@dataclass(frozen=True)
class PrefilterRecord:
    """What the pre-filter measured and decided: every relation's scores (all candidates' ingredients), the
    candidate that ranked the sets (``PrefilterSpec.score``) and each set's verdict."""

    score: str
    scores: dict[str, RelationScores]
    decisions: list[SetDecision]

    def relation_values(self) -> dict[str, float]:
        """Each relation's value of the ranking score: what its sets' scores aggregate."""
        return relation_values(self.scores, self.score)


def relation_values(scores: Mapping[str, RelationScores], score: str) -> dict[str, float]:
    """Each relation's value of candidate ``score``."""
    return {name: value.candidates[score] for name, value in scores.items()}


@dataclass(frozen=True)
class LevelBaselines:
    """A level's random-pair baselines and the generator state drawing them left: every relation of the level
    continues from that state, so computing them once per level changes no score."""

    baselines: PairBaselines
    generator_state: torch.Tensor


def _prior_motion_mocap(cache: StageCache, keys: StageKeys) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """The scorers' stages and held-out mocap; the world is mapped, not read, as a scorer needs only its mocap."""
    prior, motion = load_prior_and_motion(cache, keys)
    return prior, motion, heldout_mocap(load_world(cache, keys.world, mmap=True))


def level_baselines(cache_root: str, keys: StageKeys, level: str, clip_len: int, seed: int) -> LevelBaselines:
    """The random-pair baselines of ``level`` ("pose" or "motion") on held-out mocap, from generator ``seed``."""
    prior, motion, mocap = _prior_motion_mocap(StageCache(cache_root), keys)
    generator = torch.Generator().manual_seed(seed)
    baselines = random_pair_baselines(prior, motion, mocap, level, clip_len, generator=generator)
    return LevelBaselines(baselines, generator.get_state())


def score_relation(
    cache_root: str, keys: StageKeys, name: str, clip_len: int, baselines: LevelBaselines
) -> RelationScores:
    """Every candidate's ingredients for one relation through the cached prior, motion embedding and the relation's
    transformer, on held-out mocap."""
    cache = StageCache(cache_root)
    prior, motion, mocap = _prior_motion_mocap(cache, keys)
    (transformer,) = load_transformers(cache, keys, [name]).values()
    generator = torch.Generator()
    generator.set_state(baselines.generator_state)
    relation = get_relation(name, clip_len)
    return relation_scores(
        prior, motion, transformer, mocap, relation, generator=generator, baselines=baselines.baselines
    )


def relation_levels(names: tuple[str, ...], clip_len: int) -> dict[str, str]:
    """Each named relation's level, "pose" or "motion": the baselines it shares."""
    return {name: get_relation(name, clip_len).level for name in names}


def score_relations_here(
    cache_root: str, keys: StageKeys, names: tuple[str, ...], clip_len: int, seed: int = 0
) -> dict[str, RelationScores]:
    """``score_relations`` in this process, without Ray (plans and benchmarks), loading the stages once."""
    cache = StageCache(cache_root)
    prior, motion, mocap = _prior_motion_mocap(cache, keys)
    transformers = load_transformers(cache, keys, names)
    relations = [get_relation(name, clip_len) for name in names]
    return score_relations_in_process(prior, motion, transformers, mocap, relations, clip_len, seed)


@ray.remote(num_cpus=1)
def _level_baselines_task(cache_root: str, keys: StageKeys, level: str, clip_len: int, seed: int) -> LevelBaselines:
    torch.set_num_threads(1)
    return level_baselines(cache_root, keys, level, clip_len, seed)


@ray.remote(num_cpus=1)
def _score_relation_task(
    cache_root: str, keys: StageKeys, name: str, clip_len: int, baselines: LevelBaselines
) -> RelationScores:
    torch.set_num_threads(1)
    return score_relation(cache_root, keys, name, clip_len, baselines)


def score_relations(
    cache: StageCache, keys: StageKeys, names: tuple[str, ...], clip_len: int, seed: int = 0
) -> dict[str, RelationScores]:
    """Every candidate score of each named relation as Ray tasks: one for the baselines of each level, then every
    relation in parallel."""
    root = str(cache.root)
    levels = relation_levels(names, clip_len)
    baselines = {
        level: _level_baselines_task.remote(root, keys, level, clip_len, seed) for level in set(levels.values())
    }
    refs = {name: _score_relation_task.remote(root, keys, name, clip_len, baselines[levels[name]]) for name in names}
    return {name: ray.get(ref) for name, ref in refs.items()}


def decide(
    sets: list[tuple[str, ...]], scores: Mapping[str, RelationScores], rule: PrefilterSpec, space_path: str
) -> list[SetDecision]:
    """Score each set by its members' ``rule.score`` under ``rule.aggregate`` and apply the keep rule; raise
    ``SpaceError`` when it would keep nothing, ``ValueError`` when a member has no such score (NaN: scores recorded
    before that candidate existed)."""
    values = relation_values(scores, rule.score)
    unscored = sorted({name for s in sets for name in s if math.isnan(values[name])})
    if unscored:
        raise ValueError(f"no {rule.score} score for {', '.join(unscored)}: scored before that candidate existed")
    scored = [(s, set_score([values[name] for name in s], rule.aggregate)) for s in sets]
    if not rule.enabled:
        kept = set(range(len(scored)))
        reason = ""
    elif rule.keep_fraction is not None:
        n_keep = max(1, math.ceil(rule.keep_fraction * len(scored)))
        ranked = sorted(range(len(scored)), key=lambda i: -scored[i][1])
        kept = set(ranked[:n_keep])
        cutoff = scored[ranked[n_keep - 1]][1]
        reason = f"score below the top {rule.keep_fraction:.0%} (cut-off {cutoff:.3f})"
    else:
        kept = {i for i, (_, score) in enumerate(scored) if score >= rule.threshold}
        reason = f"score below threshold {rule.threshold}"
        if not kept:
            best = max(score for _, score in scored)
            raise SpaceError(
                f"{space_path}: prefilter.threshold: {rule.threshold} rejects every relation set (best score "
                f"{best:.3f}). Allowed: a threshold <= {best:.3f}, or keep_fraction in (0, 1] instead."
            )
    return [
        SetDecision(relations=s, score=score, kept=i in kept, reason="kept" if i in kept else reason)
        for i, (s, score) in enumerate(scored)
    ]


def warmup_sets(decisions: list[SetDecision], rule: PrefilterSpec) -> list[SetDecision]:
    """The sets the search runs first (``prefilter.warmup``): the best-scoring kept ones; none when the pre-filter is
    off."""
    if not rule.enabled:
        return []
    return sorted((d for d in decisions if d.kept), key=lambda d: -d.score)[: rule.warmup]


def rule_text(rule: PrefilterSpec) -> str:
    """The pre-filter's rule in words, for the plan: what ranks the sets, which it keeps, which run first."""
    if not rule.enabled:
        return f"off: every set is scored by {score_label(rule.score, rule.aggregate)} and kept, none run first"
    if rule.keep_fraction is None:
        cut = f"keep the sets scoring at least {rule.threshold}"
    elif rule.keep_fraction >= 1:
        cut = "keep every set"
    else:
        cut = f"keep the best {rule.keep_fraction:.0%}"
    first = (
        f"; the {rule.warmup} best-scoring kept sets run first, knobs mid-range (the warm-up)" if rule.warmup else ""
    )
    return f"rank by {score_label(rule.score, rule.aggregate)}, {cut}{first}"


def save_prefilter(path: Path, record: PrefilterRecord) -> None:
    """The pre-filter's inputs and verdicts as JSON, so a resumed search offers Optuna the very same sets."""
    payload = {
        "score": record.score,
        "scores": {name: asdict(value) for name, value in record.scores.items()},
        "decisions": [asdict(d) for d in record.decisions],
    }
    write_text_atomic(path, json.dumps(payload, indent=2))


def load_prefilter(path: Path) -> PrefilterRecord:
    """What ``save_prefilter`` wrote.  A file from before ``prefilter.score`` holds each relation's ``NonLocalness``
    alone and was ranked by it: its relations keep their latent score, every other candidate is NaN."""
    payload = json.loads(path.read_text())
    decisions = [SetDecision(**{**d, "relations": tuple(d["relations"])}) for d in payload["decisions"]]
    if "score" not in payload:
        scores = {name: RelationScores.latent_only(NonLocalness(**value)) for name, value in payload["scores"].items()}
        return PrefilterRecord(FORMER_SCORE, scores, decisions)
    scores = {name: RelationScores.from_dict(value) for name, value in payload["scores"].items()}
    return PrefilterRecord(payload["score"], scores, decisions)

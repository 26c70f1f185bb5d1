"""The non-localness pre-filter: score every candidate relation set before any adaptation runs.

Each candidate relation's non-localness is measured on held-out mocap through the frozen pose prior
and motion embedding, one Ray task per relation (seconds each) after one per level for the random-pair
baseline that all relations of the level share.  A relation set scores the aggregate
of its members' normalised non-localness; sets outside the keep rule are recorded as
``rejected_by_prefilter`` and are *excluded from the searcher's space*, so Optuna never proposes them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import ray
import torch

from nlrd.atomic import write_text_atomic
from nlrd.nonlocalness import NonLocalness, nonlocalness, random_pair_baseline, set_score
from nlrd.pipeline import StageCache, StageKeys, heldout_mocap, load_prior_and_motion, load_world
from nlrd.relations import get_relation
from search.space import PrefilterSpec, SpaceError

SET_SEPARATOR = "+"


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


@dataclass(frozen=True)
class LevelBaseline:
    """A level's random-pair baseline and the generator state drawing it left: every relation of the level
    continues from that state, so computing the baseline once per level changes no score."""

    distance: float
    generator_state: torch.Tensor


def _encoders_and_mocap(cache_root: str, keys: StageKeys) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    cache = StageCache(cache_root)
    prior, motion = load_prior_and_motion(cache, keys)
    return prior, motion, heldout_mocap(load_world(cache, keys.world))


def _baseline(
    prior: torch.nn.Module, motion: torch.nn.Module, mocap: torch.Tensor, level: str, clip_len: int, seed: int
) -> LevelBaseline:
    generator = torch.Generator().manual_seed(seed)
    distance = random_pair_baseline(prior, motion, mocap, level, clip_len, generator=generator)
    return LevelBaseline(distance, generator.get_state())


def _score(
    prior: torch.nn.Module,
    motion: torch.nn.Module,
    mocap: torch.Tensor,
    name: str,
    clip_len: int,
    baseline: LevelBaseline,
) -> NonLocalness:
    generator = torch.Generator()
    generator.set_state(baseline.generator_state)
    relation = get_relation(name, clip_len)
    return nonlocalness(prior, motion, mocap, relation, generator=generator, baseline=baseline.distance)


def level_baseline(cache_root: str, keys: StageKeys, level: str, clip_len: int, seed: int) -> LevelBaseline:
    """The random-pair baseline of ``level`` ("pose" or "motion") on held-out mocap, from generator ``seed``."""
    return _baseline(*_encoders_and_mocap(cache_root, keys), level, clip_len, seed)


def score_relation(cache_root: str, keys: StageKeys, name: str, clip_len: int, baseline: LevelBaseline) -> NonLocalness:
    """Non-localness of one relation through the cached prior and motion embedding, on held-out mocap."""
    return _score(*_encoders_and_mocap(cache_root, keys), name, clip_len, baseline)


def relation_levels(names: tuple[str, ...], clip_len: int) -> dict[str, str]:
    """Each named relation's level, "pose" or "motion": the baseline it shares."""
    return {name: get_relation(name, clip_len).level for name in names}


def score_relations_here(
    cache_root: str, keys: StageKeys, names: tuple[str, ...], clip_len: int, seed: int = 0
) -> dict[str, NonLocalness]:
    """``score_relations`` in this process, without Ray (plans and benchmarks), loading the stages once."""
    loaded = _encoders_and_mocap(cache_root, keys)
    levels = relation_levels(names, clip_len)
    baselines = {level: _baseline(*loaded, level, clip_len, seed) for level in set(levels.values())}
    return {name: _score(*loaded, name, clip_len, baselines[levels[name]]) for name in names}


@ray.remote(num_cpus=1)
def _level_baseline_task(cache_root: str, keys: StageKeys, level: str, clip_len: int, seed: int) -> LevelBaseline:
    torch.set_num_threads(1)
    return level_baseline(cache_root, keys, level, clip_len, seed)


@ray.remote(num_cpus=1)
def _score_relation_task(
    cache_root: str, keys: StageKeys, name: str, clip_len: int, baseline: LevelBaseline
) -> NonLocalness:
    torch.set_num_threads(1)
    return score_relation(cache_root, keys, name, clip_len, baseline)


def score_relations(
    cache: StageCache, keys: StageKeys, names: tuple[str, ...], clip_len: int, seed: int = 0
) -> dict[str, NonLocalness]:
    """Non-localness of each named relation as Ray tasks: one baseline per level, then every relation in parallel."""
    root = str(cache.root)
    levels = relation_levels(names, clip_len)
    baselines = {
        level: _level_baseline_task.remote(root, keys, level, clip_len, seed) for level in set(levels.values())
    }
    refs = {name: _score_relation_task.remote(root, keys, name, clip_len, baselines[levels[name]]) for name in names}
    return {name: ray.get(ref) for name, ref in refs.items()}


def decide(
    sets: list[tuple[str, ...]], scores: dict[str, NonLocalness], rule: PrefilterSpec, space_path: str
) -> list[SetDecision]:
    """Apply the keep rule to the sets; raise ``SpaceError`` when it would keep nothing."""
    scored = [(s, set_score([scores[name].normalised for name in s], rule.aggregate)) for s in sets]
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


def save_prefilter(path: Path, scores: dict[str, NonLocalness], decisions: list[SetDecision]) -> None:
    """The pre-filter's inputs and verdicts as JSON, so a resumed search offers Optuna the very same sets."""
    payload = {
        "scores": {name: asdict(value) for name, value in scores.items()},
        "decisions": [asdict(d) for d in decisions],
    }
    write_text_atomic(path, json.dumps(payload, indent=2))


def load_prefilter(path: Path) -> tuple[dict[str, NonLocalness], list[SetDecision]]:
    payload = json.loads(path.read_text())
    scores = {name: NonLocalness(**value) for name, value in payload["scores"].items()}
    decisions = [SetDecision(**{**d, "relations": tuple(d["relations"])}) for d in payload["decisions"]]
    return scores, decisions

from __future__ import annotations

import pytest
import torch

from nlrd.nonlocalness import NonLocalness, nonlocalness
from nlrd.pipeline import StageCache, heldout_mocap, load_prior_and_motion, load_world, stage_keys
from nlrd.relations import get_relation
from search.prefilter import decide, parse_set_label, score_relations, score_relations_here, set_label
from search.space import PrefilterSpec, RelationsSpec, SpaceError, parse_space
from tests.conftest import TINY_SPACE


def _scores(**normalised: float) -> dict[str, NonLocalness]:
    return {
        name: NonLocalness(relation=name, level="pose", raw=value, baseline=1.0, normalised=value)
        for name, value in normalised.items()
    }


def test_candidate_sets_are_all_subsets_in_the_size_range():
    sets = RelationsSpec(candidates=("a", "b", "c"), min_set_size=1, max_set_size=2).sets()
    assert sets == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c")]
    assert len(RelationsSpec(candidates=("a", "b", "c", "d"), min_set_size=2, max_set_size=4).sets()) == 11


def test_together_rules_shape_the_candidate_sets():
    spec = RelationsSpec(
        candidates=("a", "b", "c", "d"),
        min_set_size=1,
        max_set_size=3,
        require_together=(("b", "c"),),
        forbid_together=(("a", "d"),),
    )
    sets = spec.sets()
    assert ("b",) not in sets and ("a", "b") not in sets and ("b", "c") in sets and ("a", "b", "c") in sets
    assert all(not {"a", "d"} <= set(s) for s in sets)
    assert ("a",) in sets and ("d",) in sets


def test_a_disabled_prefilter_scores_but_keeps_every_set():
    decisions = decide([("a",), ("b",)], _scores(a=0.1, b=0.3), PrefilterSpec(enabled=False), "s.yaml")
    assert all(d.kept for d in decisions)
    assert [d.score for d in decisions] == pytest.approx([0.1, 0.3])


def test_labels_round_trip():
    assert parse_set_label(set_label(("flip", "slow_backward"))) == ("flip", "slow_backward")


def test_keep_fraction_keeps_the_best_scoring_sets():
    sets = [("a",), ("b",), ("c",), ("a", "b")]
    decisions = decide(sets, _scores(a=0.2, b=0.8, c=0.5), PrefilterSpec(keep_fraction=0.5), "s.yaml")
    kept = {d.label for d in decisions if d.kept}
    assert kept == {"b", "c"}  # a+b scores the mean 0.5 too; ties keep the earlier set
    rejected = [d for d in decisions if not d.kept]
    assert all("top 50%" in d.reason for d in rejected)
    assert [d.score for d in decisions] == pytest.approx([0.2, 0.8, 0.5, 0.5])


def test_keep_fraction_always_keeps_one():
    decisions = decide([("a",), ("b",)], _scores(a=0.1, b=0.3), PrefilterSpec(keep_fraction=0.01), "s.yaml")
    assert [d.kept for d in decisions] == [False, True]


def test_threshold_rule_and_a_threshold_that_keeps_nothing():
    sets = [("a",), ("b",), ("a", "b")]
    rule = PrefilterSpec(keep_fraction=None, threshold=0.5, aggregate="max")
    assert [d.kept for d in decide(sets, _scores(a=0.4, b=0.6), rule, "s.yaml")] == [False, True, True]
    with pytest.raises(SpaceError, match=r"s.yaml: prefilter.threshold: 0.9 rejects every relation set"):
        decide(sets, _scores(a=0.4, b=0.6), PrefilterSpec(keep_fraction=None, threshold=0.9), "s.yaml")


def test_ray_and_in_process_scoring_agree_with_scoring_each_relation_alone(ray_cluster, tiny_stages):
    """The pre-filter computes each level's baseline once and shares it; every score is still exactly the one
    a relation gets on its own from the search's generator seed."""
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    cache, clip_len, seed = StageCache(tiny_stages), spec.stages.world.clip_len, spec.searcher.seed
    keys = stage_keys(spec.stages, spec.relations.candidates)
    names = spec.relations.candidates
    assert {get_relation(name, clip_len).level for name in names} == {"pose", "motion"}
    prior, motion = load_prior_and_motion(cache, keys)
    mocap = heldout_mocap(load_world(cache, keys.world))
    alone = {
        name: nonlocalness(
            prior, motion, mocap, get_relation(name, clip_len), generator=torch.Generator().manual_seed(seed)
        )
        for name in names
    }
    assert score_relations(cache, keys, names, clip_len, seed) == alone
    assert score_relations_here(str(cache.root), keys, names, clip_len, seed) == alone

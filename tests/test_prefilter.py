from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch

from nlrd.nonlocalness import NonLocalness, nonlocalness
from nlrd.pipeline import StageCache, StageKeys, heldout_mocap, load_prior_and_motion, load_world, stage_keys
from nlrd.relation_scores import CANDIDATES, RelationScores
from nlrd.relations import get_relation
from search.prefilter import (
    PrefilterRecord,
    SetDecision,
    decide,
    load_prefilter,
    parse_set_label,
    rule_text,
    save_prefilter,
    score_label,
    score_relations,
    score_relations_here,
    set_label,
    warmup_sets,
)
from search.space import PrefilterSpec, RelationsSpec, SpaceError, parse_space
from tests.conftest import TINY_SPACE


def _relation(name: str, latent: float, support_ratio: float = 1.0) -> RelationScores:
    """Scores whose ``latent`` is ``latent`` and whose counterparts are reconstructed ``support_ratio`` times worse
    than their anchors."""
    nl = NonLocalness(relation=name, level="pose", raw=latent, baseline=1.0, normalised=latent)
    return RelationScores(nl, 2 * latent, 2.0, 10.0, 10.0 * support_ratio, 0.25)


def _scores(**latent: float) -> dict[str, RelationScores]:
    """Relations inside the prior's support: every in-support score equals the plain one."""
    return {name: _relation(name, value) for name, value in latent.items()}


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


def test_the_warm_up_runs_the_best_scoring_kept_sets_and_none_when_the_pre_filter_is_off():
    sets = [("a",), ("b",), ("c",), ("a", "b")]
    scores = _scores(a=0.2, b=0.8, c=0.5)
    decisions = decide(sets, scores, PrefilterSpec(keep_fraction=0.5, warmup=2), "s.yaml")
    assert [d.label for d in warmup_sets(decisions, PrefilterSpec(keep_fraction=0.5, warmup=2))] == ["b", "c"]
    wide = PrefilterSpec(keep_fraction=0.5, warmup=9)  # never more than the kept sets
    assert [d.label for d in warmup_sets(decisions, wide)] == ["b", "c"]
    assert warmup_sets(decisions, PrefilterSpec(keep_fraction=0.5)) == []
    off = PrefilterSpec(enabled=False, warmup=2)
    assert warmup_sets(decide(sets, scores, off, "s.yaml"), off) == []


def test_the_rule_in_words_names_the_score_the_cut_and_the_warm_up():
    assert rule_text(PrefilterSpec(keep_fraction=0.5, warmup=2)) == (
        "rank by set score (latent_in_support, mean), keep the best 50%; the 2 best-scoring kept sets run first, "
        "knobs mid-range (the warm-up)"
    )
    assert rule_text(PrefilterSpec(keep_fraction=None, threshold=0.4, score="latent", aggregate="max")) == (
        "rank by set score (latent, max), keep the sets scoring at least 0.4"
    )
    assert "keep every set; the 3 best-scoring" in rule_text(PrefilterSpec(keep_fraction=1.0, warmup=3))
    assert rule_text(PrefilterSpec(enabled=False)).startswith("off: every set is scored")


def test_the_chosen_score_ranks_the_sets():
    """A relation far in latent space whose counterparts leave the prior's support (as a 30 degree rotation does) is
    ranked first by ``latent`` and last by ``latent_in_support``."""
    scores = {
        "inplane30": _relation("inplane30", 0.9, support_ratio=6.0),
        "flip": _relation("flip", 0.8),
        "inplane5": _relation("inplane5", 0.2, support_ratio=1.2),
    }
    sets = [("inplane30",), ("flip",), ("inplane5",)]

    def kept(score: str) -> list[str]:
        rule = PrefilterSpec(keep_fraction=0.3, score=score, aggregate="max")
        return [d.label for d in decide(sets, scores, rule, "s.yaml") if d.kept]

    assert kept("latent") == ["inplane30"]
    assert kept("latent_in_support") == ["flip"]
    by_support = decide(sets, scores, PrefilterSpec(keep_fraction=1.0), "s.yaml")
    assert [d.score for d in by_support] == pytest.approx([0.9 / 6.0, 0.8, 0.2 / 1.2])
    pair = decide([("inplane30", "flip")], scores, PrefilterSpec(keep_fraction=1.0, aggregate="max"), "s.yaml")
    assert pair[0].score == pytest.approx(0.8)


def test_a_score_that_was_not_measured_is_refused():
    old = {"flip": RelationScores.latent_only(NonLocalness("flip", "pose", 0.8, 1.0, 0.8))}
    assert decide([("flip",)], old, PrefilterSpec(score="latent"), "s.yaml")[0].score == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no latent_in_support score for flip"):
        decide([("flip",)], old, PrefilterSpec(score="latent_in_support"), "s.yaml")


def test_the_record_round_trips_with_every_candidate(tmp_path):
    scores = {"flip": _relation("flip", 0.8), "inplane30": _relation("inplane30", 0.9, support_ratio=6.0)}
    decisions = decide([("flip",), ("inplane30",)], scores, PrefilterSpec(), "s.yaml")
    record = PrefilterRecord("latent_in_support", scores, decisions)
    save_prefilter(tmp_path / "prefilter.json", record)
    again = load_prefilter(tmp_path / "prefilter.json")
    assert again == record
    assert again.relation_values() == pytest.approx({"flip": 0.8, "inplane30": 0.15})
    assert set(again.scores["inplane30"].candidates) == set(CANDIDATES)
    assert score_label(again.score, "max") == "set score (latent_in_support, max)"


def test_a_record_from_before_the_candidates_keeps_its_latent_ranking(tmp_path):
    """A ``prefilter.json`` written when the pre-filter ranked by latent non-localness alone holds each relation's
    ``NonLocalness``: a resumed run reads its verdicts unchanged, ranked by ``latent``."""
    flip = NonLocalness("flip", "pose", 0.7, 0.875, 0.8)
    decisions = [SetDecision(("flip",), 0.8, True, "kept"), SetDecision(("inplane5",), 0.2, False, "score below")]
    payload = {
        "scores": {"flip": asdict(flip), "inplane5": asdict(NonLocalness("inplane5", "pose", 0.2, 1.0, 0.2))},
        "decisions": [asdict(d) for d in decisions],
    }
    (tmp_path / "prefilter.json").write_text(json.dumps(payload))
    record = load_prefilter(tmp_path / "prefilter.json")
    assert record.score == "latent" and record.decisions == decisions
    assert record.scores["flip"].nonlocalness == flip
    assert record.relation_values() == {"flip": 0.8, "inplane5": 0.2}
    others = [value for name, value in record.scores["flip"].candidates.items() if name != "latent"]
    assert len(others) == len(CANDIDATES) - 1 and all(math.isnan(value) for value in others)


def _tiny_scoring(tiny_stages) -> tuple[StageCache, StageKeys, tuple[str, ...], int, int]:
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    keys = stage_keys(spec.stages, spec.relations.candidates)
    return StageCache(tiny_stages), keys, spec.relations.candidates, spec.stages.world.clip_len, spec.searcher.seed


def _alone(cache: StageCache, keys: StageKeys, names, clip_len: int, seed: int) -> dict[str, NonLocalness]:
    """Each relation's latent non-localness on its own from the search's generator seed."""
    prior, motion = load_prior_and_motion(cache, keys)
    mocap = heldout_mocap(load_world(cache, keys.world))
    return {
        name: nonlocalness(
            prior, motion, mocap, get_relation(name, clip_len), generator=torch.Generator().manual_seed(seed)
        )
        for name in names
    }


def test_in_process_scoring_keeps_the_latent_of_each_relation_alone(tiny_stages):
    """The pre-filter computes each level's baselines once and shares them; every latent score is still exactly the
    non-localness a relation gets on its own, and every other candidate is measured beside it."""
    cache, keys, names, clip_len, seed = _tiny_scoring(tiny_stages)
    assert {get_relation(name, clip_len).level for name in names} == {"pose", "motion"}
    here = score_relations_here(str(cache.root), keys, names, clip_len, seed)
    assert {name: s.nonlocalness for name, s in here.items()} == _alone(cache, keys, names, clip_len, seed)
    assert all(math.isfinite(value) for s in here.values() for value in s.candidates.values())


def test_ray_and_in_process_scoring_agree_with_scoring_each_relation_alone(ray_cluster, tiny_stages):
    """One Ray task per level and one per relation give the very scores of the in-process path."""
    cache, keys, names, clip_len, seed = _tiny_scoring(tiny_stages)
    scores = score_relations(cache, keys, names, clip_len, seed)
    assert scores == score_relations_here(str(cache.root), keys, names, clip_len, seed)
    assert {name: s.nonlocalness for name, s in scores.items()} == _alone(cache, keys, names, clip_len, seed)

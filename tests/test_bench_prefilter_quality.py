"""The pre-filter quality study: its set choices, its study at a space's config, its table and its analysis."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from bench import stats
from bench.prefilter_quality import (
    SET_SIZE,
    Table,
    analyse,
    candidate_sets,
    enumerate_sets,
    keep_table,
    ranking_name,
    record_nonlocalness,
    score_here,
    score_record,
    set_rows,
    small_study,
    space_study,
    study_from_args,
    table_scores,
)
from bench.search_efficiency import load_bench
from nlrd.nonlocalness import AGGREGATES, NonLocalness
from nlrd.pipeline import StageCache, heldout_mocap, load_world, train_stages
from nlrd.relation_scores import CANDIDATES, RelationScores
from nlrd.relations import RELATION_NAMES
from search.prefilter import decide, parse_set_label, score_relations_here, set_label
from search.space import PrefilterSpec, load_space
from tests.test_pipeline import TINY

SMOKE = Path(__file__).resolve().parent.parent / "spaces" / "smoke.yaml"
SEEDS = [0, 1]


def test_singles_and_flip_pairs_are_each_relation_alone_and_beside_flip():
    sets = candidate_sets("singles-and-flip-pairs", RELATION_NAMES, max_size=3)
    assert len(sets) == 17 and len(set(sets)) == 17
    assert [s for s in sets if len(s) == 1] == [(name,) for name in RELATION_NAMES]
    pairs = [s for s in sets if len(s) == 2]
    assert len(pairs) == 8 and all("flip" in s for s in pairs)
    assert all(list(s) == sorted(s, key=RELATION_NAMES.index) for s in sets)  # catalogue order, as RelationsSpec
    assert candidate_sets("all", RELATION_NAMES, max_size=2) == enumerate_sets(RELATION_NAMES, 2)
    assert len(enumerate_sets(RELATION_NAMES, 2)) == 45


def test_a_space_study_is_the_search_config_with_knobs_at_their_middle():
    spec = load_space(SMOKE)
    study = space_study(SMOKE)
    assert study.stages == spec.stages and study.stages.world.gap == spec.stages.world.gap
    assert (study.adapt.steps, study.adapt.schedule, study.adapt.nonlocal_space) == (40, "weighted", "pose")
    assert study.adapt.relations == ()
    assert study.adapt.w_lcr == pytest.approx(math.sqrt(0.01 * 1.0))
    assert study.adapt.lr_weighted == pytest.approx(math.sqrt(3e-5 * 3e-4))
    assert (study.score_seed, study.score, study.aggregate) == (
        spec.searcher.seed,
        spec.prefilter.score,
        spec.prefilter.aggregate,
    )


def test_flags_replace_the_study_values_they_name():
    given = argparse.Namespace(space=SMOKE, image_size=16, steps=4, eval_every=2, score="pose", aggregate="sum")
    study = study_from_args(given)
    assert (study.stages.world.image_size, study.adapt.steps, study.adapt.eval_every) == (16, 4, 2)
    assert (study.score, study.aggregate) == ("pose", "sum") and study.stages.prior == space_study(SMOKE).stages.prior
    plain = study_from_args(
        argparse.Namespace(space=None, image_size=None, steps=None, eval_every=None, score=None, aggregate=None)
    )
    assert plain == small_study() and (plain.score, plain.aggregate) == ("latent", "mean")
    assert (plain.stages.world.image_size, plain.adapt.steps, plain.adapt.eval_every) == (32, 60, 10)


def test_a_table_refuses_another_fidelity(tmp_path):
    path = tmp_path / "tabular.json"
    Table({"fidelity": small_study().fidelity()}, {}, {}).save(path)
    assert Table.load_or_new(path, {"fidelity": small_study().fidelity()}).runs == {}
    with pytest.raises(SystemExit, match="another fidelity"):
        Table.load_or_new(path, {"fidelity": space_study(SMOKE).fidelity()})


def _relation_scores(name: str, rng: np.random.Generator) -> RelationScores:
    latent = float(rng.uniform(0.2, 1.2))
    return RelationScores(
        NonLocalness(name, "pose", latent * 3.0, 3.0, latent),
        pose_raw_mm=float(rng.uniform(10, 100)),
        pose_baseline_mm=100.0,
        anchor_recon_mm=30.0,
        counterpart_recon_mm=float(rng.uniform(20, 90)),
        gap_left=float(rng.uniform(0.0, 0.6)),
    )


def _run(pa_mpjpe: float, mpjpe: float) -> dict:
    """A recorded run of two evaluations whose last has these errors (mm)."""
    first = {"step": 10.0, "mpjpe": mpjpe + 5, "pa_mpjpe": pa_mpjpe + 5, "seconds": 1.0}
    return {"evals": [first, {"step": 20.0, "mpjpe": mpjpe, "pa_mpjpe": pa_mpjpe, "seconds": 2.0}], "seconds": 2.0}


def _table(perfect: str = "pose_in_support") -> Table:
    """17 sets x 2 seeds whose PA-MPJPE falls exactly as the ``perfect`` candidate's mean set score rises."""
    rng = np.random.default_rng(0)
    scores = {name: score_record(_relation_scores(name, rng)) for name in RELATION_NAMES}
    runs = {}
    for relations in candidate_sets("singles-and-flip-pairs", RELATION_NAMES, 2):
        score = float(np.mean([scores[name]["candidates"][perfect] for name in relations]))
        mpjpe = float(rng.uniform(150, 250))
        runs[set_label(relations)] = {str(s): _run(200.0 - 50.0 * score, mpjpe + s) for s in SEEDS}
    return Table({"source_only": {"mpjpe": 260.0, "pa_mpjpe": 210.0}}, scores, runs)


def test_a_table_round_trips_with_every_candidate_score(tmp_path):
    table = _table()
    path = tmp_path / "tabular.json"
    table.save(path)
    loaded = Table(**json.loads(path.read_text()))
    assert loaded == table
    assert set(loaded.scores["flip"]["candidates"]) == set(CANDIDATES)
    assert loaded.scores["flip"]["support_ratio"] == pytest.approx(loaded.scores["flip"]["counterpart_recon_mm"] / 30.0)
    assert record_nonlocalness(loaded.scores["flip"]) == NonLocalness(**loaded.scores["flip"]["nonlocalness"])
    rows = set_rows(loaded, SEEDS)
    assert len(rows) == 17
    assert set(rows[0].score) == {ranking_name(c, agg) for c in CANDIDATES for agg in AGGREGATES}
    pair = next(r for r in rows if r.label == "flip+backward")
    expected = (loaded.scores["flip"]["candidates"]["pose"] + loaded.scores["backward"]["candidates"]["pose"]) / 2
    assert pair.score["pose (mean)"] == pytest.approx(expected)
    assert pair.final["mpjpe"] == [run["evals"][-1]["mpjpe"] for run in loaded.runs["flip+backward"].values()]


def test_a_table_written_before_the_candidates_ranks_by_latent_alone():
    table = _table()
    table.scores = {name: asdict(record_nonlocalness(r)) | {"seconds": 0.1} for name, r in table.scores.items()}
    rows = set_rows(table, SEEDS)
    assert set(rows[0].score) == {ranking_name("latent", agg) for agg in AGGREGATES}
    flip = table_scores(table)["flip"]
    assert flip.nonlocalness.normalised == table.scores["flip"]["normalised"]
    assert math.isnan(flip.candidates["latent_in_support"])
    with pytest.raises(SystemExit, match="no latent_in_support scores"):
        analyse(table, SEEDS, Path("unused"), "latent_in_support", "max", resamples=10)


@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("aggregate", AGGREGATES)
def test_a_ranking_keeps_what_the_prefilter_keeps(candidate, aggregate):
    table = _table()
    rows = set_rows(table, SEEDS)
    sets = [parse_set_label(r.label) for r in rows]
    score = [r.score[ranking_name(candidate, aggregate)] for r in rows]
    for fraction in (0.1, 0.25, 0.5):
        rule = PrefilterSpec(keep_fraction=fraction, score=candidate, aggregate=aggregate)
        decisions = decide(sets, table_scores(table), rule, "b")
        kept = stats.top_by_score(score, stats.keep_count(len(rows), fraction))
        assert sorted(kept) == [i for i, d in enumerate(decisions) if d.kept]


def test_the_analysis_chooses_a_candidate_that_ranks_perfectly(tmp_path):
    payload = analyse(_table(), SEEDS, tmp_path, "latent", "mean", resamples=50)
    choice = payload["choice"]
    assert choice["ranking"] == "pose_in_support (mean)"
    assert choice["spearman"]["value"] == pytest.approx(1.0) and choice["spearman"]["low"] == pytest.approx(1.0)
    assert choice["meets_bar"] and choice["beats_set_size"]
    correlations = payload["correlations"]
    assert next(iter(correlations)) == "pose_in_support (mean)"  # sorted by the lower bound
    assert {SET_SIZE, "random order"} <= set(correlations)
    assert set(correlations["latent (max)"]) == {"pa_mpjpe", "mpjpe"}
    assert list(payload["keep"]["pa_mpjpe"]) == [
        "chosen: pose_in_support (mean)",
        "pre-filter: latent (mean)",
        SET_SIZE,
        "random order",
    ]
    assert payload["keep"]["pa_mpjpe"]["chosen: pose_in_support (mean)"]["0.1"]["top1"] == 1.0
    assert {p.name for p in tmp_path.iterdir()} == {"quality.json", "quality.md", "scatter.png"}
    text = (tmp_path / "quality.md").read_text()
    assert "**Choice**" in text and "`pose_in_support (mean)`" in text and "| flip | pose |" in text


def test_keep_outcomes_follow_the_metric_they_judge_by():
    rows = set_rows(_table(), SEEDS)
    perfect = [r.score["pose_in_support (mean)"] for r in rows]
    by_pa = keep_table(rows, {"perfect": perfect}, "pa_mpjpe")
    assert all(by_pa["perfect"][f].regret == 0.0 for f in (0.1, 0.25, 0.5))


def test_the_candidates_score_the_latent_the_prefilter_scores(tmp_path):
    cache = StageCache(tmp_path)
    keys = train_stages(TINY, RELATION_NAMES, cache)
    mocap = heldout_mocap(load_world(cache, keys.world))
    scores = score_here(cache, keys, mocap, TINY.world.clip_len, seed=0)
    prefilter = score_relations_here(str(tmp_path), keys, RELATION_NAMES, TINY.world.clip_len, seed=0)
    assert list(scores) == list(RELATION_NAMES)
    assert scores == prefilter


def test_the_search_simulation_reads_a_table_with_candidate_scores(tmp_path):
    table = _table()
    table.save(tmp_path / "tabular.json")
    bench = load_bench(tmp_path / "tabular.json")
    assert bench.scores == table_scores(table) and len(bench.truth) == 17

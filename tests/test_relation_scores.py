from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nlrd.models import MotionAE, PosePrior
from nlrd.nonlocalness import NonLocalness, nonlocalness
from nlrd.relation_scores import CANDIDATES, RelationScores, relation_scores, score_relations
from nlrd.relations import Relation, catalogue
from tests.test_nonlocalness import T, swaying_mocap

IDENTITY = nn.Identity()


@pytest.fixture(scope="module")
def stages() -> tuple[PosePrior, MotionAE]:
    """Untrained but fixed stages: every figure only needs a deterministic, non-constant encoder and decoder."""
    torch.manual_seed(0)
    return PosePrior(latent_dim=8, hidden=32).eval(), MotionAE(latent_dim=8, hidden=16, embed_dim=12).eval()


@pytest.fixture(scope="module")
def mocap() -> torch.Tensor:
    return swaying_mocap()


@dataclass(frozen=True)
class _Scaled(Relation):
    """A relation whose counterparts are also scaled by ``scale``: the prior's encoder sees only bone directions, so
    the counterparts keep their codes while leaving the bone lengths the prior decodes to."""

    scale: float = 3.0

    def poses(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        anchor, counterpart = super().poses(raw)
        return anchor, self.scale * counterpart


class _Lookup(nn.Module):
    """A transformer that knows every pair: it returns the counterpart code of the nearest known anchor code."""

    def __init__(self, anchors: torch.Tensor, counterparts: torch.Tensor) -> None:
        super().__init__()
        self.anchors, self.counterparts = anchors, counterparts

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.counterparts[torch.cdist(z, self.anchors).argmin(dim=-1)]


def _scores(stages, mocap, relation: Relation, transformer: nn.Module = IDENTITY, seed: int = 0, **caps):
    prior, motion = stages
    generator = torch.Generator().manual_seed(seed)
    return relation_scores(prior, motion, transformer, mocap, relation, generator=generator, **caps)


@pytest.mark.parametrize("max_samples", [2048, 20])
def test_latent_is_the_nonlocalness_bit_for_bit(stages, mocap, max_samples):
    caps = {"max_samples": max_samples, "num_pairs": 256}
    for relation in catalogue(T).values():
        alone = nonlocalness(*stages, mocap, relation, generator=torch.Generator().manual_seed(3), **caps)
        scores = _scores(stages, mocap, relation, seed=3, **caps)
        assert scores.nonlocalness == alone
        assert scores.candidates["latent"] == alone.normalised


def test_shared_baselines_change_no_latent_number(stages, mocap):
    """One draw of baselines per level, each relation continuing from its state, as the pre-filter does."""
    prior, motion = stages
    relations = list(catalogue(T).values())
    caps = {"max_samples": 20, "num_pairs": 256}
    shared = score_relations(prior, motion, dict.fromkeys(catalogue(T), IDENTITY), mocap, relations, T, 5, **caps)
    assert list(shared) == [r.name for r in relations]
    for relation in relations:
        alone = nonlocalness(prior, motion, mocap, relation, generator=torch.Generator().manual_seed(5), **caps)
        assert shared[relation.name].nonlocalness == alone
        assert shared[relation.name] == _scores(stages, mocap, relation, seed=5, **caps)


@pytest.mark.parametrize(
    "relation",
    [
        Relation("same_pose", "pose", spatial="rotate", degrees=0.0),
        Relation("same_clip", "motion", T, tuple(range(T)), tuple(range(T))),
    ],
)
def test_an_identity_relation_is_local_and_in_support(stages, mocap, relation):
    scores = _scores(stages, mocap, relation)
    assert scores.nonlocalness.raw == 0.0 and scores.pose_raw_mm == 0.0
    assert scores.pose_baseline_mm > 0 and scores.anchor_recon_mm > 0
    assert scores.support_ratio == 1.0
    assert scores.candidates["latent"] == 0.0 and scores.candidates["pose"] == 0.0


def test_scaled_counterparts_leave_the_support_and_score_lower_inside_it(stages, mocap):
    flip = catalogue(T)["flip"]
    plain = _scores(stages, mocap, flip)
    scaled = _scores(stages, mocap, _Scaled("flip_scaled", "pose", spatial="flip"))
    assert scaled.nonlocalness.raw == pytest.approx(plain.nonlocalness.raw)  # the codes cannot see the scale
    assert scaled.pose_raw_mm == pytest.approx(plain.pose_raw_mm)
    assert scaled.support_ratio > 1.5 * max(1.0, plain.support_ratio)
    assert scaled.candidates["latent_in_support"] < 0.7 * scaled.candidates["latent"]
    assert scaled.candidates["pose_in_support"] < 0.7 * scaled.candidates["pose"]


def test_the_transformer_share_runs_from_not_moving_to_reaching_the_counterpart(stages, mocap):
    prior, _ = stages
    flip = catalogue(T)["flip"]
    still = _scores(stages, mocap, flip)
    assert still.gap_left == 1.0 and still.closed_share == 0.0
    assert still.candidates["latent_x_transformer"] == 0.0
    anchor, counterpart = flip.poses(mocap.flatten(0, 1))
    exact = _scores(stages, mocap, flip, _Lookup(prior.encode(anchor), prior.encode(counterpart)))
    assert exact.gap_left == pytest.approx(0.0, abs=1e-6) and exact.closed_share == pytest.approx(1.0)
    assert exact.candidates["latent_x_transformer"] == pytest.approx(exact.candidates["latent"])


def test_scores_are_reproducible_for_a_seed(stages, mocap):
    relation = catalogue(T)["slow_backward"]
    assert _scores(stages, mocap, relation, seed=1, max_samples=8) == _scores(
        stages, mocap, relation, seed=1, max_samples=8
    )


def test_a_window_longer_than_the_mocap_is_refused(stages, mocap):
    with pytest.raises(ValueError, match="needs 8 frames"):
        _scores(stages, mocap[:, :T], catalogue(T)["slow_backward"])


@settings(max_examples=8, deadline=None)
@given(chunk=st.integers(1, 64), name=st.sampled_from(sorted(catalogue(T))))
def test_the_chunk_size_changes_no_figure(stages, mocap, chunk, name):
    relation = catalogue(T)[name]
    whole = _scores(stages, mocap, relation, num_pairs=64)
    parts = _scores(stages, mocap, relation, num_pairs=64, chunk=chunk)
    assert parts.candidates == pytest.approx(whole.candidates, rel=1e-4, abs=1e-6)  # float32 sums differ
    assert parts.support_ratio == pytest.approx(whole.support_ratio, rel=1e-4)


@given(
    latent=st.floats(0.0, 10.0),
    pose_raw=st.floats(0.0, 1e3),
    pose_baseline=st.floats(1.0, 1e3),
    anchor_recon=st.floats(1.0, 500.0),
    counterpart_recon=st.floats(1.0, 500.0),
    gap_left=st.floats(0.0, 3.0),
)
def test_support_and_transformer_only_ever_lower_a_score(
    latent, pose_raw, pose_baseline, anchor_recon, counterpart_recon, gap_left
):
    scores = RelationScores(
        NonLocalness("r", "pose", latent, 1.0, latent),
        pose_raw,
        pose_baseline,
        anchor_recon,
        counterpart_recon,
        gap_left,
    )
    c = scores.candidates
    assert list(c) == list(CANDIDATES)
    assert 0.0 <= c["latent_in_support"] <= c["latent"] and 0.0 <= c["pose_in_support"] <= c["pose"]
    assert 0.0 <= c["latent_x_transformer"] <= c["latent"]
    if counterpart_recon <= anchor_recon:  # counterparts no further from the support than anchors: no discount
        assert c["latent_in_support"] == c["latent"] and c["pose_in_support"] == c["pose"]


def test_scores_read_back_from_their_dict_and_a_latent_alone_leaves_the_others_unknown():
    scores = RelationScores(NonLocalness("flip", "pose", 0.7, 0.875, 0.8), 40.0, 50.0, 10.0, 30.0, 0.2)
    assert RelationScores.from_dict(asdict(scores) | {"candidates": scores.candidates}) == scores
    alone = RelationScores.latent_only(scores.nonlocalness)
    assert alone.candidates["latent"] == 0.8
    assert all(math.isnan(value) for name, value in alone.candidates.items() if name != "latent")

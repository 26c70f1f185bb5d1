from __future__ import annotations

import math

import pytest
import torch

from nlrd import skeleton
from nlrd.models import MotionAE, PosePrior
from nlrd.nonlocalness import NonLocalness, nonlocalness, random_pair_baseline, set_score
from nlrd.relations import Relation, catalogue

T = 4


@pytest.fixture(scope="module")
def encoders() -> tuple[PosePrior, MotionAE]:
    """Untrained but fixed encoders: distances only need a deterministic, non-constant map."""
    torch.manual_seed(0)
    return PosePrior(latent_dim=8, hidden=32).eval(), MotionAE(latent_dim=8, hidden=16, embed_dim=12).eval()


def swaying_mocap(sequences: int = 12, frames: int = 2 * T) -> torch.Tensor:
    """``(sequences, frames, 17, 3)`` mm: every bone sways about the rest pose, each sequence facing its own way."""
    g = torch.Generator().manual_seed(0)
    rest = skeleton.to_bone_directions(skeleton.rest_pose_mm())
    t = torch.arange(frames, dtype=torch.float32)[None, :, None, None]
    amplitude = 0.5 * torch.rand(sequences, 1, 16, 3, generator=g)
    phase = 2 * math.pi * torch.rand(sequences, 1, 16, 3, generator=g)
    directions = rest + amplitude * torch.sin(0.6 * t + phase)
    azimuth = skeleton.rotation_z(2 * math.pi * torch.rand(sequences, generator=g))[:, None]
    return skeleton.rotate(skeleton.from_bone_directions(directions), azimuth)


@pytest.fixture(scope="module")
def mocap() -> torch.Tensor:
    return swaying_mocap()


def _score(encoders, mocap, relation: Relation, seed: int = 0) -> NonLocalness:
    prior, motion = encoders
    return nonlocalness(prior, motion, mocap, relation, generator=torch.Generator().manual_seed(seed))


def test_identity_relations_are_local(encoders, mocap):
    pose = _score(encoders, mocap, Relation("same_pose", "pose", spatial="rotate", degrees=0.0))
    clip = _score(encoders, mocap, Relation("same_clip", "motion", T, tuple(range(T)), tuple(range(T))))
    assert pose.raw == pytest.approx(0.0, abs=1e-5) and clip.raw == pytest.approx(0.0, abs=1e-5)
    assert pose.baseline > 0 and clip.baseline > 0


def test_every_catalogue_relation_has_positive_normalised_nonlocalness(encoders, mocap):
    for relation in catalogue(T).values():
        result = _score(encoders, mocap, relation)
        assert (result.relation, result.level) == (relation.name, relation.level)
        assert result.raw > 0 and result.normalised > 0
        assert result.normalised == pytest.approx(result.raw / result.baseline)


def test_larger_rotations_are_less_local(encoders, mocap):
    relations = catalogue(T)
    assert _score(encoders, mocap, relations["inplane30"]).raw > _score(encoders, mocap, relations["inplane5"]).raw


def test_baseline_is_shared_within_a_level_and_reproducible(encoders, mocap):
    relations = catalogue(T)
    backward = _score(encoders, mocap, relations["backward"])
    assert backward.baseline == _score(encoders, mocap, relations["slow_backward"]).baseline
    assert backward == _score(encoders, mocap, relations["backward"])


@pytest.mark.parametrize("max_samples", [2048, 20])
def test_a_shared_baseline_changes_no_number(encoders, mocap, max_samples):
    """One baseline per level, the generator continuing from where it left: every relation scores exactly as
    when it computes the baseline itself, with and without drawing a subset of the samples."""
    prior, motion = encoders
    caps = {"max_samples": max_samples, "num_pairs": 256}
    for level in ("pose", "motion"):
        generator = torch.Generator().manual_seed(5)
        shared = random_pair_baseline(prior, motion, mocap, level, T, generator=generator, **caps)
        state = generator.get_state()
        for relation in (r for r in catalogue(T).values() if r.level == level):
            alone = nonlocalness(prior, motion, mocap, relation, generator=torch.Generator().manual_seed(5), **caps)
            generator.set_state(state)
            assert nonlocalness(prior, motion, mocap, relation, generator=generator, baseline=shared, **caps) == alone
            assert alone.baseline == shared


def test_sample_cap_bounds_the_work_and_keeps_the_estimate(encoders, mocap):
    prior, motion = encoders
    relation = catalogue(T)["flip"]
    full = _score(encoders, mocap, relation)
    capped = nonlocalness(prior, motion, mocap, relation, generator=torch.Generator().manual_seed(0), max_samples=64)
    assert capped.raw == pytest.approx(full.raw, rel=0.25)


def test_mocap_too_short_for_the_window_is_refused(encoders, mocap):
    with pytest.raises(ValueError, match="needs 8 frames"):
        _score(encoders, mocap[:, :T], catalogue(T)["slow_backward"])
    with pytest.raises(ValueError, match="motion clips need 4 frames, mocap has 3"):
        random_pair_baseline(*encoders, mocap[:, :3], "motion", T, generator=torch.Generator())


@pytest.mark.parametrize(("aggregate", "expected"), [("mean", 2.0), ("max", 3.0), ("min", 1.0), ("sum", 6.0)])
def test_set_score(aggregate, expected):
    assert set_score([1.0, 2.0, 3.0], aggregate) == expected


def test_set_score_refuses_empty_sets_and_unknown_aggregates():
    with pytest.raises(ValueError, match="empty"):
        set_score([])
    with pytest.raises(ValueError, match="median.*mean, max, min, sum"):
        set_score([1.0], "median")

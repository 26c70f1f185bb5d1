from __future__ import annotations

import pytest
import torch
from torch import nn

from nlrd import skeleton
from nlrd.core import ClipSet, Stages
from nlrd.metrics import mpjpe
from nlrd.models import MotionAE, PosePrior
from nlrd.pipeline import (
    StageCache,
    quality_key,
    reference_lines,
    source_only_metrics,
    stage_quality,
    train_stages,
)
from nlrd.quality import RELATION_BAR, StageQuality, measure_stages, relation_gap_left, warnings
from nlrd.relations import get_relation
from nlrd.skeleton import rest_pose_mm
from tests.test_pipeline import TINY


class _Exact(nn.Module):
    """A stand-in relation transformer that returns a fixed map of the latent."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def _prior_and_motion() -> tuple[PosePrior, MotionAE]:
    torch.manual_seed(0)
    return PosePrior(latent_dim=8, hidden=16).eval(), MotionAE(latent_dim=8, hidden=8, embed_dim=8).eval()


@torch.no_grad()
def test_an_identity_transformer_leaves_the_whole_gap_and_an_exact_one_none():
    prior, motion = _prior_and_motion()
    flip = get_relation("flip", 4)
    raw = rest_pose_mm().expand(8, 17, 3) + torch.randn(8, 17, 3) * 80.0
    assert abs(relation_gap_left(prior, motion, _Exact(lambda z: z), flip, raw) - 1.0) < 1e-6
    _, counterpart = flip.poses(raw)
    target = prior.encode(counterpart)
    lookup = _Exact(lambda z: target)  # maps each anchor latent to its counterpart's
    assert relation_gap_left(prior, motion, lookup, flip, raw) < 1e-6


def test_warnings_name_each_missed_bar_and_its_knob():
    good = StageQuality(prior_mm=10.0, motion_mm=20.0, relations={"flip": 0.1}, target_mm=50.0, target_mean_pose_mm=100)
    assert warnings(good) == []
    bad = StageQuality(
        prior_mm=90.0,
        motion_mm=20.0,
        relations={"flip": 0.1, "slow_backward": 0.6},
        source_mm=80.0,
        source_mean_pose_mm=100.0,
        target_mm=120.0,
        target_mean_pose_mm=100.0,
    )
    lines = warnings(bad)
    assert len(lines) == 4
    assert any("stages.prior.steps" in line and "90.00" in line for line in lines)
    assert any("slow_backward" in line and RELATION_BAR.knob in line for line in lines)
    assert any("fresh source clips" in line and "0.80" in line for line in lines)
    assert any("source only on the target" in line and "1.20" in line for line in lines)
    assert StageQuality.from_dict(bad.as_dict()) == bad


def test_a_stage_that_fits_its_training_mocap_but_not_held_out_mocap_is_told_to_get_more_mocap():
    short_of_data = StageQuality(prior_mm=78.0, motion_mm=50.0, prior_train_mm=55.0, motion_train_mm=45.0)
    (line,) = warnings(short_of_data)
    assert line.startswith("pose prior reconstruction of held-out mocap (mm) is 78.00, above the bar 40:")
    assert "on the mocap it trained on it reads 55.00" in line and "more, or more varied, mocap" in line
    assert "rather than raise stages.prior.steps" in line
    undertrained = StageQuality(prior_mm=78.0, motion_mm=90.0, prior_train_mm=70.0, motion_train_mm=85.0)
    assert warnings(undertrained) == [
        "pose prior reconstruction of held-out mocap (mm) is 78.00, above the bar 40: raise stages.prior.steps",
        "motion embedding reconstruction of held-out clips (mm) is 90.00, above the bar 60: raise stages.motion.steps",
    ]
    transformer = StageQuality(prior_mm=10.0, motion_mm=20.0, relations={"flip": 0.66}, relations_train={"flip": 0.13})
    (line,) = warnings(transformer)
    assert (
        line.startswith("relation flip: ") and "it reads 0.13" in line and "rather than raise stages.relation" in line
    )
    cached_before = StageQuality.from_dict({"prior_mm": 78.0, "motion_mm": 50.0, "relations": {}})
    assert warnings(cached_before) == [
        "pose prior reconstruction of held-out mocap (mm) is 78.00, above the bar 40: raise stages.prior.steps"
    ]


def test_measure_stages_reports_every_figure_without_fresh_source():
    prior, motion = _prior_and_motion()
    encoder = nn.Sequential(nn.Flatten(), nn.LazyLinear(8))
    clip_len = 4
    relations = {name: get_relation(name, clip_len) for name in ("flip", "flip_backward")}
    stages = Stages(prior, motion, {name: _Exact(lambda z: z) for name in relations}, encoder)
    mocap = rest_pose_mm().expand(6, 2 * clip_len, 17, 3) + torch.randn(6, 2 * clip_len, 17, 3) * 50.0
    val = ClipSet(torch.zeros(2, clip_len, 3, 8, 8, dtype=torch.uint8), mocap[:2, :clip_len].clone())
    quality = measure_stages(stages, mocap[4:], clip_len, relations, val, mocap[:4])
    assert quality.prior_mm > 0 and quality.motion_mm > 0
    assert quality.prior_train_mm > 0 and quality.motion_train_mm > 0
    assert quality.relations == {"flip": 1.0, "flip_backward": 1.0} == quality.relations_train
    assert quality.target_mm > 0 and quality.target_mean_pose_mm > 0
    assert quality.source_mm is None and quality.source_mean_pose_mm is None


class _CanonicalProportions(nn.Module):
    """A stand-in prior that keeps every bone's direction and gives it the canonical length, as a perfect prior's
    decoder would: the latent is the 16 bone directions."""

    def encode(self, poses: torch.Tensor) -> torch.Tensor:
        return skeleton.to_bone_directions(poses).flatten(-2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return skeleton.from_bone_directions(z.unflatten(-1, (16, 3)), skeleton.bone_lengths_mm())

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(poses))


def test_prior_and_motion_figures_do_not_count_the_performers_proportions():
    """Mocap of a person 20% shorter than the canonical skeleton, read by a prior that loses nothing but the
    proportions: 0 mm, where plain MPJPE would charge the prior for the skeleton's canonical bone lengths."""
    torch.manual_seed(0)
    directions = skeleton.to_bone_directions(rest_pose_mm() + torch.randn(6, 8, 17, 3) * 60.0)
    mocap = skeleton.from_bone_directions(directions, 0.8 * skeleton.bone_lengths_mm())
    prior = _CanonicalProportions()
    stages = Stages(prior, _Exact(lambda z: z), {}, nn.Identity())
    unlabelled = ClipSet(torch.zeros(1, 4, 3, 8, 8, dtype=torch.uint8))
    quality = measure_stages(stages, mocap, 4, {}, unlabelled, mocap)
    assert quality.prior_mm < 1e-3 and quality.motion_mm < 1e-3
    assert mpjpe(prior(mocap), mocap).item() > 20.0  # what the figures read before


def test_stage_quality_and_reference_lines_are_measured_once_and_cached(tmp_path):
    cache = StageCache(tmp_path)
    keys = train_stages(TINY, ["flip", "flip_backward"], cache)
    quality = stage_quality(TINY, cache, keys)
    assert set(quality.relations) == {"flip", "flip_backward"}
    assert quality.source_mm is not None and quality.target_mm is not None  # the proxy world renders fresh clips
    assert quality_key(keys) in cache
    stamp = cache.path(quality_key(keys)).stat().st_mtime_ns
    assert stage_quality(TINY, cache, keys) == quality
    assert cache.path(quality_key(keys)).stat().st_mtime_ns == stamp
    references = reference_lines(cache, keys)
    assert list(references) == ["mean_pose", "source_only"]
    assert references["source_only"] == source_only_metrics(cache, keys)
    # The cached mean-pose line is the one ``nlrd.quality`` measured against the same target validation clips.
    assert references["mean_pose"]["mpjpe"] == pytest.approx(quality.target_mean_pose_mm)
    assert reference_lines(cache, keys) == references

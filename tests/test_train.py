from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import shutil

import pytest
import torch

from nlrd import skeleton
from nlrd.config import ConfigError
from nlrd.core import ClipSet, Stages
from nlrd.metrics import evaluate_protocols, mpjpe, pa_mpjpe
from nlrd.models import DiscriminatorLogits, PosePrior
from nlrd.relations import Relation, get_relation
from nlrd.train.adapt import (
    STATE_FILE,
    AdaptConfig,
    _pose_loss,
    _Step,
    adapt,
    adapt_state_step,
    loss_scales,
    loss_weights,
    readouts,
    term_name,
)
from nlrd.train.evaluate import evaluate
from nlrd.train.motion import MotionConfig, train_motion
from nlrd.train.prior import LEVEL_WEIGHTS, PriorConfig, adversarial_levels, adversarial_logits_loss, train_prior
from nlrd.train.relation import RelationConfig, train_relations
from nlrd.train.source import SourceConfig, train_source

T = 4
SIZE = 32
RELATIONS = ("flip", "backward", "slow_backward")
adapt_module = importlib.import_module("nlrd.train.adapt")


def random_sequences(n: int, length: int, seed: int) -> torch.Tensor:
    """Smoothly moving poses around the rest pose, ``(n, length, 17, 3)`` mm, random azimuth per sequence."""
    g = torch.Generator().manual_seed(seed)
    rest = skeleton.to_bone_directions(skeleton.rest_pose_mm())
    t = torch.arange(length, dtype=torch.float32)[None, :, None, None]
    amplitude = 0.6 * torch.rand(n, 1, 16, 3, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, 16, 3, generator=g)
    poses = skeleton.from_bone_directions(rest + amplitude * torch.sin(0.5 * t + phase))
    return skeleton.rotate(poses, skeleton.rotation_z(2 * math.pi * torch.rand(n, generator=g))[:, None])


def random_clips(n: int, length: int, seed: int, labelled: bool) -> ClipSet:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, length, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    return ClipSet(frames, random_sequences(n, length, seed) if labelled else None)


def losses(reports: list[dict], key: str = "loss") -> list[float]:
    return [r[key] for r in reports]


def improved(reports: list[dict], factor: float, key: str = "loss") -> bool:
    """Whether the mean of the last two reported losses is below ``factor`` times the first two."""
    values = losses(reports, key)
    return sum(values[-2:]) < factor * sum(values[:2])


@pytest.fixture(scope="module")
def mocap() -> torch.Tensor:
    return random_sequences(24, 2 * T, seed=0)


@pytest.fixture(scope="module")
def prior(mocap):
    cfg = PriorConfig(steps=300, batch_size=64, latent_dim=8, hidden=64, warmup_steps=100)
    return train_prior(cfg, mocap.flatten(0, 1))


@pytest.fixture(scope="module")
def motion(prior, mocap):
    return train_motion(MotionConfig(steps=10, batch_size=8, hidden=16, embed_dim=16), prior, mocap, T)


@pytest.fixture(scope="module")
def stages(prior, motion, mocap) -> Stages:
    relations = [get_relation(name, T) for name in RELATIONS]
    transformers = train_relations(
        RelationConfig(steps=10, batch_size=16, hidden=(32, 32)), prior, motion, mocap, relations
    )
    encoder = train_source(SourceConfig(steps=5, batch_size=8, width=8), prior, random_clips(2, T, 1, labelled=True))
    return Stages(prior, motion, transformers, encoder)


@pytest.fixture(scope="module")
def target() -> tuple[ClipSet, ClipSet]:
    return random_clips(6, 2 * T, seed=2, labelled=False), random_clips(2, T, seed=3, labelled=True)


def test_prior_lowers_reconstruction_loss(mocap):
    reports: list[dict] = []
    cfg = PriorConfig(steps=80, batch_size=64, latent_dim=8, hidden=64, warmup_steps=80, report_every=5)
    prior = train_prior(cfg, mocap.flatten(0, 1), reports.append)
    assert [r["step"] for r in reports] == list(range(5, 81, 5))
    assert improved(reports, 0.7, "recon") and improved(reports, 0.9, "cycle")
    assert not prior.training and not any(p.requires_grad for p in prior.parameters())


def test_prior_adversarial_phase_runs_after_warmup(mocap):
    reports: list[dict] = []
    cfg = PriorConfig(steps=6, batch_size=32, latent_dim=8, hidden=32, warmup_steps=3, report_every=1)
    train_prior(cfg, mocap.flatten(0, 1), reports.append)
    levels = ("adv_joint", "adv_part", "adv_body", "critic")
    assert all(r["adversarial"] == 0 and all(r[k] == 0 for k in levels) for r in reports[:3])
    assert all(r["adversarial"] > 0 and all(r[k] > 0 for k in levels) for r in reports[3:])
    for r in reports[3:]:
        assert r["adversarial"] == pytest.approx(r["adv_joint"] + r["adv_part"] + r["adv_body"], rel=1e-5)


def test_adversarial_levels_weigh_each_logit_and_each_level_equally():
    zeros = DiscriminatorLogits(joint=torch.zeros(4, 17), part=torch.zeros(4, 5), body=torch.zeros(4))
    for real in (True, False):
        levels = adversarial_levels(zeros, real)
        assert set(levels) == {"joint", "part", "body"}
        for value in levels.values():  # a logit of 0 costs log 2 whatever the target: each level log 2 / 3
            assert value.item() == pytest.approx(math.log(2) / 3)
        assert adversarial_logits_loss(zeros, real).item() == pytest.approx(math.log(2))
    assert LEVEL_WEIGHTS == {"joint": 1 / 51, "part": 1 / 15, "body": 1 / 3}
    # One confidently wrong logit per level, in one sample of two: its BCE (about 20) enters at its weight / 2.
    wrong = DiscriminatorLogits(joint=torch.zeros(2, 17), part=torch.zeros(2, 5), body=torch.zeros(2))
    wrong.joint[0, 4] = wrong.part[1, 2] = wrong.body[0] = -20.0
    bce = torch.nn.functional.softplus(torch.tensor(20.0)).item()
    levels = adversarial_levels(wrong, True)
    assert levels["joint"].item() == pytest.approx((33 * math.log(2) + bce) / 2 / 51)
    assert levels["part"].item() == pytest.approx((9 * math.log(2) + bce) / 2 / 15)
    assert levels["body"].item() == pytest.approx((math.log(2) + bce) / 2 / 3)


def rest_pose_variants(n: int, seed: int) -> torch.Tensor:
    """Rest poses with random shoulder raises, elbow bends, hip flexions and knee bends (8 angles, in the
    frontal plane for arms and the sagittal plane for legs) at a random azimuth, ``(n, 17, 3)`` mm."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, 8, generator=g) * torch.tensor([2.5, 2.0, 2.5, 2.0, 1.5, 2.0, 1.5, 2.0])).unbind(-1)
    down, right, left, forward = (torch.tensor(v) for v in ((0.0, 0, -1), (-1.0, 0, 0), (1.0, 0, 0), (0.0, -1, 0)))

    def towards(angle: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        return torch.cos(angle)[:, None] * down + torch.sin(angle)[:, None] * axis

    directions = skeleton.to_bone_directions(skeleton.rest_pose_mm()).repeat(n, 1, 1)
    limbs = (((2, 3), 0, right, 1), ((5, 6), 2, left, 1), ((9, 10), 4, forward, -1), ((13, 14), 6, forward, -1))
    for (upper, lower), i, axis, bend_sign in limbs:
        directions[:, upper] = towards(a[i], axis)
        directions[:, lower] = towards(a[i] + bend_sign * a[i + 1], axis)
    poses = skeleton.from_bone_directions(directions)
    return skeleton.rotate(poses, skeleton.rotation_z(2 * math.pi * torch.rand(n, generator=g)))


def test_prior_learns_rest_pose_variants():
    """Measured: about 615 mm untrained, 115-120 mm after these 200 steps (50 of them adversarial)."""
    train, held_out = rest_pose_variants(256, seed=0), rest_pose_variants(64, seed=1)
    cfg = PriorConfig(steps=200, batch_size=64, latent_dim=32, hidden=64, warmup_steps=150)
    prior = train_prior(cfg, train)
    with torch.no_grad():
        untrained = mpjpe(PosePrior(32, 64)(held_out), held_out).item()
        assert mpjpe(prior(held_out), held_out).item() < min(150.0, 0.3 * untrained)


def test_prior_divergence_raises(mocap):
    with pytest.raises(FloatingPointError, match="prior loss .* at step"):
        train_prior(PriorConfig(steps=5, batch_size=16, latent_dim=8, hidden=32, lr=float("inf")), mocap.flatten(0, 1))


def test_motion_lowers_loss(prior, mocap):
    reports: list[dict] = []
    cfg = MotionConfig(steps=60, batch_size=16, hidden=32, embed_dim=16, report_every=5)
    motion = train_motion(cfg, prior, mocap, T, reports.append)
    assert improved(reports, 0.85)
    assert motion.encode(prior.encode(mocap[:, :T])).shape == (len(mocap), 16)


def test_motion_refuses_sequences_shorter_than_a_clip(prior, mocap):
    with pytest.raises(ValueError, match="clip_len"):
        train_motion(MotionConfig(steps=1), prior, mocap, 3 * T)


def test_relations_lower_loss_one_transformer_each(prior, motion, mocap):
    reports: list[dict] = []
    relations = [get_relation(name, T) for name in RELATIONS]
    cfg = RelationConfig(steps=60, batch_size=32, hidden=(64, 64), report_every=10)
    transformers = train_relations(cfg, prior, motion, mocap, relations, reports.append)
    assert set(transformers) == set(RELATIONS)
    assert transformers["flip"].dim == 8 and transformers["slow_backward"].dim == 16
    assert improved(reports, 0.8)
    assert {"loss_flip", "loss_backward", "loss_slow_backward"} <= set(reports[-1])


def test_relations_refuse_too_short_mocap(prior, motion, mocap):
    with pytest.raises(ValueError, match="slow_backward"):
        train_relations(RelationConfig(steps=1), prior, motion, mocap[:, :T], [get_relation("slow_backward", T)])


def test_source_lowers_loss(prior):
    reports: list[dict] = []
    cfg = SourceConfig(steps=80, batch_size=8, width=8, report_every=5, augment=False)  # fitting, not invariance
    encoder = train_source(cfg, prior, random_clips(2, T, seed=4, labelled=True), reports.append)
    assert improved(reports, 0.85)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_source_needs_labels(prior):
    with pytest.raises(ValueError, match="labelled"):
        train_source(SourceConfig(steps=1), prior, random_clips(1, T, seed=0, labelled=False))


def test_evaluate_matches_the_metrics(stages, target):
    val = target[1]
    result = evaluate(stages.encoder, stages.prior, val, batch_size=3)
    with torch.no_grad():
        pred = stages.prior.decode(stages.encoder(val.images().flatten(0, 1)))
    expected = val.poses.flatten(0, 1)
    assert result["mpjpe"] == pytest.approx(mpjpe(pred, expected).item(), rel=1e-4)
    assert result["pa_mpjpe"] == pytest.approx(pa_mpjpe(pred, expected).item(), rel=1e-4)
    protocols = evaluate_protocols(pred, expected)
    assert set(result) == set(protocols) >= {"mpjpe_gtbone", "pa_mpjpe_gtbone", "pck150", "auc"}
    assert all(result[k] == pytest.approx(v, rel=1e-4, abs=1e-6) for k, v in protocols.items())


def test_evaluate_counts_only_the_clips_eval_joints(stages, target):
    val = dataclasses.replace(target[1], eval_joints=(0, 1, 2, 3, 4, 8))
    result = evaluate(stages.encoder, stages.prior, val)
    with torch.no_grad():
        pred = stages.prior.decode(stages.encoder(val.images().flatten(0, 1)))
    expected = evaluate_protocols(pred, val.poses.flatten(0, 1), joints=val.eval_joints)
    assert all(result[k] == pytest.approx(v, rel=1e-4, abs=1e-6) for k, v in expected.items())
    assert result["mpjpe"] != pytest.approx(evaluate(stages.encoder, stages.prior, target[1])["mpjpe"], rel=1e-3)


@pytest.mark.parametrize("schedule", ["round_robin", "weighted"])
def test_adapt_reports_and_trains_only_the_chosen_block(stages, target, schedule):
    before = {k: v.clone() for k, v in stages.encoder.state_dict().items()}
    reports: list[dict] = []
    cfg = AdaptConfig(relations=RELATIONS, steps=5, batch_clips=2, eval_every=2, schedule=schedule)
    encoder = adapt(cfg, stages, *target, report=reports.append)
    assert [r["step"] for r in reports] == [2, 4, 5]
    keys = {"step", "loss", "mpjpe", "pa_mpjpe", "mpjpe_gtbone", "pa_mpjpe_gtbone", "pck150", "auc"}
    assert all(keys <= set(r) and math.isfinite(r["mpjpe"]) for r in reports)
    changed = {k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("block3.") for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in stages.encoder.state_dict().items())  # source untouched
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


def test_adapt_is_reproducible_and_honours_the_block(stages, target):
    cfg = AdaptConfig(relations=("flip",), steps=2, batch_clips=2, trainable_block="head", w_hcr=0.0)
    a, b = adapt(cfg, stages, *target), adapt(cfg, stages, *target)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    changed = {k for k, v in a.state_dict().items() if not torch.equal(v, stages.encoder.state_dict()[k])}
    assert changed and all(k.startswith("head.") for k in changed)


def test_the_weighted_schedule_trains_at_lr_weighted_alone(stages, target):
    """Its one optimiser runs at ``lr_weighted``; the round robin's per-loss rates change nothing."""
    cfg = AdaptConfig(relations=("flip",), steps=2, batch_clips=2, schedule="weighted")
    base = adapt(cfg, stages, *target).state_dict()
    other_rates = adapt(dataclasses.replace(cfg, lr_nonlocal=1e-2, lr_contrastive=1e-2), stages, *target)
    assert all(torch.equal(v, base[k]) for k, v in other_rates.state_dict().items())
    faster = adapt(dataclasses.replace(cfg, lr_weighted=1e-2), stages, *target).state_dict()
    assert any(not torch.equal(v, base[k]) for k, v in faster.items())


def test_adapt_raises_on_a_non_finite_contrastive_loss(stages, target, monkeypatch):
    monkeypatch.setattr(adapt_module, "info_nce", lambda *args: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="lcr loss .* at step 1"):
        adapt(AdaptConfig(relations=RELATIONS, steps=3, batch_clips=2), stages, *target)


def test_adapt_raises_on_a_non_finite_nonlocal_loss(stages, target):
    broken = Stages(stages.prior, stages.motion, {"flip": _NaN()}, stages.encoder)
    cfg = AdaptConfig(relations=("flip",), steps=3, batch_clips=2, w_lcr=0.0, w_hcr=0.0, schedule="weighted")
    with pytest.raises(FloatingPointError, match="pose_flip loss .* at step 1"):
        adapt(cfg, broken, *target)


class _NaN(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"relations": ("moonwalk",)}, "unknown relation 'moonwalk'; allowed: flip"),
        ({"relations": ("flip_forward",)}, "no relation transformer .*flip_forward"),
        ({"trainable_block": "block9"}, "unknown trainable block 'block9'"),
    ],
)
def test_adapt_refuses_what_the_stages_cannot_serve(stages, target, change, message):
    cfg = AdaptConfig(**{"relations": RELATIONS, "steps": 1, "batch_clips": 2, **change})
    with pytest.raises(ValueError, match=message):
        adapt(cfg, stages, *target)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "random"}, "AdaptConfig.schedule got 'random'; allowed: round_robin, weighted"),
        ({"nonlocal_space": "image"}, "AdaptConfig.nonlocal_space got 'image'; allowed: latent, pose"),
        ({"steps": 0}, "AdaptConfig.steps must be at least 1, got 0"),
        ({"tau": 0.0}, "AdaptConfig.tau must be > 0, got 0.0"),
        ({"lr_nonlocal": -1e-4}, "AdaptConfig.lr_nonlocal must be > 0"),
        ({"w_source": -1.0}, "AdaptConfig.w_source must be >= 0, got -1.0"),
        ({"w_pose": float("nan")}, "AdaptConfig.w_pose must be >= 0, got nan"),
    ],
)
def test_adapt_config_refuses_values_out_of_range(change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        AdaptConfig(**change)
    assert caught.value.field == next(iter(change))


def test_loss_scales_measures_every_trained_loss_without_training(stages, target):
    cfg = AdaptConfig(relations=RELATIONS, batch_clips=2, w_hcr=0.0, nonlocal_space="pose")
    before = {k: v.clone() for k, v in stages.encoder.state_dict().items()}
    scales = loss_scales(cfg, stages, target[0], clip_len=T, batches=2)
    assert list(scales) == ["lcr", "pose_flip", "motion_backward", "motion_slow_backward"]  # hcr has weight 0
    assert all(math.isfinite(v) and v > 0 for v in scales.values())
    assert scales == loss_scales(cfg, stages, target[0], clip_len=T, batches=2)  # seeded
    assert all(torch.equal(before[k], v) for k, v in stages.encoder.state_dict().items())
    reweighted = dataclasses.replace(cfg, w_pose=3.0)
    assert loss_scales(reweighted, stages, target[0], clip_len=T, batches=2) == scales  # values before weighting


def test_loss_weights_name_the_weighted_losses_in_turn_order():
    relations = [get_relation(name, T) for name in RELATIONS]
    cfg = AdaptConfig(relations=RELATIONS, w_hcr=0.0, w_motion=0.5, w_source=2.0)
    weights = loss_weights(cfg, relations)
    assert list(weights.items()) == [
        ("lcr", 1.0),
        ("source", 2.0),
        ("pose_flip", 1.0),
        ("motion_backward", 0.5),
        ("motion_slow_backward", 0.5),
    ]
    assert [term_name(r) for r in relations] == ["pose_flip", "motion_backward", "motion_slow_backward"]
    assert loss_weights(dataclasses.replace(cfg, w_lcr=0.0, w_source=0.0, w_pose=0.0, w_motion=0.0), relations) == {}


def test_the_source_anchor_trains_towards_the_source_labels(stages, target):
    with torch.no_grad():  # a pose the frozen decoder can produce: the test measures the anchor, not the prior's reach
        label = stages.prior.decode(stages.prior.encode(skeleton.rest_pose_mm()[None]))[0]
    source = ClipSet(random_clips(2, T, 1, labelled=False).frames, label.expand(2, T, 17, 3).clone())
    cfg = AdaptConfig(relations=(), steps=30, batch_clips=2, w_lcr=0.0, w_hcr=0.0, w_source=1.0, lr_source=1e-3)
    anchored = adapt(dataclasses.replace(cfg, trainable_block="all"), stages, *target, source=source)
    before, after = evaluate(stages.encoder, stages.prior, source), evaluate(anchored, stages.prior, source)
    assert after["mpjpe"] < 0.7 * before["mpjpe"]


def test_the_source_anchor_takes_its_turn_and_is_checked(stages, target, monkeypatch):
    source = random_clips(2, T, 1, labelled=True)
    cfg = AdaptConfig(relations=("flip",), steps=3, batch_clips=2, w_lcr=0.0, w_hcr=0.0, w_source=1.0)
    monkeypatch.setattr(adapt_module, "pose_l1", lambda *args: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="source loss .* at step 1"):
        adapt(cfg, stages, *target, source=source)
    for missing in (None, random_clips(2, T, 1, labelled=False)):
        with pytest.raises(ValueError, match="w_source is not 0, so adapt needs the labelled source clips"):
            adapt(cfg, stages, *target, source=missing)


def test_adapt_refuses_target_clips_shorter_than_the_relations(stages, target):
    short = ClipSet(target[0].frames[:, :T])
    with pytest.raises(ValueError, match="need 8"):
        adapt(AdaptConfig(relations=RELATIONS, steps=1), stages, short, target[1])


@pytest.mark.parametrize("steps", [1, 2, 10, 1200])
def test_one_cycle_warms_up_then_decays_for_any_length(steps):
    from nlrd.train.source import one_cycle

    factors = [one_cycle(s, steps, 0.1) for s in range(steps)]
    assert all(0 <= f <= 1 for f in factors) and max(factors) == 1.0
    peak = factors.index(1.0)
    assert factors[: peak + 1] == sorted(factors[: peak + 1])
    assert factors[peak:] == sorted(factors[peak:], reverse=True)


@pytest.mark.parametrize("space", ["latent", "pose"])
def test_pose_level_nonlocal_loss_compares_latents_or_decoded_poses(stages, target, space):
    flip = Relation("flip", "pose", spatial="flip")
    torch.manual_seed(0)
    step = _Step(stages.encoder, target[0].images()[:2], T)
    readout = readouts(space, stages.prior, stages.motion, T)["pose"]
    loss = _pose_loss(step, flip, torch.nn.Identity(), readout)
    frames = step.view[:, :T].flatten(0, 1)
    with torch.no_grad():
        anchor, counterpart = stages.encoder(frames), stages.encoder(frames.flip(-1))
    if space == "pose":  # decoded poses, in metres
        anchor, counterpart = stages.prior.decode(anchor) / 1000.0, stages.prior.decode(counterpart) / 1000.0
    assert loss.item() == pytest.approx((anchor - counterpart).abs().mean().item(), rel=1e-5)


def test_the_exact_pose_map_replaces_the_transformer_of_pose_level_losses(stages, target):
    class Unused(torch.nn.Module):
        def forward(self, z):
            raise AssertionError("the exact pose map must not read the transformer")

    flip = Relation("flip", "pose", spatial="flip")
    torch.manual_seed(0)
    step = _Step(stages.encoder, target[0].images()[:2], T)
    readout = readouts("pose", stages.prior, stages.motion, T)["pose"]
    loss = _pose_loss(step, flip, Unused(), readout, exact=True)
    frames = step.view[:, :T].flatten(0, 1)
    with torch.no_grad():
        anchor = stages.prior.decode(stages.encoder(frames)) / 1000.0
        counterpart = stages.prior.decode(stages.encoder(frames.flip(-1))) / 1000.0
    assert loss.item() == pytest.approx((skeleton.flip(anchor) - counterpart).abs().mean().item(), rel=1e-5)
    cfg = AdaptConfig(relations=RELATIONS, steps=2, batch_clips=2, nonlocal_space="pose", exact_pose_map=True)
    changed = adapt(cfg, stages, *target).state_dict()
    assert any(not torch.equal(v, stages.encoder.state_dict()[k]) for k, v in changed.items())
    with pytest.raises(ConfigError, match="exact_pose_map maps decoded poses: it needs nonlocal_space pose"):
        AdaptConfig(exact_pose_map=True)


def test_adapt_in_pose_space_trains_every_relation_level(stages, target):
    cfg = AdaptConfig(relations=RELATIONS, steps=3, batch_clips=2, w_lcr=0.0, w_hcr=0.0, nonlocal_space="pose")
    encoder = adapt(cfg, stages, *target)
    changed = {k for k, v in encoder.state_dict().items() if not torch.equal(v, stages.encoder.state_dict()[k])}
    assert changed and all(k.startswith("block3.") for k in changed)


def _record_autocast(monkeypatch, module_name: str) -> list[bool]:
    """Replace ``autocast`` in a training module by a recorder of its ``enabled`` flags."""
    calls: list[bool] = []

    def recorder(device, enabled=True):
        calls.append(enabled)
        return contextlib.nullcontext()

    monkeypatch.setattr(importlib.import_module(module_name), "autocast", recorder)
    return calls


@pytest.mark.parametrize("bf16", [False, True])
def test_adapt_passes_its_bf16_flag_to_autocast(stages, target, monkeypatch, bf16):
    calls = _record_autocast(monkeypatch, "nlrd.train.adapt")
    adapt(AdaptConfig(relations=("flip",), steps=2, batch_clips=2, bf16=bf16), stages, *target)
    assert calls and set(calls) == {bf16}


def test_bf16_is_a_no_op_on_the_cpu(stages, target):
    cfg = AdaptConfig(relations=("flip", "backward"), steps=3, batch_clips=2)
    plain, flagged = adapt(cfg, stages, *target), adapt(AdaptConfig(**{**vars(cfg), "bf16": True}), stages, *target)
    assert all(torch.equal(v, flagged.state_dict()[k]) for k, v in plain.state_dict().items())


def test_stage_loops_pass_their_bf16_flag_to_autocast(prior, motion, mocap, monkeypatch):
    calls = {
        name: _record_autocast(monkeypatch, f"nlrd.train.{name}") for name in ("prior", "motion", "relation", "source")
    }
    train_prior(PriorConfig(steps=2, batch_size=8, latent_dim=8, hidden=32, warmup_steps=1, bf16=True), mocap[:, 0])
    train_motion(MotionConfig(steps=1, batch_size=4, hidden=16, embed_dim=16, bf16=True), prior, mocap, T)
    relations = [get_relation("flip", T)]
    train_relations(RelationConfig(steps=1, batch_size=4, hidden=(8,), bf16=True), prior, motion, mocap, relations)
    train_source(SourceConfig(steps=1, batch_size=2, width=8, bf16=True), prior, random_clips(1, T, 5, labelled=True))
    assert all(recorded and set(recorded) == {True} for recorded in calls.values()), calls


def test_every_loop_runs_under_bf16_autocast(mocap, target, monkeypatch):
    """The bf16 path end to end, with the CPU's bf16 autocast standing in for CUDA's (which a CPU-only build
    cannot run): every stage and both adaptation schedules, both non-local spaces and the source anchor train
    through autocast regions without dtype clashes, keep float32 parameters and end with finite metrics that
    differ from float32's (so autocast did run)."""

    def cpu_bf16(device, enabled=True):
        return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()

    def all_stages(bf16: bool) -> Stages:
        p = train_prior(
            PriorConfig(steps=6, batch_size=32, latent_dim=8, hidden=32, warmup_steps=3, bf16=bf16), mocap[:, 0]
        )
        m = train_motion(MotionConfig(steps=2, batch_size=4, hidden=16, embed_dim=16, bf16=bf16), p, mocap, T)
        relations = [get_relation(name, T) for name in RELATIONS]
        transformers = train_relations(
            RelationConfig(steps=2, batch_size=8, hidden=(16,), bf16=bf16), p, m, mocap, relations
        )
        source = SourceConfig(steps=2, batch_size=4, width=8, bf16=bf16)
        return Stages(p, m, transformers, train_source(source, p, random_clips(2, T, 1, labelled=True)))

    def adapted(stages: Stages, bf16: bool, schedule: str, space: str) -> tuple[torch.nn.Module, dict]:
        reports: list[dict] = []
        cfg = AdaptConfig(
            relations=RELATIONS,
            steps=2,
            batch_clips=2,
            schedule=schedule,
            nonlocal_space=space,
            w_source=1.0,
            bf16=bf16,
        )
        encoder = adapt(cfg, stages, *target, reports.append, source=random_clips(2, T, 1, labelled=True))
        return encoder, reports[-1]

    torch.manual_seed(0)
    plain = all_stages(bf16=False)
    for name in ("prior", "motion", "relation", "source", "adapt"):
        monkeypatch.setattr(importlib.import_module(f"nlrd.train.{name}"), "autocast", cpu_bf16)
    torch.manual_seed(0)
    mixed = all_stages(bf16=True)
    assert not torch.equal(plain.encoder.block1[0].weight, mixed.encoder.block1[0].weight)
    for schedule, space in (("round_robin", "latent"), ("weighted", "pose")):
        torch.manual_seed(1)
        encoder, last = adapted(mixed, True, schedule, space)
        assert all(v.dtype == torch.float32 for v in encoder.state_dict().values() if v.is_floating_point())
        assert all(math.isfinite(last[key]) for key in ("loss", "mpjpe", "pa_mpjpe"))
        torch.manual_seed(1)
        assert adapted(mixed, False, schedule, space)[1]["loss"] != last["loss"]


@pytest.mark.parametrize(("schedule", "w_source"), [("round_robin", 0.0), ("weighted", 0.0), ("round_robin", 1.0)])
def test_a_resumed_adaptation_continues_exactly(stages, target, tmp_path, schedule, w_source):
    """Stopped after step 4 and resumed from its checkpoint, adaptation ends bit for bit where an uninterrupted
    run ends, reporting only the steps after the checkpoint (the source anchor's draws included)."""
    cfg = AdaptConfig(relations=RELATIONS, steps=6, batch_clips=2, eval_every=2, schedule=schedule, w_source=w_source)
    source = random_clips(2, T, 1, labelled=True)
    saved = tmp_path / "at-step-4"

    def keep_step_4(metrics: dict) -> None:
        if metrics["step"] == 4:
            shutil.copytree(tmp_path / "live", saved)

    whole = adapt(cfg, stages, *target, report=keep_step_4, checkpoint_dir=tmp_path / "live", source=source)
    assert adapt_state_step(saved / STATE_FILE) == 4
    reports: list[dict] = []
    resumed = adapt(cfg, stages, *target, report=reports.append, resume_from=saved, source=source)
    assert [r["step"] for r in reports] == [6]
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())
    changed = [k for k, v in whole.state_dict().items() if not torch.equal(v, stages.encoder.state_dict()[k])]
    assert changed  # the comparison is between trained encoders, not two copies of the source


def test_resume_refuses_a_checkpoint_of_another_config(stages, target, tmp_path):
    cfg = AdaptConfig(relations=RELATIONS, steps=2, batch_clips=2, eval_every=2)
    adapt(cfg, stages, *target, report=lambda m: None, checkpoint_dir=tmp_path)
    other = dataclasses.replace(cfg, relations=("flip",), steps=4)
    with pytest.raises(ValueError, match="cannot resume adaptation from .*adapt_state.pt: .*optimisers saved"):
        adapt(other, stages, *target, resume_from=tmp_path)


def test_source_augmentation_without_the_flip_keeps_every_pose_and_the_other_draws():
    from nlrd.train.source import augment_labelled

    images = torch.rand(64, 3, 16, 16)
    poses = torch.randn(64, 17, 3) * 100
    torch.manual_seed(0)
    flipped_images, flipped_poses = augment_labelled(images, poses)
    torch.manual_seed(0)
    kept_images, kept_poses = augment_labelled(images, poses, flip=False)
    assert torch.equal(kept_poses, poses)
    changed = ~torch.isclose(flipped_poses, poses).flatten(1).all(1)
    assert 0 < changed.sum() < 64  # about half are flipped with the flip
    assert torch.equal(flipped_images[~changed], kept_images[~changed])  # the same zoom, colour and noise draws

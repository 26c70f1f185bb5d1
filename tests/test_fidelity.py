"""The options that follow the paper where our defaults differ: each one changes what it says, and only that."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from nlrd import skeleton
from nlrd.config import ConfigError
from nlrd.core import ClipSet, Stages
from nlrd.models import MotionAE, PosePrior, RelationTransformer, ResNet50, build_image_encoder
from nlrd.models.heads import feature_dim, latent_and_feature
from nlrd.pipeline import StageConfigs, stage_keys
from nlrd.relations import RELATION_NAMES, catalogue, get_relation, is_relation_name
from nlrd.train.adapt import AdaptConfig, _pose_loss, _Step, adapt, jitter_hue
from nlrd.train.common import rotate_hue
from nlrd.world.domains import TARGET
from nlrd.world.render import _project
from search.space import SpaceError, parse_space
from tests.conftest import TINY_SPACE

T = 4
SIZE = 32
LATENT = 8


def random_poses(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rest = skeleton.to_bone_directions(skeleton.rest_pose_mm())
    poses = skeleton.from_bone_directions(rest + 0.4 * torch.randn(n, 16, 3, generator=g))
    return skeleton.rotate(poses, skeleton.rotation_z(2 * math.pi * torch.rand(n, generator=g)))


def random_clips(n: int, length: int, seed: int, labelled: bool) -> ClipSet:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, length, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    poses = random_poses(n * length, seed).unflatten(0, (n, length)) if labelled else None
    return ClipSet(frames, poses)


@pytest.fixture(scope="module")
def stages() -> Stages:
    """Untrained small stages: the options are about which gradients and inputs exist, not about accuracy."""
    torch.manual_seed(0)
    prior, motion = PosePrior(LATENT, 32), MotionAE(LATENT, hidden=16, embed_dim=16, num_layers=1)
    transformers = {
        "flip": RelationTransformer(LATENT, (32,)),
        "backward": RelationTransformer(16, (32,)),
        "inplane30_tilt18": RelationTransformer(LATENT, (32,)),
    }
    return Stages(prior, motion, transformers, build_image_encoder("small_cnn", latent_dim=LATENT, width=8))


@pytest.fixture(scope="module")
def target() -> tuple[ClipSet, ClipSet]:
    return random_clips(6, 2 * T, seed=2, labelled=False), random_clips(2, T, seed=3, labelled=True)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# In-plane rotation about the optical axis.


def test_a_tilted_inplane_relation_is_a_relation_of_its_own_name():
    tilted = get_relation("inplane30_tilt18", T)
    assert (tilted.name, tilted.level, tilted.spatial, tilted.degrees, tilted.tilt_deg) == (
        "inplane30_tilt18",
        "pose",
        "rotate",
        30.0,
        18.0,
    )
    assert get_relation("inplane5_tilt-12", T).tilt_deg == -12.0
    assert "inplane30_tilt18" not in RELATION_NAMES and "inplane30_tilt18" not in catalogue(T)
    assert get_relation("inplane30", T).tilt_deg == 0.0  # the catalogue's relations turn about +y, as before
    for bad in ("flip_tilt18", "backward_tilt18", "inplane30_tilt0", "inplane30_tilt90", "inplane30_tilt018",
                "inplane30_tilt18.5", "inplane31_tilt18"):  # fmt: skip
        assert not is_relation_name(bad)
        with pytest.raises(ValueError, match=f"unknown relation '{bad}'; allowed: flip.*_tilt<whole degrees"):
            get_relation(bad, T)
    keys = stage_keys(StageConfigs(), ["inplane30", "inplane30_tilt18"]).relations
    assert keys["inplane30"] != keys["inplane30_tilt18"]  # its own transformer in the stage cache


def test_the_default_turn_keeps_y_and_the_tilted_one_keeps_the_depth_along_its_optical_axis():
    poses = random_poses(5, seed=1)
    _, level = get_relation("inplane30", T).poses(poses)
    _, tilted = get_relation("inplane30_tilt18", T).poses(poses)
    torch.testing.assert_close(level[..., 1], poses[..., 1])
    axis = torch.tensor([0.0, math.cos(math.radians(18)), -math.sin(math.radians(18))])
    torch.testing.assert_close(tilted @ axis, poses @ axis, atol=1e-3, rtol=0)
    assert (tilted[..., 1] - poses[..., 1]).abs().max() > 10.0  # mm: it is not the level turn
    images = torch.rand(2, 3, 8, 8)
    for side, level_side in zip(
        get_relation("inplane30_tilt18", T).images(images), get_relation("inplane30", T).images(images), strict=True
    ):
        assert torch.equal(side, level_side)  # the image side is the same rotation of the image


@pytest.mark.parametrize("elevation", [0.0, 18.0, -10.0])
def test_a_turn_about_the_optical_axis_turns_the_rendered_joints_in_the_image_plane(elevation):
    """Through the renderer's camera at ``elevation``: rotating the joints about that camera's optical axis moves
    every projected joint by the same rotation of the image as ``rotate_images`` (counter-clockwise, v up)."""
    poses = random_poses(4, seed=3)
    e = torch.full((4,), math.radians(elevation))
    name = "inplane30" if elevation == 0 else f"inplane30_tilt{elevation:.0f}"
    _, turned = get_relation(name, T).poses(poses)
    u, v, depth = _project(poses, e, TARGET.distance_mm, focal_px=50.0)
    u_turned, v_turned, depth_turned = _project(turned, e, TARGET.distance_mm, focal_px=50.0)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    torch.testing.assert_close(u_turned, c * u - s * v, atol=1e-3, rtol=0)
    torch.testing.assert_close(v_turned, s * u + c * v, atol=1e-3, rtol=0)
    torch.testing.assert_close(depth_turned, depth, atol=1e-2, rtol=0)
    if elevation != 0:  # the level turn is off under a raised camera
        _, level = get_relation("inplane30", T).poses(poses)
        assert (_project(level, e, TARGET.distance_mm, focal_px=50.0)[0] - u_turned).abs().max() > 0.1


def test_adaptation_distils_a_tilted_relation(stages, target):
    cfg = AdaptConfig(relations=("inplane30_tilt18",), steps=2, batch_clips=2, w_lcr=0.0, w_hcr=0.0)
    assert not _same(adapt(cfg, stages, *target), stages.encoder)


# Gradients through both sides of the pose-level non-local loss.


class _Detached(torch.nn.Module):
    """A transformer the anchor's gradient cannot pass: whatever trains G then comes through the counterpart."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.detach() + 1.0


@pytest.mark.parametrize("through_counterpart", [False, True])
def test_the_counterpart_gets_gradients_only_under_both(stages, target, through_counterpart):
    encoder = copy.deepcopy(stages.encoder)
    torch.manual_seed(0)
    step = _Step(encoder, target[0].images()[:2], T)
    loss = _pose_loss(step, get_relation("flip", T), _Detached(), torch.nn.Identity(), through_counterpart)
    assert loss.requires_grad == through_counterpart
    if through_counterpart:
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_nonlocal_grad_both_changes_the_pose_level_losses_only(stages, target):
    pose = AdaptConfig(relations=("flip",), steps=2, batch_clips=2, w_lcr=0.0, w_hcr=0.0)
    both = dataclasses.replace(pose, nonlocal_grad="both")
    assert not _same(adapt(pose, stages, *target), adapt(both, stages, *target))
    motion = dataclasses.replace(pose, relations=("backward",))
    motion_both = dataclasses.replace(motion, nonlocal_grad="both")
    assert _same(adapt(motion, stages, *target), adapt(motion_both, stages, *target))


# The LCR projection head on the encoder's feature before the latent.


@pytest.mark.parametrize("encoder", [build_image_encoder("small_cnn", latent_dim=LATENT, width=8), ResNet50(LATENT, 8)])
def test_latent_and_feature_is_one_pass_of_the_encoder(encoder):
    encoder.eval()
    images = torch.rand(3, 3, SIZE, SIZE)
    latent, feature = latent_and_feature(encoder, images)
    assert torch.equal(latent, encoder(images))
    assert feature.shape == (3, feature_dim(encoder)) and feature_dim(encoder) != LATENT
    torch.testing.assert_close(10 * torch.tanh(encoder.head[-1](feature) / 10), latent)
    assert not encoder.head[-1]._forward_pre_hooks  # the hook is gone


def test_the_lcr_head_may_read_the_feature_before_the_latent(stages, target):
    cfg = AdaptConfig(relations=(), steps=2, batch_clips=2, w_hcr=0.0)
    feature = dataclasses.replace(cfg, lcr_head_input="feature")
    torch.manual_seed(0)
    step = _Step(stages.encoder, target[0].images()[:2], T, lcr_head_input="feature")
    (z1, _), (f1, _) = step.contrastive
    assert z1.shape == (2, T, LATENT) and f1.shape == (2, T, feature_dim(stages.encoder))
    adapted = adapt(feature, stages, *target)
    assert not _same(adapted, adapt(cfg, stages, *target)) and not _same(adapted, stages.encoder)


# Hue jitter in the contrastive positives.


def test_rotate_hue_keeps_greys_and_the_grey_level():
    images = torch.rand(4, 3, 5, 5)
    images[:, :, 0, 0] = 0.3  # a grey pixel
    turned = rotate_hue(images, torch.full((4,), 2.0))
    torch.testing.assert_close(turned[:, :, 0, 0], images[:, :, 0, 0])
    torch.testing.assert_close(turned.mean(1), images.mean(1))
    assert (turned - images).abs().max() > 0.1


def test_positive_hue_turns_the_positive_only(target):
    clips = target[0].images()[:2]
    state = torch.get_rng_state()
    assert jitter_hue(clips, 0.0) is clips and torch.equal(torch.get_rng_state(), state)  # off: nothing drawn
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, LATENT))
    views = {}
    for hue in (0.0, 1.0):
        torch.manual_seed(0)
        views[hue] = _Step(encoder, clips, T, positive_hue=hue).contrastive[0]
    assert torch.equal(views[0.0][0], views[1.0][0])  # the anchor view
    assert not torch.allclose(views[0.0][1], views[1.0][1])  # the positive


def test_positive_hue_changes_the_contrastive_adaptation(stages, target):
    cfg = AdaptConfig(relations=(), steps=2, batch_clips=2, w_hcr=0.0)
    assert not _same(adapt(cfg, stages, *target), adapt(dataclasses.replace(cfg, positive_hue=1.0), stages, *target))


# The options in a config and in a search space.


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"nonlocal_grad": "counterpart"}, "AdaptConfig.nonlocal_grad got 'counterpart'; allowed: anchor, both"),
        ({"lcr_head_input": "pixels"}, "AdaptConfig.lcr_head_input got 'pixels'; allowed: latent, feature"),
        ({"positive_hue": 1.5}, r"AdaptConfig.positive_hue must be in \[0, 1\], got 1.5"),
        ({"positive_hue": -0.1}, r"AdaptConfig.positive_hue must be in \[0, 1\], got -0.1"),
    ],
)
def test_the_options_check_their_values(change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        AdaptConfig(**change)
    assert caught.value.field == next(iter(change))


def test_defaults_are_the_earlier_behaviour():
    cfg = AdaptConfig()
    assert (cfg.nonlocal_grad, cfg.lcr_head_input, cfg.positive_hue) == ("anchor", "latent", 0.0)


def test_a_space_selects_every_option():
    space = copy.deepcopy(TINY_SPACE)
    space["relations"]["candidates"] = ["flip", "inplane30_tilt18", "flip_backward"]
    space["adapt"] |= {"lcr_head_input": "feature"}
    space["params"] = {"positive_hue": "interval(0, 1)", "nonlocal_grad": "choice(anchor, both)"}
    spec = parse_space(space, "s.yaml")
    assert tuple(spec.relations.candidates) == ("flip", "inplane30_tilt18", "flip_backward")
    assert {p.name: p for p in spec.params}["nonlocal_grad"].choices == ("anchor", "both")
    cfg = spec.adapt_config(("inplane30_tilt18",), {"positive_hue": 0.5, "nonlocal_grad": "both"})
    assert (cfg.nonlocal_grad, cfg.lcr_head_input, cfg.positive_hue) == ("both", "feature", 0.5)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("relations.candidates", ["flip", "inplane30_tilt90"], "unknown relation 'inplane30_tilt90'"),
        ("adapt.nonlocal_grad", "counterpart", "adapt.nonlocal_grad"),
        ("adapt.positive_hue", 2.0, "adapt.positive_hue"),
    ],
)
def test_a_space_refuses_bad_option_values(path, value, expected):
    space = copy.deepcopy(TINY_SPACE)
    section, key = path.split(".")
    space[section][key] = value
    with pytest.raises(SpaceError, match=expected):
        parse_space(space, "bad.yaml")

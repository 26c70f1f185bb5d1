"""The proxy benchmark: procedural motion, domains, renderer and world building."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlrd import skeleton
from nlrd import world as world_module
from nlrd.core import ClipSet, World
from nlrd.world import FPS, WorldConfig, build_world, world_part
from nlrd.world.domains import BONE_TYPES, DOMAINS, GAPS, SOURCE, TARGET, TARGET_INSTANCE, Domain, FrameVariation
from nlrd.world.motion import FAMILIES, sample_sequences
from nlrd.world.render import (
    Appearance,
    FrameLook,
    camera_frame,
    facing_direction,
    render_clips,
    render_poses,
    sample_appearance,
)

SIZE = 32


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sequences() -> torch.Tensor:
    return sample_sequences(96, 24, generator=gen(0))


def background(domain: Domain, size: int) -> torch.Tensor:
    """The domain's gradient, ``(3, S, S)``: what an image shows where there is no person."""
    rows = (torch.arange(size) + 0.5) / size
    top, bottom = torch.tensor(domain.background_top), torch.tensor(domain.background_bottom)
    return (top[:, None] * (1 - rows) + bottom[:, None] * rows)[:, :, None].expand(3, size, size)


def plain(n: int, size: int, elevation_deg: float = 0.0) -> Appearance:
    """An appearance without tint or texture, so that the person can be segmented exactly."""
    return Appearance(torch.full((n,), math.radians(elevation_deg)), torch.ones(n, 3), torch.zeros(n, 3, size, size))


# --- motion ---------------------------------------------------------------------------------------


def test_sequences_have_the_documented_shape_and_canonical_bones(sequences: torch.Tensor) -> None:
    assert sequences.shape == (96, 24, 17, 3) and sequences.dtype == torch.float32
    assert torch.isfinite(sequences).all()
    assert torch.equal(sequences[..., skeleton.ROOT, :], torch.zeros(96, 24, 3))
    lengths = skeleton.measured_bone_lengths(sequences)
    torch.testing.assert_close(lengths, skeleton.bone_lengths_mm().expand_as(lengths), atol=0.05, rtol=0)


def test_sequences_are_smooth(sequences: torch.Tensor) -> None:
    velocity = (sequences[:, 1:] - sequences[:, :-1]).norm(dim=-1)  # mm per frame at 30 fps
    acceleration = (sequences[:, 2:] - 2 * sequences[:, 1:-1] + sequences[:, :-2]).norm(dim=-1)
    assert velocity.max() < 350.0, "no joint moves faster than 10.5 m/s relative to the pelvis"
    assert acceleration.max() < 0.75 * velocity.max()
    assert velocity.mean() > 5.0, "people do move"
    slower = sample_sequences(96, 24, fps=120.0, generator=gen(0))
    assert (slower[:, 1:] - slower[:, :-1]).norm(dim=-1).max() < velocity.max() / 2


def test_headings_cover_all_directions(sequences: torch.Tensor) -> None:
    facing = facing_direction(sequences[:, 0])
    azimuth = torch.atan2(facing[:, 1], facing[:, 0])
    quadrants = torch.histc(azimuth, bins=4, min=-math.pi, max=math.pi)
    assert (quadrants >= 10).all(), quadrants


def family_signature(family: str) -> torch.Tensor:
    """Heading-invariant statistics of a family: per-joint mean/std of height and of distance from the z axis."""
    seqs = sample_sequences(64, 32, families=[family], generator=gen(1))
    height, radius = seqs[..., 2], seqs[..., :2].norm(dim=-1)
    return torch.cat([height.mean((0, 1)), height.std(1).mean(0), radius.mean((0, 1)), radius.std(1).mean(0)])


def test_families_differ() -> None:
    assert len(FAMILIES) >= 6 and len(set(FAMILIES)) == len(FAMILIES)
    signatures = {family: family_signature(family) for family in FAMILIES}
    for a, b in itertools.combinations(FAMILIES, 2):
        gap = (signatures[a] - signatures[b]).abs().max().item()
        assert gap > 20.0, f"{a} and {b} look alike (max statistic gap {gap:.1f} mm)"


def test_every_family_is_mirror_symmetric_in_distribution() -> None:
    """The pose flip maps each family onto itself: right-minus-left statistics average out to zero."""
    for family in FAMILIES:
        seqs = sample_sequences(400, 8, families=[family], generator=gen(7))
        for right, left in ((4, 7), (11, 15)):  # wrists, ankles
            gap = (seqs[..., right, 2] - seqs[..., left, 2]).mean(1)  # height difference per sequence
            standard_error = gap.std() / math.sqrt(len(gap)) + 1e-3
            assert gap.mean().abs() < 4 * standard_error, (family, right, left, gap.mean(), standard_error)


def test_family_selection_and_validation() -> None:
    only_squats = sample_sequences(8, 16, families=["squat"], generator=gen(2))
    assert only_squats.shape == (8, 16, 17, 3)
    assert sample_sequences(0, 5, generator=gen(2)).shape == (0, 5, 17, 3)
    with pytest.raises(ValueError, match="allowed: walk"):
        sample_sequences(2, 4, families=["walk", "moonwalk"], generator=gen(2))
    with pytest.raises(ValueError):
        sample_sequences(2, 0, generator=gen(2))


def test_motion_is_deterministic_per_seed() -> None:
    first, again = (sample_sequences(16, 8, generator=gen(5)) for _ in range(2))
    assert torch.equal(first, again)
    assert not torch.allclose(first, sample_sequences(16, 8, generator=gen(6)))


# --- domains --------------------------------------------------------------------------------------


def test_domains_differ_in_look_and_motion() -> None:
    assert DOMAINS == {"source": SOURCE, "target": TARGET}
    source, target = set(SOURCE.families), set(TARGET.families)
    assert source & target and len(target - source) >= 2 and (source | target) <= set(FAMILIES)
    assert SOURCE.elevation_deg[1] < TARGET.elevation_deg[0], "camera elevation ranges do not overlap"
    assert SOURCE.limb_radius_mm != TARGET.limb_radius_mm
    assert SOURCE.background_top != TARGET.background_top
    assert all(SOURCE.bone_colors[t] != TARGET.bone_colors[t] for t in set(BONE_TYPES))


def test_colours_do_not_tell_left_from_right() -> None:
    for j in range(1, 17):
        assert BONE_TYPES[j - 1] == BONE_TYPES[skeleton.FLIP_PERMUTATION[j] - 1]
    assert SOURCE.mirror_symmetric and TARGET.mirror_symmetric and not TARGET_INSTANCE.mirror_symmetric


def test_the_instance_target_sits_between_the_looks_widens_motion_and_varies_per_frame() -> None:
    assert GAPS == {"clip": TARGET, "instance": TARGET_INSTANCE} and TARGET_INSTANCE.families == TARGET.families
    low, high = TARGET_INSTANCE.elevation_deg
    assert SOURCE.elevation_deg[0] < low < TARGET.elevation_deg[0]
    assert SOURCE.elevation_deg[1] < high < TARGET.elevation_deg[1]
    assert TARGET_INSTANCE.amplitude[1] > SOURCE.amplitude[1] == 1.2
    assert TARGET_INSTANCE.frame.active and not SOURCE.frame.active and not TARGET.frame.active
    twice = TARGET_INSTANCE.mirrored().mirrored()
    assert dataclasses.replace(twice, name=TARGET_INSTANCE.name) == TARGET_INSTANCE
    assert TARGET_INSTANCE.mirrored().side_colors["r_upper_arm"] == TARGET_INSTANCE.side_colors["l_upper_arm"]


def test_domain_validation() -> None:
    with pytest.raises(ValueError, match="allowed"):
        Domain(**{**vars(SOURCE), "families": ("walk", "fly")})
    with pytest.raises(ValueError, match="bone_colors"):
        Domain(**{**vars(SOURCE), "bone_colors": {"torso": (1.0, 0.0, 0.0)}})
    with pytest.raises(ValueError, match="elevation"):
        Domain(**{**vars(SOURCE), "elevation_deg": (30.0, 10.0)})
    with pytest.raises(ValueError, match="side_colors"):
        Domain(**{**vars(SOURCE), "side_colors": {"l_torso": (1.0, 0.0, 0.0)}})
    with pytest.raises(ValueError, match="amplitude"):
        Domain(**{**vars(SOURCE), "amplitude": (1.2, 0.8)})
    with pytest.raises(ValueError, match="FrameVariation"):
        FrameVariation(light=-0.1)


# --- renderer -------------------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(sorted(DOMAINS)), st.sampled_from([SIZE, 40, 48]))
def test_image_flip_equals_pose_flip(seed: int, domain_name: str, size: int) -> None:
    domain = DOMAINS[domain_name]
    poses = sample_sequences(12, 1, generator=gen(seed))[:, 0]
    look = sample_appearance(12, domain, size, gen(seed + 1))
    mirrored_image = render_poses(poses, domain, look, size).flip(-1)
    image_of_mirror = render_poses(skeleton.flip(poses), domain, look.flipped(), size)
    torch.testing.assert_close(mirrored_image, image_of_mirror, atol=1e-5, rtol=0)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(sorted(GAPS)), st.sampled_from([SIZE, 40]))
def test_image_flip_equals_pose_flip_in_the_mirrored_domain(seed: int, gap: str, size: int) -> None:
    """With per-frame looks and a mirror-asymmetric domain, a flipped clip is the flipped motion rendered in the
    mirrored domain; in the domain itself it is not, where the domain is asymmetric."""
    domain = GAPS[gap]
    seqs = sample_sequences(4, 3, generator=gen(seed))
    look = sample_appearance(4, domain, size, gen(seed + 1), length=3)
    mirrored_clip = render_clips(seqs, domain, look, size).flip(-1)
    clip_of_mirror = render_clips(skeleton.flip(seqs), domain.mirrored(), look.flipped(), size)
    torch.testing.assert_close(mirrored_clip, clip_of_mirror, atol=1e-5, rtol=0)
    in_same_domain = render_clips(skeleton.flip(seqs), domain, look.flipped(), size)
    assert (mirrored_clip - in_same_domain).abs().amax() > (0 if domain.mirror_symmetric else 0.05) - 1e-5


def test_frames_vary_within_a_clip_only_where_the_domain_says() -> None:
    still = skeleton.rest_pose_mm().expand(2, 4, 17, 3)
    for domain in (TARGET, TARGET_INSTANCE):
        look = sample_appearance(2, domain, SIZE, gen(12), length=4)
        assert (look.frames is None) == (not domain.frame.active)
        clips = render_clips(still, domain, look, SIZE)
        change = (clips[:, 1:] - clips[:, :1]).abs().mean((2, 3, 4))
        assert (change > 0.01).all() if domain.frame.active else torch.equal(change, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="frames"):
        render_clips(still[:, :3], TARGET_INSTANCE, sample_appearance(2, TARGET_INSTANCE, SIZE, gen(12), 4), SIZE)


def test_the_labels_turn_with_the_camera() -> None:
    """Rendering the labels (the poses in the camera's frame) with the azimuth left out gives the same clip."""
    seqs = sample_sequences(3, 5, generator=gen(13))
    look = sample_appearance(3, TARGET_INSTANCE, SIZE, gen(14), length=5)
    labels = camera_frame(seqs, look)
    assert not torch.allclose(labels, seqs, atol=1.0), "azimuth jitter moves joints"
    steady = dataclasses.replace(look, frames=dataclasses.replace(look.frames, azimuth_rad=torch.zeros(3, 5)))
    expected = render_clips(seqs, TARGET_INSTANCE, look, SIZE)
    torch.testing.assert_close(render_clips(labels, TARGET_INSTANCE, steady, SIZE), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(skeleton.measured_bone_lengths(labels), skeleton.measured_bone_lengths(seqs))
    assert torch.equal(labels[..., 2], seqs[..., 2]), "a turn about the vertical keeps heights"


def test_a_texture_shift_rolls_the_texture() -> None:
    n, length = 2, 3
    poses = sample_sequences(n, length, generator=gen(15))
    look = sample_appearance(n, TARGET, SIZE, gen(16))
    shift = torch.randint(-5, 6, (n, length, 2), generator=gen(17))
    still = FrameLook(
        torch.zeros(n, length), torch.zeros(n, length), torch.ones(n, length), torch.ones(n, length, 3),
        torch.zeros(n, length, 3), shift,
    )  # fmt: skip
    rendered = render_clips(poses, TARGET, dataclasses.replace(look, frames=still), SIZE)
    for c, t in itertools.product(range(n), range(length)):
        rolled = look.texture[c].roll(tuple(shift[c, t].tolist()), dims=(1, 2))[None]
        frame_look = Appearance(look.elevation_rad[c : c + 1], look.tint[c : c + 1], rolled)
        expected = render_poses(poses[c, t][None], TARGET, frame_look, SIZE)[0]
        torch.testing.assert_close(rendered[c, t], expected, atol=1e-6, rtol=0)


def test_face_marker_mirrors_and_shows_facing() -> None:
    poses = sample_sequences(16, 1, generator=gen(3))[:, 0]
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(facing_direction(skeleton.flip(poses)), facing_direction(poses) * mirror)
    torch.testing.assert_close(facing_direction(skeleton.rest_pose_mm()), torch.tensor([0.0, -1.0, 0.0]))
    # Relabelling left as right without mirroring turns the person around: the image must change.
    rest = skeleton.rest_pose_mm()[None]
    relabelled = rest[:, list(skeleton.FLIP_PERMUTATION)]
    front, back = (render_poses(p, SOURCE, plain(1, 64), 64) for p in (rest, relabelled))
    assert (front - back).abs().amax() > 0.3


def test_a_heading_range_turns_the_people_it_draws() -> None:
    narrow = sample_sequences(8, 3, heading_deg=(0.0, 1e-6), generator=gen(11))
    turned = sample_sequences(8, 3, heading_deg=(90.0, 90.0 + 1e-6), generator=gen(11))
    quarter = skeleton.rotation_z(torch.tensor(math.pi / 2))
    torch.testing.assert_close(turned, narrow @ quarter.T, atol=1e-3, rtol=0)
    assert (facing_direction(narrow)[..., 1] < -0.8).all(), "heading 0 faces the camera (-y)"
    assert (facing_direction(turned)[..., 0] > 0.8).all(), "heading 90 faces image right (+x)"
    full = sample_sequences(8, 3, generator=gen(11))
    torch.testing.assert_close(sample_sequences(8, 3, heading_deg=(0.0, 360.0), generator=gen(11)), full)
    with pytest.raises(ValueError, match="heading_deg"):
        sample_sequences(2, 2, heading_deg=(10.0, 5.0), generator=gen(11))


def test_a_domain_can_show_some_views_and_not_their_mirrors() -> None:
    half = dataclasses.replace(SOURCE, heading_deg=(0, 180))
    assert half.heading_deg == (0.0, 180.0) and half.mirrored().heading_deg == (-180.0, 0.0)
    assert not half.mirror_symmetric and dataclasses.replace(SOURCE, heading_deg=(-90.0, 90.0)).mirror_symmetric
    assert dataclasses.replace(SOURCE, heading_deg=(10.0, 370.0)).mirror_symmetric
    for bad in ((10.0, 5.0), (0.0, 400.0)):
        with pytest.raises(ValueError, match="source: heading_deg"):
            dataclasses.replace(SOURCE, heading_deg=bad)
    frontal = dataclasses.replace(SOURCE, heading_deg=(-1e-6, 1e-6))
    _, poses = world_module.sample_clips(4, 2, frontal, SIZE, gen(12), gen(13))
    assert (facing_direction(poses)[..., 1] < -0.8).all(), "labels in the camera frame face the camera"


def test_reversed_clip_renders_as_reversed_frames() -> None:
    seqs = sample_sequences(3, 10, generator=gen(4))
    look = sample_appearance(3, TARGET, SIZE, gen(5))
    forward = render_clips(seqs, TARGET, look, SIZE)
    assert forward.shape == (3, 10, 3, SIZE, SIZE) and forward.dtype == torch.float32
    assert forward.min() >= 0.0 and forward.max() <= 1.0
    torch.testing.assert_close(render_clips(seqs.flip(1), TARGET, look, SIZE), forward.flip(1), atol=1e-6, rtol=0)


def test_clips_and_poses_render_alike() -> None:
    seqs = sample_sequences(2, 3, generator=gen(6))
    look = sample_appearance(2, SOURCE, SIZE, gen(7))
    per_frame = Appearance(
        look.elevation_rad.repeat_interleave(3), look.tint.repeat_interleave(3, 0), look.texture.repeat_interleave(3, 0)
    )
    frames = render_poses(seqs.flatten(0, 1), SOURCE, per_frame, SIZE).view(2, 3, 3, SIZE, SIZE)
    torch.testing.assert_close(render_clips(seqs, SOURCE, look, SIZE), frames, atol=1e-6, rtol=0)
    torch.testing.assert_close(render_poses(seqs[:, 0] + 500.0, SOURCE, look, SIZE), frames[:, 0], atol=1e-5, rtol=0)


def test_person_is_centred_and_sized(sequences: torch.Tensor) -> None:
    size = 64
    poses = torch.cat([skeleton.rest_pose_mm()[None], sequences[:, 0]])
    for domain in DOMAINS.values():
        images = render_poses(poses, domain, plain(len(poses), size, domain.elevation_deg[1]), size)
        person = (images - background(domain, size)).abs().amax(1) > 0.05  # (B, S, S)
        area = person.float().mean((1, 2))
        assert (area > 0.03).all() and (area < 0.35).all(), area
        rows, cols = person.any(2), person.any(1)
        height = rows.float().sum(1) / size
        assert (height > 0.3).all() and (height < 0.98).all(), height
        assert height[0] > 0.6, "a standing person fills most of the frame's height"
        idx = torch.arange(size) + 0.5
        col_centre = (person.float().sum(1) * idx).sum(1) / person.float().sum((1, 2))
        assert ((col_centre - size / 2).abs() < size / 5).all()
        assert not cols[0, : size // 3].any() and not cols[0, -size // 3 :].any(), "rest pose is centred"
        top, bottom = rows[0].nonzero()[[0, -1], 0].tolist()
        assert abs((top + bottom) / 2 - size / 2) < size / 8


def test_domains_look_different_for_the_same_pose(sequences: torch.Tensor) -> None:
    poses = sequences[:8, 0]
    source = render_poses(poses, SOURCE, sample_appearance(8, SOURCE, SIZE, gen(8)), SIZE)
    target = render_poses(poses, TARGET, sample_appearance(8, TARGET, SIZE, gen(8)), SIZE)
    assert (source - target).abs().mean() > 0.15


def test_appearance_sampling_and_validation() -> None:
    look = sample_appearance(5, TARGET, SIZE, gen(9))
    assert len(look) == 5 and look.image_size == SIZE and look.texture.shape == (5, 3, SIZE, SIZE)
    low, high = (math.radians(d) for d in TARGET.elevation_deg)
    assert ((look.elevation_rad >= low) & (look.elevation_rad <= high)).all()
    assert torch.equal(look.flipped().flipped().texture, look.texture)
    assert torch.equal(sample_appearance(5, TARGET, SIZE, gen(9)).texture, look.texture)
    assert len(look[1:3]) == 2 and len(look[4]) == 1
    poses = sample_sequences(5, 1, generator=gen(9))[:, 0]
    with pytest.raises(ValueError, match="appearance"):
        render_poses(poses, TARGET, look, 2 * SIZE)
    with pytest.raises(ValueError, match="appearance"):
        render_poses(poses[:4], TARGET, look, SIZE)
    with pytest.raises(ValueError, match="17, 3"):
        render_poses(poses[:, :16], TARGET, look, SIZE)


# --- world ----------------------------------------------------------------------------------------

TINY = WorldConfig(image_size=SIZE, clip_len=4, mocap_sequences=6, source_clips=3, target_clips=2, val_clips=2)


@pytest.fixture(scope="module")
def tiny_world() -> World:
    return build_world(TINY)


def test_world_shapes_and_types(tiny_world: World) -> None:
    w = tiny_world
    assert w.mocap.shape == (6, 8, 17, 3) and w.mocap.dtype == torch.float32
    for clips, n, length, labelled in (
        (w.source, 3, 4, True),
        (w.target_train, 2, 8, False),
        (w.target_val, 2, 4, True),
    ):
        assert isinstance(clips, ClipSet) and clips.fps == FPS
        assert clips.frames.shape == (n, length, 3, SIZE, SIZE) and clips.frames.dtype == torch.uint8
        assert (clips.poses is not None) == labelled
    assert w.source.poses.dtype == torch.float32


def test_world_is_deterministic_and_seeded(tiny_world: World) -> None:
    again = build_world(TINY)
    for a, b in ((tiny_world.mocap, again.mocap), (tiny_world.source.frames, again.source.frames)):
        assert torch.equal(a, b)
    assert torch.equal(tiny_world.target_train.frames, again.target_train.frames)
    assert torch.equal(tiny_world.target_val.poses, again.target_val.poses)
    other = build_world(WorldConfig(**{**vars(TINY), "seed": 1}))
    assert not torch.equal(other.source.frames, tiny_world.source.frames)


def test_the_gap_changes_the_target_only() -> None:
    instance = dataclasses.replace(TINY, gap="instance")
    assert torch.equal(world_part(instance, "source").frames, world_part(TINY, "source").frames)
    assert torch.equal(world_part(instance, "mocap"), world_part(TINY, "mocap"))
    for part in ("target_train", "target_val"):
        assert not torch.equal(world_part(instance, part).frames, world_part(TINY, part).frames)
    gens = world_module._generators(TINY.seed)
    frames, poses = world_module.sample_clips(2, 4, TARGET_INSTANCE, SIZE, gens["val_motion"], gens["val_look"])
    labelled = world_part(instance, "target_val")
    assert torch.equal(labelled.frames, frames) and torch.equal(labelled.poses, poses)


def test_world_clips_are_renders_of_their_poses() -> None:
    """Each labelled clip is its poses rendered with one appearance from the clip's look stream, as uint8."""
    frames, poses = world_module.sample_clips(3, 5, TARGET, SIZE, gen(10), gen(11))
    expected_poses = sample_sequences(3, 5, families=TARGET.families, fps=FPS, generator=gen(10))
    look = sample_appearance(3, TARGET, SIZE, gen(11))
    expected = (render_clips(expected_poses, TARGET, look, SIZE) * 255).round().to(torch.uint8)
    assert torch.equal(poses, expected_poses) and torch.equal(frames, expected)


@pytest.mark.parametrize(
    "override",
    [{"image_size": 0}, {"clip_len": -1}, {"source_clips": 0}, {"seed": -1}, {"val_clips": 1.5}, {"gap": "video"}],
)
def test_world_config_validation(override: dict) -> None:
    with pytest.raises(ValueError, match="WorldConfig"):
        WorldConfig(**override)

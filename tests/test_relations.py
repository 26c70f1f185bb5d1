from __future__ import annotations

import math

import pytest
import torch

from nlrd import skeleton
from nlrd.relations import RELATION_NAMES, Relation, catalogue, flip_images, get_relation, rotate_images

T = 4
SIZE = 33  # odd: the image centre is a pixel centre, so a joint at x = 0 or z = 0 is unambiguous
#: Mirror-symmetric joint colours, so a rendered flip does not depend on which joint is "left".
_SYMMETRIC = [min(j, skeleton.FLIP_PERMUTATION[j]) for j in range(skeleton.NUM_JOINTS)]
COLOURS = torch.stack([torch.tensor([(c * 37 % 17) / 17, (c * 11 % 17) / 17, 1.0]) for c in _SYMMETRIC])


def render_dots(joints_mm: torch.Tensor) -> torch.Tensor:
    """A tiny exact renderer for tests: ``(..., 17, 3)`` -> ``(..., 3, SIZE, SIZE)``, one coloured pixel per
    joint at the orthographic projection (x right, z up), 15 px per metre from the image centre."""
    k = 15 / 1000
    col = torch.floor(SIZE / 2 + joints_mm[..., 0] * k).long()
    row = torch.floor(SIZE / 2 - joints_mm[..., 2] * k).long()
    flat = joints_mm.reshape(-1, 17, 3)
    images = torch.zeros(len(flat), 3, SIZE, SIZE)
    for i, (r, c) in enumerate(zip(row.reshape(-1, 17), col.reshape(-1, 17), strict=True)):
        for channel in range(3):
            images[i, channel].index_put_((r, c), COLOURS[:, channel], accumulate=True)
    return images.reshape(*joints_mm.shape[:-2], 3, SIZE, SIZE)


def random_poses(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rest = skeleton.to_bone_directions(skeleton.rest_pose_mm())
    directions = rest + 0.4 * torch.randn(*shape, 16, 3, generator=g)
    azimuth = skeleton.rotation_z(torch.rand(shape, generator=g) * 2 * math.pi)
    return skeleton.rotate(skeleton.from_bone_directions(directions), azimuth)


def test_catalogue_has_every_name_with_its_level_and_window():
    relations = catalogue(T)
    assert tuple(relations) == RELATION_NAMES
    assert {n for n, r in relations.items() if r.level == "pose"} == {"flip", "inplane5", "inplane30"}
    assert all(r.window == 1 for r in relations.values() if r.level == "pose")
    assert {n: r.window for n, r in relations.items() if r.level == "motion"} == {
        "backward": T,
        "flip_forward": T,
        "flip_backward": T,
        "fast_forward": 2 * T,
        "slow_backward": 2 * T,
        "slow_forward": 2 * T,
    }
    assert relations["inplane30"].degrees == 30.0 and relations["inplane30"].spatial == "rotate"


@pytest.mark.parametrize(
    ("name", "anchor", "counterpart", "spatial"),
    [
        ("backward", (0, 1, 2, 3), (3, 2, 1, 0), "none"),
        ("flip_forward", (0, 1, 2, 3), (0, 1, 2, 3), "flip"),
        ("flip_backward", (0, 1, 2, 3), (3, 2, 1, 0), "flip"),
        ("fast_forward", (2, 3, 4, 5), (0, 2, 4, 6), "none"),
        ("slow_backward", (0, 2, 4, 6), (5, 4, 3, 2), "none"),
        ("slow_forward", (0, 2, 4, 6), (2, 3, 4, 5), "none"),
    ],
)
def test_motion_index_patterns(name, anchor, counterpart, spatial):
    r = get_relation(name, T)
    assert (r.anchor_index, r.counterpart_index, r.spatial) == (anchor, counterpart, spatial)


def test_middle_window_for_odd_clip_len():
    assert get_relation("slow_backward", 5).counterpart_index == (6, 5, 4, 3, 2)


def test_flip_backward_counterpart_is_flip_of_reverse():
    raw = random_poses((3, T))
    anchor, counterpart = get_relation("flip_backward", T).poses(raw)
    torch.testing.assert_close(anchor, raw)
    torch.testing.assert_close(counterpart, skeleton.flip(raw.flip(-3)))


@pytest.mark.parametrize("name", [n for n in RELATION_NAMES if catalogue(T)[n].level == "motion"])
def test_time_indexing_is_the_same_for_poses_and_images(name):
    r = get_relation(name, T)
    frame_id = torch.arange(r.window, dtype=torch.float32)
    poses = frame_id[None, :, None, None].expand(2, r.window, 17, 3)
    images = frame_id[None, :, None, None, None].expand(2, r.window, 3, 5, 5)
    for pose_side, image_side in zip(r.poses(poses), r.images(images), strict=True):
        # y is untouched by flips and in-plane rotations, so it still names the frame.
        torch.testing.assert_close(pose_side[..., 0, 1], image_side[..., 0, 0, 0])


@pytest.mark.parametrize("name", ["flip", "inplane30", "inplane5_tilt18", "backward"])
def test_map_pose_is_the_counterparts_spatial_map_and_linear(name):
    r = get_relation(name, T)
    raw = random_poses((4,)) if r.level == "pose" else random_poses((4, r.window))
    counterpart = r.poses(raw)[1]
    unmapped = raw if r.level == "pose" else raw[:, list(r.counterpart_index)]
    torch.testing.assert_close(counterpart, r.map_pose(unmapped))
    a, b = random_poses((4,)), random_poses((4,))
    torch.testing.assert_close(r.map_pose(a - 2 * b), r.map_pose(a) - 2 * r.map_pose(b))  # maps an error as a pose


def test_flip_twice_is_identity():
    poses = random_poses((5,))
    images = torch.rand(5, 3, 8, 8)
    assert torch.equal(skeleton.flip(skeleton.flip(poses)), poses)
    assert torch.equal(flip_images(flip_images(images)), images)


def test_pose_and_image_flip_agree_through_a_renderer():
    poses = random_poses((6,), seed=1)
    _, flipped = get_relation("flip", T).poses(poses)
    _, flipped_images = get_relation("flip", T).images(render_dots(poses))
    torch.testing.assert_close(render_dots(flipped), flipped_images)


def test_pose_and_image_rotation_agree_through_a_renderer():
    quarter = Relation("rot90", "pose", spatial="rotate", degrees=90.0)
    poses = random_poses((6,), seed=2)
    _, rotated = quarter.poses(poses)
    _, rotated_images = quarter.images(render_dots(poses))
    torch.testing.assert_close(render_dots(rotated), rotated_images, atol=1e-4, rtol=0)


def test_rotation_sign_on_images_and_poses():
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[..., SIZE // 2, SIZE // 2 + 8] = 1.0  # right of centre
    rotated = rotate_images(image, 90.0)[0, 0]
    row, col = divmod(int(rotated.argmax()), SIZE)
    assert col == SIZE // 2 and row < SIZE // 2  # above centre
    point = torch.tensor([[100.0, 0.0, 0.0]])
    torch.testing.assert_close(
        skeleton.rotate_in_plane(point, 90.0), torch.tensor([[0.0, 0.0, 100.0]]), atol=1e-4, rtol=0
    )


def test_image_rotation_is_rigid_on_non_square_images():
    image = torch.zeros(3, 33, 49)
    image[:, 16, 24 + 8] = 1.0  # 8 px right of the centre pixel
    row, col = divmod(int(rotate_images(image, 90.0)[0].argmax()), 49)
    assert (row, col) == (16 - 8, 24)


def test_rotation_by_zero_is_identity_and_keeps_shape():
    images = torch.rand(2, 4, 3, 16, 24)
    torch.testing.assert_close(rotate_images(images, 0.0), images)
    assert rotate_images(images, 30.0).shape == images.shape


def test_unknown_relation_names_the_allowed_ones():
    with pytest.raises(ValueError, match="moonwalk.*flip_backward"):
        get_relation("moonwalk", T)


def test_invalid_relations_are_refused():
    with pytest.raises(ValueError, match="frame indices"):
        Relation("bad", "motion", 4, (0, 1), (3, 4))
    with pytest.raises(ValueError, match="window=1"):
        Relation("bad", "pose", window=2)
    with pytest.raises(ValueError, match="spatial"):
        Relation("bad", "pose", spatial="shear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window of 8 frames"):
        get_relation("slow_forward", T).poses(torch.zeros(2, T, 17, 3))

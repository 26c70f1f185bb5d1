"""Invariants of the 17-joint skeleton: flip, rotations, bone directions <-> forward kinematics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlrd import skeleton

ANGLES = st.floats(-2 * math.pi, 2 * math.pi, allow_nan=False)
SEEDS = st.integers(0, 2**31 - 1)
FAST = settings(max_examples=50, deadline=None)


def random_poses(seed: int, n: int = 8) -> torch.Tensor:
    """Arbitrary (not canonical-length) root-relative poses, ``(n, 17, 3)`` mm."""
    g = torch.Generator().manual_seed(seed)
    return skeleton.root_relative(300.0 * torch.randn(n, skeleton.NUM_JOINTS, 3, generator=g))


def canonical_poses(seed: int, n: int = 8) -> torch.Tensor:
    """Poses with canonical bone lengths: FK of random directions, ``(n, 17, 3)`` mm."""
    g = torch.Generator().manual_seed(seed)
    return skeleton.from_bone_directions(torch.randn(n, skeleton.NUM_BONES, 3, generator=g))


def test_tables_are_consistent() -> None:
    assert len(skeleton.JOINT_NAMES) == len(skeleton.PARENTS) == len(skeleton.BONE_LENGTHS_MM) == 17
    assert all(skeleton.PARENTS[j] < j for j in range(1, 17)), "FK needs parents before children"
    perm = skeleton.FLIP_PERMUTATION
    assert sorted(perm) == list(range(17))
    for right, left in zip(skeleton.RIGHT, skeleton.LEFT, strict=True):
        assert skeleton.JOINT_NAMES[right].removeprefix("r_") == skeleton.JOINT_NAMES[left].removeprefix("l_")
        assert skeleton.BONE_LENGTHS_MM[right] == skeleton.BONE_LENGTHS_MM[left]
    # The flip must map the tree onto itself, or flipped poses would have broken bones.
    assert all(skeleton.PARENTS[perm[j]] == perm[skeleton.PARENTS[j]] for j in range(17))


@FAST
@given(SEEDS)
def test_flip_is_an_involution(seed: int) -> None:
    poses = random_poses(seed)
    assert torch.equal(skeleton.flip(skeleton.flip(poses)), poses)


@FAST
@given(SEEDS)
def test_flip_preserves_bone_lengths(seed: int) -> None:
    poses = random_poses(seed)
    lengths = skeleton.measured_bone_lengths(poses)
    flipped = skeleton.measured_bone_lengths(skeleton.flip(poses))
    bone_of_flipped = [skeleton.FLIP_PERMUTATION[j] - 1 for j in range(1, 17)]
    torch.testing.assert_close(flipped, lengths[:, bone_of_flipped])
    canonical = canonical_poses(seed)
    torch.testing.assert_close(
        skeleton.measured_bone_lengths(skeleton.flip(canonical)),
        skeleton.bone_lengths_mm().expand(len(canonical), -1),
        atol=1e-3,
        rtol=0,
    )


def test_flip_negates_x_and_swaps_sides() -> None:
    pose = random_poses(0, n=1)[0]
    flipped = skeleton.flip(pose)
    for j in range(17):
        mirror = skeleton.FLIP_PERMUTATION[j]
        assert torch.equal(flipped[j], pose[mirror] * torch.tensor([-1.0, 1.0, 1.0]))


def test_rest_pose_faces_the_camera_and_is_mirror_symmetric() -> None:
    rest = skeleton.rest_pose_mm()
    torch.testing.assert_close(skeleton.flip(rest), rest, atol=1e-4, rtol=0)
    torch.testing.assert_close(skeleton.measured_bone_lengths(rest), skeleton.bone_lengths_mm())
    assert rest[2, 0] < 0 < rest[5, 0], "facing -y, the person's right is at -x"
    assert rest[12, 1] < 0 and rest[16, 1] < 0, "feet point towards the camera (-y)"
    assert rest[8, 2] > rest[1, 2] > 0 > rest[11, 2], "head above neck above pelvis above ankles"


@FAST
@given(SEEDS)
def test_forward_kinematics_inverts_bone_directions(seed: int) -> None:
    poses = canonical_poses(seed)
    torch.testing.assert_close(
        skeleton.from_bone_directions(skeleton.to_bone_directions(poses)), poses, atol=1e-3, rtol=0
    )
    directions = skeleton.to_bone_directions(poses)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(len(poses), 16))


def test_forward_kinematics_normalises_and_accepts_lengths() -> None:
    g = torch.Generator().manual_seed(1)
    directions = torch.randn(4, 16, 3, generator=g)
    unit = directions / directions.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(
        skeleton.from_bone_directions(5.0 * directions), skeleton.from_bone_directions(unit), atol=1e-3, rtol=0
    )
    lengths = torch.rand(4, 16, generator=g) * 500 + 10
    poses = skeleton.from_bone_directions(directions, lengths)
    torch.testing.assert_close(skeleton.measured_bone_lengths(poses), lengths, atol=1e-3, rtol=1e-5)
    assert torch.equal(poses[:, skeleton.ROOT], torch.zeros(4, 3))


@FAST
@given(ANGLES)
def test_rotations_are_proper_orthonormal(angle: float) -> None:
    for rotation in (skeleton.rotation_x, skeleton.rotation_y, skeleton.rotation_z):
        r = rotation(angle)
        torch.testing.assert_close(r @ r.T, torch.eye(3), atol=1e-6, rtol=0)
        assert torch.linalg.det(r).item() == pytest.approx(1.0, abs=1e-6)


def test_rotations_are_batched_and_turn_the_documented_way() -> None:
    angles = torch.linspace(-3.0, 3.0, 6).view(2, 3)
    for rotation in (skeleton.rotation_x, skeleton.rotation_y, skeleton.rotation_z):
        assert rotation(angles).shape == (2, 3, 3, 3)
    quarter = math.pi / 2
    x, y, z = torch.eye(3)
    # Seen by the camera (x right, z up) a positive in-plane angle is counter-clockwise: x turns to z.
    torch.testing.assert_close(skeleton.rotation_y(quarter) @ x, z, atol=1e-6, rtol=0)
    torch.testing.assert_close(skeleton.rotation_z(quarter) @ x, y, atol=1e-6, rtol=0)
    torch.testing.assert_close(skeleton.rotation_x(quarter) @ y, z, atol=1e-6, rtol=0)


@FAST
@given(SEEDS, st.floats(-180.0, 180.0, allow_nan=False))
def test_in_plane_rotation_round_trip(seed: int, degrees: float) -> None:
    poses = random_poses(seed)
    back = skeleton.rotate_in_plane(skeleton.rotate_in_plane(poses, degrees), -degrees)
    torch.testing.assert_close(back, poses, atol=1e-3, rtol=0)


@FAST
@given(SEEDS, ANGLES)
def test_rotations_preserve_bone_lengths(seed: int, angle: float) -> None:
    poses = random_poses(seed)
    lengths = skeleton.measured_bone_lengths(poses)
    for rotation in (skeleton.rotation_x, skeleton.rotation_y, skeleton.rotation_z):
        rotated = skeleton.rotate(poses, rotation(angle))
        torch.testing.assert_close(skeleton.measured_bone_lengths(rotated), lengths, atol=1e-3, rtol=1e-5)


@FAST
@given(SEEDS, ANGLES)
def test_flip_conjugates_rotations(seed: int, angle: float) -> None:
    """Mirroring x commutes with rotations about x and reverses rotations about y (in-plane) and z (azimuth)."""
    poses = random_poses(seed)
    flip, rotate = skeleton.flip, skeleton.rotate
    close = dict(atol=1e-3, rtol=0)
    torch.testing.assert_close(
        flip(rotate(poses, skeleton.rotation_x(angle))), rotate(flip(poses), skeleton.rotation_x(angle)), **close
    )
    torch.testing.assert_close(
        flip(rotate(poses, skeleton.rotation_y(angle))), rotate(flip(poses), skeleton.rotation_y(-angle)), **close
    )
    torch.testing.assert_close(
        flip(rotate(poses, skeleton.rotation_z(angle))), rotate(flip(poses), skeleton.rotation_z(-angle)), **close
    )


def test_rotate_broadcasts_per_sample_rotations() -> None:
    poses = random_poses(3, n=5)
    angles = torch.linspace(0.0, 2.0, 5)
    batched = skeleton.rotate(poses, skeleton.rotation_z(angles))
    single = torch.stack([skeleton.rotate(p, skeleton.rotation_z(a)) for p, a in zip(poses, angles, strict=True)])
    torch.testing.assert_close(batched, single)

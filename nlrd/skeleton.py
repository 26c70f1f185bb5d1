"""The 17-joint skeleton every part of nlrd speaks.

Poses are root-relative joint positions in millimetres, shape ``(..., 17, 3)``, z up, right-handed.
The canonical camera looks along +y, so x is the image horizontal (right) and z the image vertical.
Bone directions are *global* unit vectors, one per non-root joint, shape ``(..., 16, 3)``: bone ``j``
points from ``PARENTS[j]`` to joint ``j`` (for ``j = 1..16``).  Forward kinematics scales them by the
canonical bone lengths, so a decoded pose always has canonical proportions.
"""

from __future__ import annotations

import math

import torch

JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "head_top",
    "r_hip",
    "r_knee",
    "r_ankle",
    "r_foot",
    "l_hip",
    "l_knee",
    "l_ankle",
    "l_foot",
)
NUM_JOINTS = 17
NUM_BONES = 16
ROOT = 0
PARENTS: tuple[int, ...] = (0, 0, 1, 2, 3, 1, 5, 6, 1, 0, 9, 10, 11, 0, 13, 14, 15)
RIGHT: tuple[int, ...] = (2, 3, 4, 9, 10, 11, 12)
LEFT: tuple[int, ...] = (5, 6, 7, 13, 14, 15, 16)

#: Millimetres per relative unit of the canonical bone lengths: a 1.7 m person.
MM_PER_UNIT = 110.0
_RELATIVE_LENGTHS = (0.0, 4.75, 1.37, 2.8, 2.4, 1.37, 2.8, 2.4, 2.0, 1.05, 4.2, 3.6, 2.0, 1.05, 4.2, 3.6, 2.0)
#: Canonical length (mm) of the bone ending at each joint; 0 for the root.
BONE_LENGTHS_MM: tuple[float, ...] = tuple(MM_PER_UNIT * x for x in _RELATIVE_LENGTHS)

#: Body parts used by part-wise models and discriminators.
PARTS: dict[str, tuple[int, ...]] = {
    "trunk": (0, 1, 8),
    "right_arm": (2, 3, 4),
    "left_arm": (5, 6, 7),
    "right_leg": (9, 10, 11, 12),
    "left_leg": (13, 14, 15, 16),
}

#: ``FLIP_PERMUTATION[j]`` is the joint whose mirrored position joint ``j`` takes after a flip.
FLIP_PERMUTATION: tuple[int, ...] = tuple(
    LEFT[RIGHT.index(j)] if j in RIGHT else RIGHT[LEFT.index(j)] if j in LEFT else j for j in range(NUM_JOINTS)
)

# Joints in an order where every parent comes before its children (true for PARENTS as listed).
_FK_ORDER = tuple(range(1, NUM_JOINTS))


def bone_lengths_mm(device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Canonical bone lengths of the 16 bones, shape ``(16,)``, in mm."""
    return torch.tensor(BONE_LENGTHS_MM[1:], device=device, dtype=dtype)


def flip(joints: torch.Tensor) -> torch.Tensor:
    """Mirror ``(..., 17, 3)`` poses: negate x (the image horizontal) and swap left/right joints."""
    mirrored = joints[..., list(FLIP_PERMUTATION), :].clone()
    mirrored[..., 0] = -mirrored[..., 0]
    return mirrored


def rotation_z(angle_rad: torch.Tensor | float) -> torch.Tensor:
    """Rotation matrices about the vertical axis (azimuth), shape ``(..., 3, 3)``."""
    a = torch.as_tensor(angle_rad, dtype=torch.float32)
    c, s, o, i = torch.cos(a), torch.sin(a), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([c, -s, o], -1), torch.stack([s, c, o], -1), torch.stack([o, o, i], -1)], -2)


def rotation_y(angle_rad: torch.Tensor | float) -> torch.Tensor:
    """Rotation matrices about the canonical viewing axis +y (in-plane rotation), shape ``(..., 3, 3)``.

    A positive angle turns the pose counter-clockwise as seen by the camera (x right, z up).
    """
    a = torch.as_tensor(angle_rad, dtype=torch.float32)
    c, s, o, i = torch.cos(a), torch.sin(a), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([c, o, -s], -1), torch.stack([o, i, o], -1), torch.stack([s, o, c], -1)], -2)


def rotation_x(angle_rad: torch.Tensor | float) -> torch.Tensor:
    """Rotation matrices about the horizontal x axis (camera elevation), shape ``(..., 3, 3)``."""
    a = torch.as_tensor(angle_rad, dtype=torch.float32)
    c, s, o, i = torch.cos(a), torch.sin(a), torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([i, o, o], -1), torch.stack([o, c, -s], -1), torch.stack([o, s, c], -1)], -2)


def rotate(joints: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Apply ``(..., 3, 3)`` rotations to ``(..., J, 3)`` points (batch dims broadcast)."""
    return torch.einsum("...ij,...nj->...ni", rotation.to(joints), joints)


def rotate_in_plane(joints: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate poses about the canonical viewing axis: the 3D counterpart of an in-plane image rotation."""
    return rotate(joints, rotation_y(math.radians(degrees)))


def root_relative(joints: torch.Tensor) -> torch.Tensor:
    """Subtract the pelvis so that joint 0 sits at the origin."""
    return joints - joints[..., ROOT : ROOT + 1, :]


def to_bone_directions(joints: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(..., 17, 3)`` positions -> ``(..., 16, 3)`` global unit bone directions."""
    child = joints[..., 1:, :]
    parent = joints[..., list(PARENTS[1:]), :]
    bones = child - parent
    return bones / bones.norm(dim=-1, keepdim=True).clamp_min(eps)


def from_bone_directions(directions: torch.Tensor, lengths_mm: torch.Tensor | None = None) -> torch.Tensor:
    """Forward kinematics: ``(..., 16, 3)`` directions (normalised here) -> ``(..., 17, 3)`` root-relative mm.

    ``lengths_mm`` (``(16,)`` or ``(..., 16)``) defaults to the canonical bone lengths.
    """
    if lengths_mm is None:
        lengths_mm = bone_lengths_mm(directions.device, directions.dtype)
    unit = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    bones = unit * lengths_mm[..., None]
    joints = [torch.zeros_like(bones[..., 0, :])]
    for j in _FK_ORDER:
        joints.append(joints[PARENTS[j]] + bones[..., j - 1, :])
    return torch.stack(joints, dim=-2)


def measured_bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """Lengths of the 16 bones of ``(..., 17, 3)`` poses, shape ``(..., 16)``."""
    return (joints[..., 1:, :] - joints[..., list(PARENTS[1:]), :]).norm(dim=-1)


def rest_pose_mm() -> torch.Tensor:
    """A neutral standing pose facing -y (towards the canonical camera), arms hanging, ``(17, 3)`` mm.

    Facing the camera, the person's right side is at -x (the image's left).
    """
    down, up = (0.0, 0.0, -1.0), (0.0, 0.0, 1.0)
    right, left = (-1.0, 0.0, 0.0), (1.0, 0.0, 0.0)
    directions = torch.tensor(
        [
            up,
            right,
            down,
            down,
            left,
            down,
            down,
            up,
            right,
            down,
            down,
            (0.0, -1.0, 0.0),
            left,
            down,
            down,
            (0.0, -1.0, 0.0),
        ]
    )
    return from_bone_directions(directions)

"""Procedural 3D human motion on the nlrd skeleton, and random windows of real motion for the same renderer.

Each motion family is a small set of periodic joint-angle curves.  Angles are turned into global bone
directions by composing rotations down the kinematic tree, and ``skeleton.from_bone_directions`` turns
those into joints, so every generated pose has exactly the canonical bone lengths.

Body-local frame (before the random heading): the person faces -y, their left is +x, up is +z, as in
``skeleton.rest_pose_mm``.  Right-side limbs use mirrored abduction/twist signs, so equal angles on
both sides give mirror-image limbs, and every family's distribution is mirror-symmetric (random
phase, or a random side for one-sided motions): the pose flip maps a family onto itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from nlrd import skeleton

Angles = dict[str, torch.Tensor | float]
#: A family maps (phase ``(n, T)`` rad, amplitude ``(n, 1)``, uniforms ``(n, 4)``) to angle curves in degrees.
FamilyFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Angles]

#: Joint-angle channels (degrees inside families).  Limb channels exist once per side, prefixed ``r_``/``l_``.
#: ``*_flex``: raise forward about the lateral axis (knee: bend backward; ankle: point the foot down);
#: ``*_abd``: raise sideways about the forward axis; ``elbow_side``: bend the forearm further in that plane;
#: ``trunk_pitch``: lean forward; ``trunk_roll``/``trunk_yaw``/``pelvis_yaw``: lean sideways / twist.
_TRUNK_CHANNELS = ("pelvis_yaw", "trunk_pitch", "trunk_roll", "trunk_yaw", "head_pitch")
_LIMB_CHANNELS = (
    "shoulder_flex",
    "shoulder_abd",
    "elbow_flex",
    "elbow_side",
    "hip_flex",
    "hip_abd",
    "knee_flex",
    "ankle_flex",
)
CHANNELS: tuple[str, ...] = _TRUNK_CHANNELS + tuple(f"{s}_{c}" for s in ("r", "l") for c in _LIMB_CHANNELS)

#: Per-sequence static posture jitter, degrees (uniform in +-this on every channel).
_JITTER_DEG = 3.0
_NUM_UNIFORMS = 4


def _bump(x: torch.Tensor) -> torch.Tensor:
    """Smooth periodic bump in [0, 1], peak at x = 0."""
    return (1.0 + torch.cos(x)) / 2.0


def _pos(x: torch.Tensor, power: int = 2) -> torch.Tensor:
    """Positive half of ``x`` raised to ``power``: C^(power-1) smooth one-sided pulses."""
    return x.clamp_min(0.0) ** power


def _both(channel: str, right: torch.Tensor | float, left: torch.Tensor | float | None = None) -> Angles:
    return {f"r_{channel}": right, f"l_{channel}": right if left is None else left}


def _pick(side_right: torch.Tensor, active: torch.Tensor, idle: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(right, left) curves where the side chosen by ``side_right`` ``(n, 1)`` bool does ``active``."""
    return torch.where(side_right, active, idle), torch.where(side_right, idle, active)


def _walk(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    s_r, s_l = torch.sin(phase), torch.sin(phase + math.pi)
    return {
        "trunk_pitch": 3.0 + 4.0 * u[:, :1],
        "trunk_yaw": 6.0 * amp * s_r,
        "pelvis_yaw": -5.0 * amp * s_r,
        **_both("hip_flex", 5.0 + 25.0 * amp * s_r, 5.0 + 25.0 * amp * s_l),
        **_both(
            "knee_flex",
            5.0 + 55.0 * amp * _bump(phase - 0.4) ** 2,
            5.0 + 55.0 * amp * _bump(phase + math.pi - 0.4) ** 2,
        ),
        **_both("ankle_flex", 10.0 * torch.sin(phase - 1.0), 10.0 * torch.sin(phase + math.pi - 1.0)),
        **_both("shoulder_flex", -20.0 * amp * s_r, -20.0 * amp * s_l),
        **_both("shoulder_abd", 8.0),
        **_both("elbow_flex", 20.0 + 15.0 * _bump(phase - math.pi / 2), 20.0 + 15.0 * _bump(phase + math.pi / 2)),
    }


def _run(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    s_r, s_l = torch.sin(phase), torch.sin(phase + math.pi)
    return {
        "trunk_pitch": 10.0 + 6.0 * u[:, :1],
        "trunk_yaw": 10.0 * amp * s_r,
        "pelvis_yaw": -6.0 * amp * s_r,
        "head_pitch": -8.0,
        **_both("hip_flex", 15.0 + 40.0 * amp * s_r, 15.0 + 40.0 * amp * s_l),
        **_both(
            "knee_flex",
            20.0 + 85.0 * amp * _bump(phase - 0.6) ** 2,
            20.0 + 85.0 * amp * _bump(phase + math.pi - 0.6) ** 2,
        ),
        **_both("ankle_flex", 15.0 * torch.sin(phase - 1.0), 15.0 * torch.sin(phase + math.pi - 1.0)),
        **_both("shoulder_flex", 10.0 - 40.0 * amp * s_r, 10.0 - 40.0 * amp * s_l),
        **_both("shoulder_abd", 12.0),
        **_both("elbow_flex", 85.0 + 10.0 * s_r, 85.0 + 10.0 * s_l),
    }


def _jumping_jack(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    w = (1.0 - torch.cos(phase)) / 2.0
    return {
        **_both("shoulder_abd", 10.0 + (120.0 + 30.0 * amp.clamp(max=1.0)) * w),
        **_both("elbow_flex", 10.0 + 15.0 * (1.0 - w)),
        **_both("elbow_side", 15.0 * w),
        **_both("hip_abd", 3.0 + 20.0 * amp * w),
        **_both("knee_flex", 5.0 + 15.0 * torch.sin(phase) ** 2),
        "head_pitch": 5.0 * u[:, :1],
    }


def _squat(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    w = (1.0 - torch.cos(phase)) / 2.0
    hip = 95.0 * amp.clamp(max=1.1) * w
    knee = 1.15 * hip
    return {
        "trunk_pitch": (25.0 + 15.0 * u[:, :1]) * w,
        **_both("hip_flex", hip),
        **_both("hip_abd", 8.0 + 6.0 * u[:, 1:2]),
        **_both("knee_flex", knee),
        **_both("ankle_flex", hip - knee),
        **_both("shoulder_flex", (60.0 + 25.0 * u[:, 2:3]) * w),
        **_both("elbow_flex", 10.0),
    }


def _wave(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    right = u[:, :1] < 0.5
    side = torch.where(right, 1.0, -1.0)
    abd_r, abd_l = _pick(right, 100.0 + 25.0 * u[:, 1:2], 8.0)
    elbow_side_r, elbow_side_l = _pick(right, 55.0 + 25.0 * amp * torch.sin(phase), 0.0)
    return {
        "trunk_roll": -4.0 * side * amp,
        "head_pitch": 3.0 * torch.sin(0.5 * phase),
        **_both("shoulder_abd", abd_r, abd_l),
        **_both("elbow_side", elbow_side_r, elbow_side_l),
        **_both("elbow_flex", 15.0),
        **_both("shoulder_flex", 10.0 * u[:, 2:3]),
        **_both("knee_flex", 5.0),
    }


def _box(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    punch_r, punch_l = _pos(torch.sin(phase)), _pos(-torch.sin(phase))
    lead_right = u[:, :1] < 0.5
    front, back = 15.0, -12.0
    hip_r, hip_l = torch.where(lead_right, front, back), torch.where(lead_right, back, front)
    return {
        "trunk_pitch": 8.0,
        "trunk_yaw": 18.0 * amp * (punch_r - punch_l),
        "head_pitch": 12.0,
        **_both("shoulder_flex", 35.0 + 50.0 * punch_r, 35.0 + 50.0 * punch_l),
        **_both("shoulder_abd", 15.0 - 8.0 * punch_r, 15.0 - 8.0 * punch_l),
        **_both("elbow_flex", 125.0 - 115.0 * punch_r, 125.0 - 115.0 * punch_l),
        **_both("hip_flex", hip_r, hip_l),
        **_both("hip_abd", 8.0),
        **_both("knee_flex", 20.0 + 5.0 * torch.cos(2 * phase)),
    }


def _kick(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    q_r, q_l = _pos(torch.sin(phase)), _pos(-torch.sin(phase))
    kick_r, kick_l = q_r**2, q_l**2
    return {
        "trunk_pitch": -12.0 * amp * (kick_r + kick_l),
        "head_pitch": 5.0,
        **_both("hip_flex", 5.0 + 85.0 * amp.clamp(max=1.15) * kick_r, 5.0 + 85.0 * amp.clamp(max=1.15) * kick_l),
        **_both("knee_flex", 10.0 + 110.0 * q_r * (1.0 - q_r), 10.0 + 110.0 * q_l * (1.0 - q_l)),
        **_both("ankle_flex", 25.0 * kick_r, 25.0 * kick_l),
        **_both("shoulder_flex", 30.0),
        **_both("shoulder_abd", 20.0 + 15.0 * (kick_r + kick_l)),
        **_both("elbow_flex", 110.0),
    }


def _arm_circles(phase: torch.Tensor, amp: torch.Tensor, u: torch.Tensor) -> Angles:
    return {
        **_both("shoulder_abd", 85.0 + 20.0 * amp * torch.cos(phase)),
        **_both("shoulder_flex", 20.0 * amp * torch.sin(phase)),
        **_both("elbow_flex", 5.0),
        **_both("hip_abd", 10.0 + 5.0 * u[:, :1]),
        "trunk_pitch": 2.0 * torch.sin(2 * phase),
    }


#: family -> (angle function, cycle frequency range in Hz)
_FAMILIES: dict[str, tuple[FamilyFn, tuple[float, float]]] = {
    "walk": (_walk, (0.8, 1.1)),
    "run": (_run, (1.3, 1.6)),
    "jumping_jack": (_jumping_jack, (0.8, 1.2)),
    "squat": (_squat, (0.35, 0.6)),
    "wave": (_wave, (0.8, 1.5)),
    "box": (_box, (0.8, 1.3)),
    "kick": (_kick, (0.4, 0.6)),
    "arm_circles": (_arm_circles, (0.6, 1.0)),
}
FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def check_families(families: Sequence[str]) -> tuple[str, ...]:
    """Validate family names; returns them as a tuple.  Raises ValueError naming the allowed ones."""
    families = tuple(families)
    unknown = [f for f in families if f not in _FAMILIES]
    if unknown or not families:
        what = f"unknown motion families {unknown}" if unknown else "no motion families given"
        raise ValueError(f"{what}; allowed: {', '.join(FAMILIES)}")
    return families


_x, _y, _z = skeleton.rotation_x, skeleton.rotation_y, skeleton.rotation_z


def angles_to_directions(angles: torch.Tensor, heading_rad: torch.Tensor) -> torch.Tensor:
    """Joint angles ``(n, T, C)`` rad (``C = len(CHANNELS)``) and headings ``(n,)`` rad -> ``(n, T, 16, 3)`` directions.

    Rotations compose down the tree: heading -> pelvis (yaw) -> chest (pitch, roll, twist) -> upper limb
    (abduction about the forward axis, flexion about the lateral axis) -> lower limb.  The side sign
    ``sigma`` (-1 right, +1 left) mirrors abduction and twist so that equal angles give mirrored limbs.
    """
    a = {name: angles[..., i] for i, name in enumerate(CHANNELS)}
    ex, ez = angles.new_tensor((1.0, 0.0, 0.0)), angles.new_tensor((0.0, 0.0, 1.0))
    forward, down = angles.new_tensor((0.0, -1.0, 0.0)), -ez

    heading = _z(heading_rad)[:, None]  # (n, 1, 3, 3)
    pelvis = heading @ _z(a["pelvis_yaw"])
    chest = pelvis @ _x(a["trunk_pitch"]) @ _y(a["trunk_roll"]) @ _z(a["trunk_yaw"])
    dirs: dict[int, torch.Tensor] = {
        1: chest @ ez,
        8: chest @ _x(a["head_pitch"]) @ ez,
    }
    for side, sigma, (shoulder, elbow, wrist, hip, knee, ankle, foot) in (
        ("r", -1.0, (2, 3, 4, 9, 10, 11, 12)),
        ("l", 1.0, (5, 6, 7, 13, 14, 15, 16)),
    ):
        lateral = sigma * ex
        upper_arm = chest @ _y(sigma * a[f"{side}_shoulder_abd"]) @ _x(-a[f"{side}_shoulder_flex"])
        forearm = upper_arm @ _y(sigma * a[f"{side}_elbow_side"]) @ _x(-a[f"{side}_elbow_flex"])
        thigh = pelvis @ _y(sigma * a[f"{side}_hip_abd"]) @ _x(-a[f"{side}_hip_flex"])
        shin = thigh @ _x(a[f"{side}_knee_flex"])
        dirs[shoulder] = chest @ lateral
        dirs[elbow] = upper_arm @ down
        dirs[wrist] = forearm @ down
        dirs[hip] = pelvis @ lateral
        dirs[knee] = thigh @ down
        dirs[ankle] = shin @ down
        dirs[foot] = shin @ _x(a[f"{side}_ankle_flex"]) @ forward
    return torch.stack([dirs[j] for j in range(1, skeleton.NUM_JOINTS)], dim=-2)


#: Every heading: the default range of ``heading_deg``.
FULL_TURN = (0.0, 360.0)


def check_heading_range(heading_deg: tuple[float, float]) -> tuple[float, float]:
    """A heading range ``(lo, hi)`` in degrees with ``lo < hi <= lo + 360``, as a tuple of floats."""
    lo, hi = (float(v) for v in heading_deg)
    if not lo < hi <= lo + 360.0:
        raise ValueError(f"heading_deg must be (lo, hi) degrees with lo < hi <= lo + 360, got {heading_deg}")
    return lo, hi


def _headings(n: int, heading_deg: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """``n`` headings (rad) uniform in ``heading_deg``; the full turn draws exactly what ``2 pi U`` draws."""
    lo, hi = check_heading_range(heading_deg)
    return math.radians(lo) + math.radians(hi - lo) * torch.rand(n, generator=generator)


def sample_sequences(
    n: int,
    length: int,
    *,
    families: Sequence[str] = FAMILIES,
    fps: float = 30.0,
    amplitude: tuple[float, float] = (0.8, 1.2),
    heading_deg: tuple[float, float] = FULL_TURN,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sample ``n`` motion sequences of ``length`` frames at ``fps``: ``(n, length, 17, 3)`` float32 mm.

    Per sequence: a family drawn uniformly from ``families``, a cycle frequency uniform in the family's
    range, a uniform phase and heading (azimuth about z, uniform in ``heading_deg``; heading 0 faces -y, 90 faces
    +x), an amplitude factor uniform in ``amplitude`` and a small static posture jitter.  Poses are root-relative
    with canonical bone lengths.
    """
    families = check_families(families)
    if n < 0 or length < 1 or fps <= 0:
        raise ValueError(f"need n >= 0, length >= 1 and fps > 0, got n={n}, length={length}, fps={fps}")
    kind = torch.randint(len(families), (n,), generator=generator)
    speed_u = torch.rand(n, generator=generator)
    phase0 = 2 * math.pi * torch.rand(n, generator=generator)
    heading = _headings(n, heading_deg, generator)
    amp = amplitude[0] + (amplitude[1] - amplitude[0]) * torch.rand(n, 1, generator=generator)
    uniforms = torch.rand(n, _NUM_UNIFORMS, generator=generator)
    jitter = _JITTER_DEG * (2 * torch.rand(n, 1, len(CHANNELS), generator=generator) - 1)

    time_s = torch.arange(length, dtype=torch.float32) / fps
    angles_deg = jitter.expand(n, length, len(CHANNELS)).clone()
    for k, family in enumerate(families):
        idx = (kind == k).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        fn, (lo, hi) = _FAMILIES[family]
        freq_hz = lo + (hi - lo) * speed_u[idx]
        phase = 2 * math.pi * freq_hz[:, None] * time_s + phase0[idx, None]
        curves = fn(phase, amp[idx], uniforms[idx])
        for name, curve in curves.items():
            angles_deg[idx, :, CHANNELS.index(name)] += torch.as_tensor(curve).expand(len(idx), length)
    directions = angles_to_directions(torch.deg2rad(angles_deg), heading)
    return skeleton.from_bone_directions(directions).float()


def sample_windows(
    motion: torch.Tensor,
    n: int,
    length: int,
    *,
    heading_deg: tuple[float, float] = FULL_TURN,
    generator: torch.Generator,
) -> torch.Tensor:
    """``n`` random ``length``-frame windows of real motion ``(M, L, 17, 3)`` mm -> ``(n, length, 17, 3)`` float32.

    Per window: a uniform sequence, a uniform start inside it, and a turn about z uniform in ``heading_deg``
    applied about the pelvis, as procedural motion has; so the world renders recorded motion (e.g. BVH mocap
    through ``nlrd.data``) the same way it renders its own.  The turn adds to the recording's own heading.
    """
    if motion.dim() != 4 or tuple(motion.shape[2:]) != (skeleton.NUM_JOINTS, 3) or motion.shape[0] < 1:
        raise ValueError(f"motion must be (M, L, 17, 3) with M >= 1, got {tuple(motion.shape)}")
    if not 1 <= length <= motion.shape[1] or n < 0:
        raise ValueError(f"need n >= 0 and 1 <= length <= {motion.shape[1]}, got n={n}, length={length}")
    sequence = torch.randint(motion.shape[0], (n,), generator=generator)
    start = torch.randint(motion.shape[1] - length + 1, (n,), generator=generator)
    heading = _headings(n, heading_deg, generator)
    frames = start[:, None] + torch.arange(length)
    windows = motion[sequence[:, None], frames].float()
    return windows @ skeleton.rotation_z(heading)[:, None].transpose(-1, -2)

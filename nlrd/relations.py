"""The catalogue of candidate relations.

A relation pairs an *anchor* with a *counterpart* derived from the same raw sample.  Each is defined
twice, once on poses (to train its relation transformer and to measure non-localness on mocap) and once
on images (to distil it into the image encoder during adaptation); both use the same time indexing and
the same spatial operation, so a rendered video of ``r.poses(raw)`` equals ``r.images(render(raw))``.

Pose level: raw is one pose ``(..., 17, 3)`` or one image ``(..., 3, H, W)``.
Motion level: raw is a window of ``window`` frames ``(..., window, 17, 3)`` or ``(..., window, 3, H, W)``;
the anchor and the counterpart are the frames at ``anchor_index`` and ``counterpart_index``.
The spatial operation (flip or in-plane rotation) is applied to the counterpart only.

In-plane rotation and the camera: predicted poses are in the world frame turned to face the camera (the proxy
renderer's camera looks along +y from the x = 0 plane, raised by each clip's elevation; labels keep z up), so the
optical axis in that frame is (0, cos e, -sin e), tilted down by the clip's elevation e, which a relation does not
know per clip.  ``inplane5`` and ``inplane30`` turn the pose about +y, the optical axis of a level camera: exact
at e = 0 and wherever poses are given in camera coordinates.  ``inplane30_tilt18`` (any in-plane relation with
``_tilt<e>``, e in whole degrees) turns it about the optical axis of a camera raised by e, exact for clips filmed
at that elevation: the paper's rotation about the optical axis, given one elevation for the whole target, a fact
about its cameras rather than a label (the proxy target's sit 12-24 degrees up, so 18 is at most 6 degrees off).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from nlrd import skeleton

Level = Literal["pose", "motion"]
Spatial = Literal["none", "flip", "rotate"]

RELATION_NAMES: tuple[str, ...] = (
    "flip",
    "inplane5",
    "inplane30",
    "backward",
    "flip_forward",
    "flip_backward",
    "fast_forward",
    "slow_backward",
    "slow_forward",
)
#: The other names ``get_relation`` knows: an in-plane relation about a tilted optical axis (module docstring).
TILTED_FORM = "<in-plane relation>_tilt<whole degrees in -89..89, not 0>"
_TILTED = re.compile(r"(?P<base>\w+)_tilt(?P<tilt>-?[1-9][0-9]?)")


def rotate_about_optical_axis(joints: torch.Tensor, degrees: float, elevation_deg: float) -> torch.Tensor:
    """Turn ``(..., 17, 3)`` poses by ``degrees`` about the optical axis of the camera raised by ``elevation_deg``
    above the pelvis and looking at it, counter-clockwise on its screen: the pose side of ``rotate_images`` for
    such a camera.  At elevation 0 this is ``skeleton.rotate_in_plane``."""
    level_to_raised = skeleton.rotation_x(math.radians(-elevation_deg))  # +y -> the optical axis, +z -> image up
    turn = level_to_raised @ skeleton.rotation_y(math.radians(degrees)) @ level_to_raised.transpose(-1, -2)
    return skeleton.rotate(joints, turn)


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Mirror ``(..., 3, H, W)`` images horizontally: the image counterpart of ``skeleton.flip``."""
    return torch.flip(images, dims=[-1])


def rotate_images(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate ``(..., 3, H, W)`` images about their centre, the counterpart of ``skeleton.rotate_in_plane``.

    Positive ``degrees`` turn the content counter-clockwise on screen (rows grow downward), so a point
    right of the centre moves above it at +90 degrees.  Pixels from outside the frame repeat the border.
    """
    h, w = images.shape[-2:]
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    # Output pixel p samples input R^-1 p; in normalised (x right, y down) coordinates, with the aspect
    # ratio undone so the rotation is rigid in pixels.
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=images.dtype, device=images.device)
    flat = images.reshape(-1, *images.shape[-3:])
    grid = F.affine_grid(theta.expand(flat.shape[0], 2, 3), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(images.shape)


@dataclass(frozen=True)
class Relation:
    """One candidate relation; see the module docstring for the data layout.

    ``tilt_deg`` (rotations only): the elevation of the camera about whose optical axis the pose turns; 0 is +y.
    """

    name: str
    level: Level
    window: int = 1
    anchor_index: tuple[int, ...] = ()
    counterpart_index: tuple[int, ...] = ()
    spatial: Spatial = "none"
    degrees: float = 0.0
    tilt_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.level not in ("pose", "motion"):
            raise ValueError(f"relation {self.name!r}: level must be 'pose' or 'motion', got {self.level!r}")
        if self.spatial not in ("none", "flip", "rotate"):
            raise ValueError(f"relation {self.name!r}: spatial must be none, flip or rotate, got {self.spatial!r}")
        if self.tilt_deg != 0 and (self.spatial != "rotate" or not abs(self.tilt_deg) < 90):
            raise ValueError(f"relation {self.name!r}: tilt_deg takes a rotation and |tilt_deg| < 90")
        if self.level == "pose" and (self.window != 1 or self.anchor_index or self.counterpart_index):
            raise ValueError(f"pose-level relation {self.name!r} takes window=1 and no frame indices")
        if self.level == "motion":
            frames = self.anchor_index + self.counterpart_index
            if not self.anchor_index or not self.counterpart_index:
                raise ValueError(f"motion-level relation {self.name!r} needs anchor and counterpart frame indices")
            if min(frames) < 0 or max(frames) >= self.window:
                raise ValueError(f"relation {self.name!r}: frame indices must lie in [0, {self.window})")

    @property
    def clip_len(self) -> int:
        """Frames on each side of a motion-level pair (1 at pose level)."""
        return len(self.anchor_index) if self.level == "motion" else 1

    def poses(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``raw`` ``(..., 17, 3)`` (pose) or ``(..., window, 17, 3)`` (motion) -> (anchor, counterpart)."""
        anchor, counterpart = self._split(raw, time_dim=-3)
        return anchor, self.map_pose(counterpart)

    def map_pose(self, poses: torch.Tensor) -> torch.Tensor:
        """The relation's spatial map of poses ``(..., 17, 3)`` (any unit): the flip, the rotation, or the poses
        as they are.  Linear, so it maps an error as it maps the pose."""
        if self.spatial == "flip":
            return skeleton.flip(poses)
        if self.spatial == "rotate" and self.tilt_deg == 0:
            return skeleton.rotate_in_plane(poses, self.degrees)
        if self.spatial == "rotate":
            return rotate_about_optical_axis(poses, self.degrees, self.tilt_deg)
        return poses

    def images(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``raw`` ``(..., 3, H, W)`` (pose) or ``(..., window, 3, H, W)`` (motion) -> (anchor, counterpart)."""
        anchor, counterpart = self._split(raw, time_dim=-4)
        if self.spatial == "flip":
            counterpart = flip_images(counterpart)
        elif self.spatial == "rotate":
            counterpart = rotate_images(counterpart, self.degrees)
        return anchor, counterpart

    def _split(self, raw: torch.Tensor, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.level == "pose":
            return raw, raw
        if raw.dim() < -time_dim or raw.shape[time_dim] != self.window:
            raise ValueError(
                f"relation {self.name!r} needs a window of {self.window} frames along dim {time_dim}, "
                f"got shape {tuple(raw.shape)}"
            )
        anchor = raw.index_select(time_dim, torch.tensor(self.anchor_index, device=raw.device))
        counterpart = raw.index_select(time_dim, torch.tensor(self.counterpart_index, device=raw.device))
        return anchor, counterpart


def catalogue(clip_len: int) -> dict[str, Relation]:
    """All candidate relations for motion clips of ``clip_len`` frames (T), keyed by name.

    T-frame windows: backward (reverse), flip_forward (flip), flip_backward (flip and reverse).
    2T-frame windows: fast_forward (middle T -> every 2nd frame), slow_backward (every 2nd -> middle T
    reversed), slow_forward (every 2nd -> middle T).
    """
    if clip_len < 2:
        raise ValueError(f"clip_len must be at least 2 frames, got {clip_len}")
    t = clip_len
    forward = tuple(range(t))
    reverse = forward[::-1]
    every_2nd = tuple(range(0, 2 * t, 2))
    middle = tuple(range(t // 2, t // 2 + t))
    relations = [
        Relation("flip", "pose", spatial="flip"),
        Relation("inplane5", "pose", spatial="rotate", degrees=5.0),
        Relation("inplane30", "pose", spatial="rotate", degrees=30.0),
        Relation("backward", "motion", t, forward, reverse),
        Relation("flip_forward", "motion", t, forward, forward, spatial="flip"),
        Relation("flip_backward", "motion", t, forward, reverse, spatial="flip"),
        Relation("fast_forward", "motion", 2 * t, middle, every_2nd),
        Relation("slow_backward", "motion", 2 * t, every_2nd, middle[::-1]),
        Relation("slow_forward", "motion", 2 * t, every_2nd, middle),
    ]
    return {r.name: r for r in relations}


def get_relation(name: str, clip_len: int) -> Relation:
    """The catalogue relation called ``name``, or an in-plane one with ``_tilt<e>`` turning about the optical axis
    of a camera raised by e degrees (``inplane30_tilt18``); a ValueError lists the allowed names otherwise.

    A tilted relation is a relation of its own name, so it has its own transformer and stage cache key.
    """
    relations = catalogue(clip_len)
    if name in relations:
        return relations[name]
    match = _TILTED.fullmatch(name)
    base = relations.get(match["base"]) if match else None
    if base is None or base.spatial != "rotate" or not abs(int(match["tilt"])) < 90:
        raise ValueError(f"unknown relation {name!r}; allowed: {', '.join(RELATION_NAMES)}, {TILTED_FORM}")
    return dataclasses.replace(base, name=name, tilt_deg=float(match["tilt"]))


def is_relation_name(name: str) -> bool:
    """Whether ``get_relation`` knows ``name`` (a catalogue name or a tilted in-plane one)."""
    try:
        get_relation(name, clip_len=2)
    except ValueError:
        return False
    return True

"""The two visual domains of the proxy benchmark.

A domain fixes everything about *how* a pose is shown (camera, body colours, limb thickness,
background, texture strength) and *which* motions it shows.  Colours are per bone type, never per
side, and the background only varies vertically, so a mirrored image of a person is again a valid
image of a person: left and right can be told apart only from geometry (depth order, face marker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nlrd.world.motion import check_families

RGB = tuple[float, float, float]

#: Type of the bone ending at joint ``j`` is ``BONE_TYPES[j - 1]``; colours and radii are per type.
BONE_TYPES: tuple[str, ...] = (
    "torso", "girdle", "upper_arm", "forearm", "girdle", "upper_arm", "forearm", "head",
    "hip", "thigh", "shin", "foot", "hip", "thigh", "shin", "foot",
)  # fmt: skip
#: Capsule radius of each bone type relative to ``Domain.limb_radius_mm``.
RADIUS_SCALE: Mapping[str, float] = MappingProxyType(
    {"torso": 2.2, "head": 1.7, "girdle": 1.1, "upper_arm": 1.0, "forearm": 0.85, "hip": 1.6, "thigh": 1.3,
     "shin": 1.05, "foot": 0.75}
)  # fmt: skip
#: Face-marker radius relative to the head radius.
FACE_RADIUS_SCALE = 0.55


@dataclass(frozen=True)
class Domain:
    """How a domain looks.  Lengths in mm, angles in degrees, colours RGB in [0, 1].

    ``view_half_extent_mm`` is half the side of the square the camera sees in the plane of the pelvis:
    with the camera ``distance_mm`` away it sets the focal length.  ``texture_noise`` scales the static
    per-clip texture image added to the frame.
    """

    name: str
    families: tuple[str, ...]
    elevation_deg: tuple[float, float]
    distance_mm: float
    view_half_extent_mm: float
    limb_radius_mm: float
    bone_colors: Mapping[str, RGB] = field(hash=False)
    face_color: RGB
    background_top: RGB
    background_bottom: RGB
    texture_noise: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", check_families(self.families))
        object.__setattr__(self, "bone_colors", MappingProxyType(dict(self.bone_colors)))
        if set(self.bone_colors) != set(BONE_TYPES):
            raise ValueError(f"{self.name}: bone_colors must have exactly the keys {sorted(set(BONE_TYPES))}")
        lo, hi = self.elevation_deg
        if not -89.0 < lo <= hi < 89.0:
            raise ValueError(f"{self.name}: elevation_deg must be an increasing range inside (-89, 89), got {lo, hi}")
        if min(self.distance_mm, self.view_half_extent_mm, self.limb_radius_mm) <= 0 or self.texture_noise < 0:
            raise ValueError(f"{self.name}: distances, extent and radius must be > 0 and texture_noise >= 0")

    def radius_mm(self, bone_type: str) -> float:
        """Capsule radius of a bone type (``"face"`` for the face marker)."""
        if bone_type == "face":
            return FACE_RADIUS_SCALE * self.radius_mm("head")
        return RADIUS_SCALE[bone_type] * self.limb_radius_mm


#: Studio-like: cool grey-blue backdrop, saturated thick limbs, near-frontal camera.
SOURCE = Domain(
    name="source",
    families=("walk", "run", "jumping_jack", "squat", "wave", "arm_circles"),
    elevation_deg=(0.0, 10.0),
    distance_mm=4500.0,
    view_half_extent_mm=1150.0,
    limb_radius_mm=55.0,
    bone_colors={
        "torso": (0.85, 0.15, 0.15),
        "head": (0.95, 0.80, 0.60),
        "girdle": (0.85, 0.15, 0.15),
        "upper_arm": (0.95, 0.75, 0.10),
        "forearm": (0.95, 0.80, 0.60),
        "hip": (0.20, 0.25, 0.75),
        "thigh": (0.20, 0.25, 0.75),
        "shin": (0.15, 0.55, 0.25),
        "foot": (0.10, 0.10, 0.10),
    },  # fmt: skip
    face_color=(0.05, 0.05, 0.05),
    background_top=(0.55, 0.65, 0.80),
    background_bottom=(0.85, 0.88, 0.92),
    texture_noise=0.03,
)

#: Outdoor-like: different clothes (bone colours), an earthy backdrop, thinner limbs, a camera raised above the
#: source's elevation range and slightly nearer, heavier texture.  Each shift is moderate: together they leave a
#: source encoder trained with appearance augmentation about twice the oracle's error on the target, still below the
#: mean-pose baseline (the far larger shift used before made every source encoder worse than predicting the mean
#: pose, so nothing was left to adapt).  The face marker stays dark in both domains, as a face/head of hair does:
#: it is the only front/back cue, and a target with no recognisable facing cue is not bridgeable without labels.
TARGET = Domain(
    name="target",
    families=("walk", "run", "squat", "wave", "box", "kick"),
    elevation_deg=(12.0, 24.0),
    distance_mm=4000.0,
    view_half_extent_mm=1200.0,
    limb_radius_mm=50.0,
    bone_colors={
        "torso": (0.15, 0.70, 0.80),
        "head": (0.95, 0.60, 0.45),
        "girdle": (0.15, 0.70, 0.80),
        "upper_arm": (0.15, 0.70, 0.80),
        "forearm": (0.95, 0.60, 0.45),
        "hip": (0.92, 0.92, 0.85),
        "thigh": (0.92, 0.92, 0.85),
        "shin": (0.92, 0.92, 0.85),
        "foot": (0.30, 0.20, 0.60),
    },  # fmt: skip
    face_color=(0.05, 0.05, 0.05),
    background_top=(0.62, 0.58, 0.50),
    background_bottom=(0.50, 0.55, 0.42),
    texture_noise=0.045,
)

DOMAINS: dict[str, Domain] = {"source": SOURCE, "target": TARGET}

"""The visual domains of the proxy benchmark: a source and the target of each kind of domain gap.

A domain fixes everything about *how* a pose is shown (camera, body colours, limb thickness,
background, texture strength) and *which* motions it shows.  In ``SOURCE`` and ``TARGET`` colours are per bone
type, never per side, the background only varies vertically and look and camera are fixed per clip, so a mirrored
image of a person is again a valid image of a person (left and right can be told apart only from geometry: depth
order, face marker), and a source encoder's target error is mostly a per-clip offset that pose-flip and time
relations cannot see.  ``TARGET_INSTANCE`` is a milder look with what real video has on top (the paper's
instance-level misalignment): look and camera that change from frame to frame (``FrameVariation``), a
mirror-asymmetric look (``side_colors``, ``background_side``, ``light_side``) and a wider motion range.
``GAPS`` names each target: ``WorldConfig.gap`` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from nlrd.world.motion import FULL_TURN, check_families, check_heading_range

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
#: Bone types that exist once per side; ``Domain.side_colors`` keys are these with an ``l_`` or ``r_`` prefix.
SIDED_BONE_TYPES: tuple[str, ...] = ("girdle", "upper_arm", "forearm", "hip", "thigh", "shin", "foot")


@dataclass(frozen=True)
class FrameVariation:
    """How far each frame's look and camera depart from its clip's, drawn independently per frame, each uniform in
    +- the value: camera shake and lighting flicker make a per-frame encoder's errors change from frame to frame,
    which time relations can see.  ``light``: relative brightness and (half of it) per-channel tint; ``background``:
    added to the backdrop's colour; ``texture_px``: shift of the texture image per axis (moving shadows and noise);
    ``elevation_deg``, ``azimuth_deg``: camera angles (the labels turn with the azimuth: they are in the camera's
    frame); ``distance``: relative camera distance.  All zero: every frame looks as its clip does."""

    light: float = 0.0
    background: float = 0.0
    texture_px: int = 0
    elevation_deg: float = 0.0
    azimuth_deg: float = 0.0
    distance: float = 0.0

    def __post_init__(self) -> None:
        values = (self.light, self.background, self.texture_px, self.elevation_deg, self.azimuth_deg, self.distance)
        if min(values) < 0 or self.light >= 1 or self.distance >= 0.5 or max(self.elevation_deg, self.azimuth_deg) > 30:
            raise ValueError(f"FrameVariation values must be >= 0, light < 1, distance < 0.5, angles <= 30: {self}")

    @property
    def active(self) -> bool:
        """Whether any frame departs from its clip's look."""
        return self != FrameVariation()


@dataclass(frozen=True)
class Domain:
    """How a domain looks.  Lengths in mm, angles in degrees, colours RGB in [0, 1].

    ``view_half_extent_mm`` is half the side of the square the camera sees in the plane of the pelvis:
    with the camera ``distance_mm`` away it sets the focal length.  ``texture_noise`` scales the static
    per-clip texture image added to the frame.  ``amplitude``: the range of the motions' amplitude factor.

    The fields after ``amplitude`` break the mirror symmetry or the per-clip constancy of the look; their defaults
    keep both.  ``side_colors``: colours of one side's bones (``l_upper_arm``, ``r_shin``...) where they differ from
    ``bone_colors``; ``background_side``: added to the backdrop at the image's right edge and subtracted at its left
    (linear between); ``light_side``: relative brightening of every limb's right flank and darkening of its left
    (light from the right; negative: from the left); ``frame``: per-frame variation inside a clip;
    ``heading_deg``: the range the people's headings are drawn from (0 faces the camera, 90 faces image right and
    shows the right side, 180 the back; a mirror image turns heading h into -h), so a domain can show some views
    and not their mirrors.
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
    amplitude: tuple[float, float] = (0.8, 1.2)
    side_colors: Mapping[str, RGB] = field(default_factory=dict, hash=False)
    background_side: RGB = (0.0, 0.0, 0.0)
    light_side: float = 0.0
    frame: FrameVariation = FrameVariation()
    heading_deg: tuple[float, float] = FULL_TURN

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", check_families(self.families))
        try:
            object.__setattr__(self, "heading_deg", check_heading_range(self.heading_deg))
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}") from None
        object.__setattr__(self, "bone_colors", MappingProxyType(dict(self.bone_colors)))
        object.__setattr__(self, "side_colors", MappingProxyType(dict(self.side_colors)))
        if set(self.bone_colors) != set(BONE_TYPES):
            raise ValueError(f"{self.name}: bone_colors must have exactly the keys {sorted(set(BONE_TYPES))}")
        sided = {f"{side}_{kind}" for side in ("l", "r") for kind in SIDED_BONE_TYPES}
        if not set(self.side_colors) <= sided:
            raise ValueError(f"{self.name}: side_colors keys must be among {sorted(sided)}")
        if not 0 < self.amplitude[0] <= self.amplitude[1] or not abs(self.light_side) < 1:
            raise ValueError(f"{self.name}: need 0 < amplitude[0] <= amplitude[1] and |light_side| < 1")
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

    def bone_color(self, bone_type: str, side: str) -> RGB:
        """Colour of a bone of ``bone_type`` on ``side`` (``"l"``, ``"r"``, or ``""`` for the midline)."""
        return self.side_colors.get(f"{side}_{bone_type}", self.bone_colors[bone_type])

    @property
    def mirror_symmetric(self) -> bool:
        """Whether a mirrored image of this domain is again an image of it (given the mirrored pose)."""
        lo, hi = self.heading_deg
        symmetric_views = hi - lo == 360.0 or (lo + hi) % 360.0 == 0.0
        return symmetric_views and not self.side_colors and not any(self.background_side) and not self.light_side

    def mirrored(self) -> Domain:
        """The domain of this one's mirrored images: sides' colours swapped, side backdrop and side light reversed,
        headings negated.
        Rendering mirrored poses in it (with ``Appearance.flipped``) equals flipping this domain's images."""
        swap = {"l": "r", "r": "l"}
        return replace(
            self,
            name=f"{self.name} mirrored",
            side_colors={f"{swap[k[0]]}{k[1:]}": v for k, v in self.side_colors.items()},
            background_side=tuple(-c for c in self.background_side),
            light_side=-self.light_side,
            heading_deg=(-self.heading_deg[1], -self.heading_deg[0]),
        )


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

#: A video target: halfway between the source's studio and ``TARGET``'s outdoor look (bone colours, backdrop, camera
#: elevation and distance, limb thickness, texture), its motion families, and what real video has on top: every frame
#: its own light, backdrop shade, texture offset and camera shake (the label turns with the camera's azimuth), a
#: mirror-asymmetric outfit (an orange left sleeve, a grey brace on the right shin) under light from the right in
#: front of a backdrop lit from one side, and wider motions than the mocap's (amplitude up to 1.4).  Chosen on the
#: development target (world seed 1000; ``bench/RESULTS.md``, "A target with instance-level variation"): with
#: ``TARGET``'s full look on top of the per-frame variation a smoke source encoder was no better than the mean pose.
TARGET_INSTANCE = replace(
    TARGET,
    name="target_instance",
    elevation_deg=(6.0, 17.0),
    distance_mm=4250.0,
    view_half_extent_mm=1175.0,
    limb_radius_mm=52.5,
    bone_colors={
        "torso": (0.50, 0.43, 0.48),
        "head": (0.95, 0.70, 0.53),
        "girdle": (0.50, 0.43, 0.48),
        "upper_arm": (0.55, 0.73, 0.45),
        "forearm": (0.95, 0.70, 0.53),
        "hip": (0.56, 0.59, 0.80),
        "thigh": (0.56, 0.59, 0.80),
        "shin": (0.54, 0.74, 0.55),
        "foot": (0.20, 0.15, 0.35),
    },  # fmt: skip
    background_top=(0.59, 0.62, 0.65),
    background_bottom=(0.68, 0.72, 0.67),
    texture_noise=0.0375,
    amplitude=(0.8, 1.4),
    side_colors={
        "l_upper_arm": (0.95, 0.55, 0.15),
        "l_forearm": (0.95, 0.55, 0.15),
        "r_shin": (0.55, 0.55, 0.60),
    },
    background_side=(0.10, 0.07, 0.02),
    light_side=0.15,
    frame=FrameVariation(light=0.2, background=0.1, texture_px=8, elevation_deg=3.0, azimuth_deg=2.0, distance=0.1),
)

#: The target domain of each kind of domain gap (``WorldConfig.gap``); the source is ``SOURCE`` in each.
GAPS: dict[str, Domain] = {"clip": TARGET, "instance": TARGET_INSTANCE}

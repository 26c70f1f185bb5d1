"""Batched, vectorised torch renderer: poses -> person-centred RGB images.

Bones are soft capsules plus a small face marker in front of the head.  The camera sits on the x = 0
plane, ``distance_mm`` from the pelvis, raised by the clip's elevation and looking at the pelvis, so
image x is world x and image up is world z tilted by the elevation.  Primitives are composited
order-independently: per pixel, colour is the average of primitive colours with weights
``exp(-depth_k / tau)``, cut off steeply outside each primitive's outline (a soft z-buffer), and coverage
is ``1 - prod_k (1 - alpha_k)`` with ``alpha_k`` a sigmoid of the distance to the outline, so
swapping the left and right bones cannot change the image.  Pixel centres sit at ``i + 0.5`` about
the image centre and the tiles used to skip far primitives form a mirror-symmetric grid, hence a
horizontal image flip equals rendering the mirrored pose with the mirrored appearance, exactly up to
float rounding.

All randomness lives in :class:`Appearance` (sampled once per clip, with per-frame departures where the domain
has them: :class:`FrameLook`), so rendering itself is a deterministic function of (poses, domain, appearance).
A domain with side colours, a side backdrop or side light is not mirror-symmetric: its flipped image is rendered in
``Domain.mirrored()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from nlrd import skeleton
from nlrd.world.domains import BONE_TYPES, Domain

#: Width (px) of the soft capsule edge.
EDGE_PX = 0.5
#: Soft z-buffer weights are ``exp(OCCLUSION_GAMMA * min(edge, 0) - depth / DEPTH_TAU_MM)`` with
#: ``edge = (radius - distance) / EDGE_PX``.  The depth temperature lets a surface 20 mm nearer win by a factor e.
#: Inside its outline a primitive is not penalised, however thin; outside, its weight falls by 50 nats per px,
#: so that a much nearer limb a few pixels away cannot bleed its colour onto the pixel.
DEPTH_TAU_MM = 20.0
OCCLUSION_GAMMA = 25.0
#: Brightness change per metre of depth (nearer is brighter), a mild depth cue that survives flips.
DEPTH_SHADING_PER_M = 0.2
#: Coverage logits are clamped to +-this so that exp() stays finite and normal in float32.
_MAX_LOGIT = 80.0
#: Per-clip colour tint jitter (multiplicative, +- this).
TINT_JITTER = 0.08
#: A primitive is skipped on tiles farther than this (px) from its capsule: its coverage there is < e^-20.
CULL_MARGIN_PX = 5.0
#: Pixels (images x S x S) per rendering pass.  Small on CPU: buffers that stay under glibc's mmap threshold
#: are reused instead of being page-faulted in afresh on every pass (about a third faster at 64 px).
PIXELS_PER_PASS = {"cpu": 2**19, "other": 2**24}

_PARENTS = list(skeleton.PARENTS[1:])
_R_SHOULDER, _L_SHOULDER, _NECK, _HEAD = 2, 5, 1, 8
#: The side (``"r"``, ``"l"`` or ``""``: midline) of the bone ending at each joint 1..16, for ``Domain.side_colors``.
_BONE_SIDES = tuple("r" if j in skeleton.RIGHT else "l" if j in skeleton.LEFT else "" for j in range(1, 17))


@dataclass(frozen=True)
class FrameLook:
    """Per-frame departures from each clip's look (``Domain.frame``), each ``(N, T, ...)``: camera
    ``elevation_rad`` (added to the clip's), ``azimuth_rad`` (a turn of the camera about the vertical through the
    pelvis) and ``distance`` (a factor on ``Domain.distance_mm``, the lens unchanged), ``light`` ``(N, T, 3)`` (a
    factor on the tint), ``background`` ``(N, T, 3)`` (added to the backdrop), ``texture_shift`` ``(N, T, 2)``
    integer px (rows, columns) by which the clip's texture is rolled."""

    elevation_rad: torch.Tensor
    azimuth_rad: torch.Tensor
    distance: torch.Tensor
    light: torch.Tensor
    background: torch.Tensor
    texture_shift: torch.Tensor

    def __post_init__(self) -> None:
        nt = tuple(self.elevation_rad.shape)
        shapes = (self.azimuth_rad.shape, self.distance.shape, self.light.shape, self.background.shape)
        if len(nt) != 2 or shapes != (nt, nt, (*nt, 3), (*nt, 3)) or self.texture_shift.shape != (*nt, 2):
            raise ValueError(
                "FrameLook needs (N, T) angles and distance, (N, T, 3) light and backdrop, (N, T, 2) shift"
            )

    @property
    def length(self) -> int:
        return self.elevation_rad.shape[1]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> FrameLook:
        return FrameLook(*(fn(getattr(self, f.name)) for f in fields(self)))

    def __getitem__(self, index: torch.Tensor | slice) -> FrameLook:
        return self._map(lambda x: x[index])

    def to(self, device: torch.device | str) -> FrameLook:
        return self._map(lambda x: x.to(device))

    def flipped(self) -> FrameLook:
        """The departures of the mirrored clips: azimuth and horizontal texture shift change sign."""
        shift = self.texture_shift * self.texture_shift.new_tensor([1, -1])
        return FrameLook(self.elevation_rad, -self.azimuth_rad, self.distance, self.light, self.background, shift)


@dataclass(frozen=True)
class Appearance:
    """Per-clip random appearance: ``elevation_rad`` ``(N,)``, ``tint`` ``(N, 3)`` multiplicative colour,
    ``texture`` ``(N, 3, H, W)`` unit-scale noise image (scaled by ``Domain.texture_noise``); ``frames``: per-frame
    departures from these (None: every frame of a clip looks alike)."""

    elevation_rad: torch.Tensor
    tint: torch.Tensor
    texture: torch.Tensor
    frames: FrameLook | None = None

    def __post_init__(self) -> None:
        n = self.elevation_rad.shape[0]
        if self.elevation_rad.dim() != 1 or self.tint.shape != (n, 3) or self.texture.dim() != 4:
            raise ValueError("Appearance needs elevation_rad (N,), tint (N, 3) and texture (N, 3, H, W)")
        if self.texture.shape[:2] != (n, 3) or self.texture.shape[2] != self.texture.shape[3]:
            raise ValueError(f"texture must be (N, 3, S, S) with N = {n}, got {tuple(self.texture.shape)}")
        if self.frames is not None and self.frames.elevation_rad.shape[0] != n:
            raise ValueError(f"frames must describe the same {n} clips, got {self.frames.elevation_rad.shape[0]}")

    def __len__(self) -> int:
        return self.elevation_rad.shape[0]

    @property
    def image_size(self) -> int:
        return self.texture.shape[-1]

    def __getitem__(self, index: torch.Tensor | slice | int) -> Appearance:
        if isinstance(index, int):
            index = slice(index, index + 1)
        frames = None if self.frames is None else self.frames[index]
        return Appearance(self.elevation_rad[index], self.tint[index], self.texture[index], frames)

    def to(self, device: torch.device | str) -> Appearance:
        frames = None if self.frames is None else self.frames.to(device)
        return Appearance(self.elevation_rad.to(device), self.tint.to(device), self.texture.to(device), frames)

    def flipped(self) -> Appearance:
        """The appearance of the horizontally mirrored clips: the texture and the per-frame turns are mirrored, the
        rest is symmetric.  (The domain's own asymmetry is mirrored by ``Domain.mirrored``.)"""
        frames = None if self.frames is None else self.frames.flipped()
        return Appearance(self.elevation_rad, self.tint, self.texture.flip(-1), frames)


def sample_appearance(
    n: int, domain: Domain, image_size: int, generator: torch.Generator, length: int = 1
) -> Appearance:
    """Draw ``n`` per-clip appearances for ``domain`` at ``image_size`` px, for clips of ``length`` frames.

    Elevation is uniform in the domain's range; the texture mixes coarse blobs (8x8 upsampled) and
    pixel noise, normalised to unit standard deviation per image.  Per-frame departures (``Domain.frame``) are
    drawn after all of these, only when the domain has them, so a domain without them draws what it always did.
    """
    if n < 0 or image_size < 1:
        raise ValueError(f"need n >= 0 and image_size >= 1, got {n}, {image_size}")
    lo, hi = domain.elevation_deg
    elevation = torch.deg2rad(lo + (hi - lo) * torch.rand(n, generator=generator))
    tint = 1.0 + TINT_JITTER * (2 * torch.rand(n, 3, generator=generator) - 1)
    coarse = torch.randn(n, 3, 8, 8, generator=generator)
    fine = torch.randn(n, 3, image_size, image_size, generator=generator)
    texture = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False) + 0.5 * fine
    texture = texture / texture.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    frames = _sample_frames(n, length, domain, generator) if domain.frame.active else None
    return Appearance(elevation, tint, texture, frames)


def _sample_frames(n: int, length: int, domain: Domain, generator: torch.Generator) -> FrameLook:
    """Independent per-frame departures, each uniform in +- ``domain.frame``'s value."""
    v = domain.frame

    def symmetric(*shape: int) -> torch.Tensor:
        return 2 * torch.rand(*shape, generator=generator) - 1

    return FrameLook(
        elevation_rad=math.radians(v.elevation_deg) * symmetric(n, length),
        azimuth_rad=math.radians(v.azimuth_deg) * symmetric(n, length),
        distance=1.0 + v.distance * symmetric(n, length),
        light=(1.0 + v.light * symmetric(n, length, 1)) * (1.0 + 0.5 * v.light * symmetric(n, length, 3)),
        background=v.background * symmetric(n, length, 3),
        texture_shift=torch.randint(-v.texture_px, v.texture_px + 1, (n, length, 2), generator=generator),
    )


def camera_frame(seqs: torch.Tensor, appearance: Appearance) -> torch.Tensor:
    """``(N, T, 17, 3)`` poses as the camera sees them, and so the clips' labels: turned about the vertical through
    the origin (the pelvis of root-relative poses) by minus each frame's camera azimuth.  Elevation needs no turn:
    labels keep z up whatever the camera's elevation, as in every domain."""
    if appearance.frames is None:
        return seqs
    return skeleton.rotate(seqs, skeleton.rotation_z(-appearance.frames.azimuth_rad))


def facing_direction(joints: torch.Tensor) -> torch.Tensor:
    """Unit direction ``(..., 3)`` that ``(..., 17, 3)`` poses face: cross(shoulder axis R->L, neck->head).

    Under a mirror the shoulder axis maps to minus its mirror image, so the result mirrors with the pose.
    """
    shoulder_axis = joints[..., _L_SHOULDER, :] - joints[..., _R_SHOULDER, :]
    facing = torch.linalg.cross(shoulder_axis, joints[..., _HEAD, :] - joints[..., _NECK, :])
    return facing / facing.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _primitives(joints: torch.Tensor, domain: Domain) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Capsule endpoints ``(B, K, 3)`` x 2, radii ``(K,)`` mm and colours ``(K, 3)``; K = 16 bones + face.

    The face marker is a sphere (a zero-length capsule) on the front of the head, along the facing direction.
    """
    start, end = joints[:, _PARENTS], joints[:, 1:]
    head_axis = joints[:, _HEAD] - joints[:, _NECK]
    face = joints[:, _NECK] + 0.6 * head_axis + 0.95 * domain.radius_mm("head") * facing_direction(joints)
    start = torch.cat([start, face[:, None]], dim=1)
    end = torch.cat([end, face[:, None]], dim=1)
    types = (*BONE_TYPES, "face")
    radii = joints.new_tensor([domain.radius_mm(t) for t in types])
    bone_colors = (domain.bone_color(t, side) for t, side in zip(BONE_TYPES, _BONE_SIDES, strict=True))
    colors = joints.new_tensor([*bone_colors, domain.face_color])
    return start, end, radii, colors


def _project(
    points: torch.Tensor, elevation: torch.Tensor, distance: float | torch.Tensor, focal_px: float
) -> tuple[torch.Tensor, ...]:
    """Pelvis-relative ``(B, K, 3)`` mm -> image-plane ``u`` (right), ``v`` (up) px about the centre, depth mm.
    ``distance``: the camera's distance from the pelvis, mm (a float, or ``(B, 1)`` per image)."""
    sin_e, cos_e = torch.sin(elevation)[:, None], torch.cos(elevation)[:, None]
    x, y, z = points.unbind(-1)
    up = y * sin_e + z * cos_e
    depth = distance + y * cos_e - z * sin_e
    return focal_px * x / depth, focal_px * up / depth, depth


def _tile_size(image_size: int) -> int:
    """Tile side (px) dividing ``image_size`` so that the tile grid is mirror-symmetric; 8 when possible."""
    for size in (8, 10, 12, 6, 16, 14, 9, 7, 5, 4):
        if image_size % size == 0:
            return size
    return image_size


def _render_people(
    joints: torch.Tensor,
    elevation: torch.Tensor,
    domain: Domain,
    image_size: int,
    distance: torch.Tensor | None = None,
    backdrop_shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Person over background, before per-clip tint and texture: ``(B, 17, 3)`` mm -> ``(B, 3, S, S)``.
    ``distance`` ``(B,)`` mm (default: the domain's) and ``backdrop_shift`` ``(B, 3)``: per-image camera distance
    and backdrop colour change.

    The image is cut into square tiles and only (tile, primitive) pairs within ``CULL_MARGIN_PX`` of the
    primitive's capsule are evaluated (about a tenth of all pixel-primitive pairs); a culled primitive's
    coverage there is below ``exp(-2 * CULL_MARGIN_PX / EDGE_PX)``.  All pairs' pixels are computed in one
    vectorised pass and reduced per pixel with ``scatter_reduce_`` / ``index_add_``.  Per-primitive
    quantities (radius in px, depth shading) are taken at the segment midpoint.
    """
    joints = skeleton.root_relative(joints.float())
    batch, size = joints.shape[0], image_size
    focal_px = 0.5 * size * domain.distance_mm / domain.view_half_extent_mm  # a fixed lens, whatever the distance
    camera = domain.distance_mm if distance is None else distance[:, None]
    start, end, radii_mm, colors = _primitives(joints, domain)
    u0, v0, z0 = _project(start, elevation, camera, focal_px)  # (B, K) each
    u1, v1, z1 = _project(end, elevation, camera, focal_px)
    mid_depth = 0.5 * (z0 + z1)
    radius_px = focal_px * radii_mm / mid_depth
    depth_cue = 1.0 - DEPTH_SHADING_PER_M * ((mid_depth - camera) / 1000.0).clamp(-1.0, 1.0)
    colors = 0.4 * colors * depth_cue[..., None]  # (B, K, 3): nearer is brighter; 0.4 goes with the shading below

    # Which primitives can touch which tile: bounding boxes grown by radius + margin against tile edges.
    tile = _tile_size(size)
    tiles = size // tile
    edges = torch.arange(tiles + 1, dtype=joints.dtype, device=joints.device) * tile - 0.5 * size
    reach = radius_px + CULL_MARGIN_PX
    near_cols = (torch.maximum(u0, u1) + reach)[..., None] >= edges[:-1]
    near_cols &= (torch.minimum(u0, u1) - reach)[..., None] <= edges[1:]  # (B, K, tiles)
    near_rows = (torch.maximum(v0, v1) + reach)[..., None] >= -edges[1:]  # tile row r spans v in -edges[r+1..r]
    near_rows &= (torch.minimum(v0, v1) - reach)[..., None] <= -edges[:-1]
    b, k, row, col = (near_rows[..., :, None] & near_cols[..., None, :]).nonzero(as_tuple=True)

    # Per (tile, primitive) pair: pixel offsets from the segment start, (P, 1, tile) and (P, tile, 1).
    within = torch.arange(tile, dtype=joints.dtype, device=joints.device) + 0.5
    dx = (edges[col] - u0[b, k])[:, None, None] + within.view(1, 1, -1)
    dy = (-edges[row] - v0[b, k])[:, None, None] - within.view(1, -1, 1)
    ex, ey = (u1 - u0)[b, k], (v1 - v0)[b, k]
    inv_len2 = 1.0 / (ex * ex + ey * ey).clamp_min(1e-6)
    r_px, z_start, dz = radius_px[b, k], (z0 - camera)[b, k], (z1 - z0)[b, k]

    def pair(x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, 1, 1)

    t = torch.add(dx * pair(ex * inv_len2), dy * pair(ey * inv_len2)).clamp_(0.0, 1.0)  # (P, tile, tile)
    dist2 = torch.addcmul(dx, t, pair(-ex))  # px right of the nearest axis point
    # Side light: brighter on the flank the light comes from, by light_side at the outline.
    flank = (dist2 / pair(r_px)).clamp_(-1.0, 1.0).mul_(domain.light_side) if domain.light_side else None
    dist2.square_()
    edge = torch.addcmul(dy, t, pair(-ey)).square_()
    dist2.add_(edge)  # squared px distance to the segment
    # Coverage logit (radius - distance) / EDGE_PX, clamped so that exp() below stays finite and normal.
    torch.sqrt(dist2, out=edge)
    torch.add(pair(r_px / EDGE_PX), edge, alpha=-1.0 / EDGE_PX, out=edge).clamp_(-_MAX_LOGIT, _MAX_LOGIT)
    shade = torch.addcmul(dist2.new_ones(()), dist2, pair(-1.0 / r_px.square()), out=dist2).clamp_(min=0.0)
    # Soft z-buffer log-weights: gamma * min(edge, 0) - surface depth / tau, with surface = axis - radius * shade.
    log_w = torch.addcmul(pair(-z_start / DEPTH_TAU_MM), t, pair(-dz / DEPTH_TAU_MM), out=t)
    log_w.addcmul_(shade, pair(radii_mm[k] / DEPTH_TAU_MM)).add_(edge.clamp(max=0.0), alpha=OCCLUSION_GAMMA)
    # log(1 - alpha) = -softplus(edge): summing softplus (all positive) keeps the coverage free of cancellation,
    # so it does not depend on the order of the primitives.
    softplus = edge.exp_().log1p_()

    slot = (b * tiles + row) * tiles + col  # which (image, tile) each pair belongs to
    n_slots = batch * tiles * tiles
    pixel_max = log_w.new_full((n_slots, tile, tile), -torch.inf)
    pixel_max.scatter_reduce_(0, slot.view(-1, 1, 1).expand_as(log_w), log_w, reduce="amax")
    weights = log_w.sub_(pixel_max[slot]).exp_()  # per-pixel stable softmax numerators
    shade.add_(1.5)  # brightness 0.6 .. 1
    if flank is not None:
        shade.add_(flank)
    shaded = (weights * shade)[..., None] * colors[b, k][:, None, None, :]
    log_transmittance = weights.new_zeros(n_slots, tile, tile).index_add_(0, slot, softplus, alpha=-1.0)
    weight_sum = weights.new_zeros(n_slots, tile, tile).index_add_(0, slot, weights)
    color_sum = weights.new_zeros(n_slots, tile, tile, 3).index_add_(0, slot, shaded)
    coverage = 1.0 - torch.exp(log_transmittance)  # 1 - prod_k (1 - alpha_k)
    body = color_sum / weight_sum.clamp_min(1.0)[..., None]  # the sum is >= 1 wherever a pair exists

    def untile(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, tiles, tiles, tile, tile, -1).transpose(2, 3).reshape(batch, size, size, -1)

    rows = (torch.arange(size, dtype=joints.dtype, device=joints.device) + 0.5) / size
    top, bottom = joints.new_tensor(domain.background_top), joints.new_tensor(domain.background_bottom)
    background = (top * (1.0 - rows[:, None]) + bottom * rows[:, None])[None, :, None, :]  # (1, S, 1, 3)
    if any(domain.background_side):
        across = 2.0 * rows - 1.0  # -1 at the left edge, +1 at the right (pixel centres as for rows)
        background = background + across[None, None, :, None] * joints.new_tensor(domain.background_side)
    if backdrop_shift is not None:
        background = background + backdrop_shift[:, None, None, :]
    return torch.lerp(background, untile(body), untile(coverage[..., None])).permute(0, 3, 1, 2).contiguous()


def _roll(texture: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll each ``(B, 3, S, S)`` image by its own ``(B, 2)`` (rows, columns) px, as ``torch.roll`` would."""
    size = texture.shape[-1]
    index = torch.arange(size, device=texture.device)
    rows = (index - shift[:, :1]) % size  # (B, S)
    cols = (index - shift[:, 1:]) % size
    texture = texture.gather(2, rows[:, None, :, None].expand(-1, 3, -1, size))
    return texture.gather(3, cols[:, None, None, :].expand(-1, 3, size, -1))


def _finish(people: torch.Tensor, tint: torch.Tensor, texture: torch.Tensor, domain: Domain) -> torch.Tensor:
    """Apply per-clip tint ``(..., 3)`` and texture ``(..., 3, S, S)`` to ``(..., 3, S, S)`` images; clamp."""
    return (people * tint[..., None, None] + domain.texture_noise * texture).clamp_(0.0, 1.0)


def _check(joints: torch.Tensor, appearance: Appearance, image_size: int, batch_dims: int) -> None:
    if joints.dim() != batch_dims + 2 or joints.shape[-2:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"expected {batch_dims} batch dims then (17, 3), got {tuple(joints.shape)}")
    if len(appearance) != joints.shape[0] or appearance.image_size != image_size:
        raise ValueError(
            f"appearance has {len(appearance)} entries at {appearance.image_size} px; "
            f"need {joints.shape[0]} at {image_size} px"
        )


def render_poses(joints: torch.Tensor, domain: Domain, appearance: Appearance, image_size: int) -> torch.Tensor:
    """Render ``(B, 17, 3)`` mm poses (one appearance each) -> ``(B, 3, S, S)`` float images in [0, 1]."""
    _check(joints, appearance, image_size, batch_dims=1)
    return render_clips(joints[:, None], domain, appearance, image_size)[:, 0]


@torch.no_grad()
def render_clips(seqs: torch.Tensor, domain: Domain, appearance: Appearance, image_size: int) -> torch.Tensor:
    """Render ``(N, T, 17, 3)`` mm sequences with one appearance per clip -> ``(N, T, 3, S, S)`` in [0, 1].

    Frames are rendered in passes of at most ``PIXELS_PER_PASS`` pixels; each pass is fully vectorised.
    Not differentiable (it is a data generator).
    """
    _check(seqs, appearance, image_size, batch_dims=2)
    n, length = seqs.shape[:2]
    look = appearance.frames
    if look is not None and look.length != length:
        raise ValueError(f"appearance.frames has {look.length} frames per clip; the clips have {length}")
    frames = camera_frame(seqs, appearance).reshape(n * length, skeleton.NUM_JOINTS, 3)
    clip = torch.arange(n * length, device=seqs.device) // length  # clip index of every frame
    elevation, tint = appearance.elevation_rad[clip], appearance.tint[clip]
    if look is not None:
        elevation = elevation + look.elevation_rad.flatten()
        tint = tint * look.light.flatten(0, 1)
        distance, backdrop = domain.distance_mm * look.distance.flatten(), look.background.flatten(0, 1)
        shift = look.texture_shift.flatten(0, 1)
    pixels = PIXELS_PER_PASS["cpu" if seqs.device.type == "cpu" else "other"]
    per_pass = max(1, pixels // (image_size * image_size))
    out = seqs.new_empty(n * length, 3, image_size, image_size)
    for i in range(0, n * length, per_pass):
        part = slice(i, i + per_pass)
        texture = appearance.texture[clip[part]]
        if look is None:
            people = _render_people(frames[part], elevation[part], domain, image_size)
        else:
            people = _render_people(frames[part], elevation[part], domain, image_size, distance[part], backdrop[part])
            texture = _roll(texture, shift[part])
        out[part] = _finish(people, tint[part], texture, domain)
    return out.view(n, length, 3, image_size, image_size)

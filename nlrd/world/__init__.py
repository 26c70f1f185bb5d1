"""The embedded proxy benchmark: procedural motion rendered in a labelled source and an unlabelled target domain.

``build_world`` turns a :class:`WorldConfig` into the four data sources the method needs: unpaired mocap
(all motion families), labelled source clips, unlabelled target clips of ``2 * clip_len`` frames (slow and
fast relations need 2T-frame windows) and a labelled target validation split used only for evaluation.
The target differs from the source both visually (``domains``) and in its motion families; ``WorldConfig.gap``
picks the kind of difference (``domains.GAPS``).  Given real mocap
(``motion``, e.g. a BVH folder through ``nlrd.data``), the world renders that instead of procedural motion.
``World``, its ``PARTS`` and the sizing of its clip parts live in ``nlrd.core`` (real data sets fill them too);
``World`` and ``PARTS`` are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import torch

from nlrd.config import ConfigError, check_ranges
from nlrd.core import CLIP_PARTS, PARTS, ClipSet, World
from nlrd.world.domains import DOMAINS, GAPS, SOURCE, TARGET, TARGET_INSTANCE, Domain, FrameVariation
from nlrd.world.motion import FAMILIES, sample_sequences, sample_windows
from nlrd.world.render import Appearance, FrameLook, camera_frame, render_clips, render_poses, sample_appearance

__all__ = [
    "DOMAINS", "FAMILIES", "FPS", "GAPS", "PARTS", "SOURCE", "TARGET", "TARGET_INSTANCE", "Appearance", "Domain",
    "FrameLook", "FrameVariation", "World", "WorldConfig", "build_world", "camera_frame", "render_clips",
    "render_poses", "sample_appearance", "sample_clips", "sample_sequences", "sample_windows", "world_part",
]  # fmt: skip

#: Frame rate of every world clip.
FPS = 30.0
#: Clips rendered per call while building, to bound the float memory before the uint8 conversion.
_CLIPS_PER_CHUNK = 64
# Independent random streams, one per part of the world; the order is part of the world's definition.
_STREAMS = (
    "mocap", "source_motion", "source_look", "target_train_motion", "target_train_look", "val_motion", "val_look",
)  # fmt: skip


@dataclass
class WorldConfig:
    """Sizes of the proxy world.  ``image_size`` in px, ``clip_len`` in frames (the adaptation clip length T).

    ``gap``: the kind of domain gap, i.e. which target domain (``domains.GAPS``).  ``clip`` (``TARGET``): another
    look and camera per clip, mirror-symmetric, so the source encoder's target error is mostly a per-clip offset;
    ``instance`` (``TARGET_INSTANCE``): the paper's instance-level misalignment, a milder look whose light, backdrop,
    texture and camera change from frame to frame, mirror-asymmetric, with a wider motion range.  The source is the
    same in both, so stages trained on either world are the same.
    """

    image_size: int = 64
    clip_len: int = 16
    mocap_sequences: int = 512
    source_clips: int = 128
    target_clips: int = 128
    val_clips: int = 32
    seed: int = 0
    gap: Literal["clip", "instance"] = "clip"

    def __post_init__(self) -> None:
        if self.gap not in GAPS:
            raise ConfigError("WorldConfig", "gap", f"got {self.gap!r}", tuple(GAPS))
        numbers = [f.name for f in fields(self) if f.name != "gap"]
        for name in numbers:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError("WorldConfig", name, f"must be an integer, got {value!r}")
        check_ranges(self, counts=[name for name in numbers if name != "seed"], non_negative=("seed",))
        if self.image_size < 8:
            raise ConfigError("WorldConfig", "image_size", f"must be at least 8 px, got {self.image_size}")


def _generators(seed: int) -> dict[str, torch.Generator]:
    """One torch.Generator per part, seeded from independent children of a NumPy SeedSequence."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: torch.Generator().manual_seed(int(child.generate_state(1, dtype=np.uint64)[0]))
        for name, child in zip(_STREAMS, children, strict=True)
    }


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.mul(255.0).round_().to(torch.uint8)


def sample_clips(
    n: int,
    length: int,
    domain: Domain,
    image_size: int,
    motion_gen: torch.Generator,
    look_gen: torch.Generator,
    motion: torch.Tensor | None = None,
    fps: float = FPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n`` motions and render them: uint8 ``(n, T, 3, S, S)`` and mm poses in the camera's frame
    (``camera_frame``).  The motions are the domain's procedural families and amplitudes, or random windows of
    ``motion`` ``(M, L, 17, 3)`` (real mocap) when it is given."""
    if motion is None:
        poses = sample_sequences(
            n,
            length,
            families=domain.families,
            fps=fps,
            amplitude=domain.amplitude,
            heading_deg=domain.heading_deg,
            generator=motion_gen,
        )
    else:
        poses = sample_windows(motion, n, length, heading_deg=domain.heading_deg, generator=motion_gen)
    look = sample_appearance(n, domain, image_size, look_gen, length)
    frames = torch.cat(
        [
            _to_uint8(render_clips(poses[i : i + _CLIPS_PER_CHUNK], domain, look[i : i + _CLIPS_PER_CHUNK], image_size))
            for i in range(0, n, _CLIPS_PER_CHUNK)
        ]
    )
    return frames, camera_frame(poses, look)


#: How the proxy renders each clip part (sized by ``nlrd.core.CLIP_PARTS``): its domain (``None``: the target of the
#: world's gap), motion stream and look stream.
_RENDERED_PARTS: dict[str, tuple[Domain | None, str, str]] = {
    "source": (SOURCE, "source_motion", "source_look"),
    "target_train": (None, "target_train_motion", "target_train_look"),
    "target_val": (None, "val_motion", "val_look"),
}


def world_part(
    cfg: WorldConfig, part: str, motion: torch.Tensor | None = None, fps: float = FPS, *, with_labels: bool = False
) -> torch.Tensor | ClipSet:
    """One part of the world (see :class:`World`); each part has its own random streams, so building parts one by one
    gives exactly what :func:`build_world` gives.

    ``with_labels``: keep the poses of a part the method must not see labelled (the target's training clips); only
    the benchmark's oracle line, an encoder supervised on the target, reads them.

    ``motion``: real mocap ``(M, 2 * clip_len, 17, 3)`` mm in place of procedural motion: it *is* the ``mocap`` part,
    and clips render random windows of it at random headings (the domains' motion families then play no part).
    ``fps``: the frame rate of procedural motion and of the clips (real motion must already be at this rate).
    """
    gens = _generators(cfg.seed)
    if part == "mocap":
        if motion is not None:
            return motion
        length = 2 * cfg.clip_len
        return sample_sequences(cfg.mocap_sequences, length, families=FAMILIES, fps=fps, generator=gens["mocap"])
    if part not in CLIP_PARTS:
        raise ValueError(f"unknown world part {part!r}; allowed: {', '.join(PARTS)}")
    count, multiple, labelled = CLIP_PARTS[part]
    domain, motion_stream, look_stream = _RENDERED_PARTS[part]
    frames, poses = sample_clips(
        getattr(cfg, count),
        multiple * cfg.clip_len,
        GAPS[cfg.gap] if domain is None else domain,
        cfg.image_size,
        gens[motion_stream],
        gens[look_stream],
        motion=motion,
        fps=fps,
    )
    return ClipSet(frames, poses if labelled or with_labels else None, fps=fps)


def build_world(cfg: WorldConfig, motion: torch.Tensor | None = None, fps: float = FPS) -> World:
    """Build the proxy world; deterministic for a given config (each part has its own random stream).

    ``motion`` and ``fps``: as for :func:`world_part` (default: procedural motion at 30 fps).
    """
    return World(**{part: world_part(cfg, part, motion, fps) for part in PARTS})

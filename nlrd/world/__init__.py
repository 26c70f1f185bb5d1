"""The embedded proxy benchmark: procedural motion rendered in a labelled source and an unlabelled target domain.

``build_world`` turns a :class:`WorldConfig` into the four data sources the method needs: unpaired mocap
(all motion families), labelled source clips, unlabelled target clips of ``2 * clip_len`` frames (slow and
fast relations need 2T-frame windows) and a labelled target validation split used only for evaluation.
The target differs from the source both visually (``domains``) and in its motion families.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from nlrd.data import ClipSet
from nlrd.world.domains import DOMAINS, SOURCE, TARGET, Domain
from nlrd.world.motion import FAMILIES, sample_sequences
from nlrd.world.render import Appearance, render_clips, render_poses, sample_appearance

__all__ = [
    "DOMAINS", "FAMILIES", "FPS", "SOURCE", "TARGET", "Appearance", "Domain", "World", "WorldConfig",
    "build_world", "render_clips", "render_poses", "sample_appearance", "sample_sequences",
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
    """Sizes of the proxy world.  ``image_size`` in px, ``clip_len`` in frames (the adaptation clip length T)."""

    image_size: int = 64
    clip_len: int = 16
    mocap_sequences: int = 512
    source_clips: int = 128
    target_clips: int = 128
    val_clips: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"WorldConfig.{f.name} must be an int, got {value!r}")
            if f.name == "seed":
                if value < 0:
                    raise ValueError(f"WorldConfig.seed must be >= 0, got {value}")
            elif value <= 0:
                raise ValueError(f"WorldConfig.{f.name} must be positive, got {value}")
        if self.image_size < 8:
            raise ValueError(f"WorldConfig.image_size must be at least 8 px, got {self.image_size}")


@dataclass
class World:
    """The proxy benchmark's data.

    ``mocap``: ``(M, 2 * clip_len, 17, 3)`` float32 mm, unpaired sequences from all motion families.
    ``source``: labelled ``clip_len``-frame clips in the SOURCE domain.  ``target_train``: unlabelled
    ``2 * clip_len``-frame clips in the TARGET domain.  ``target_val``: labelled ``clip_len``-frame TARGET
    clips, for evaluation only.
    """

    mocap: torch.Tensor
    source: ClipSet
    target_train: ClipSet
    target_val: ClipSet


def _generators(seed: int) -> dict[str, torch.Generator]:
    """One torch.Generator per part, seeded from independent children of a NumPy SeedSequence."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {
        name: torch.Generator().manual_seed(int(child.generate_state(1, dtype=np.uint64)[0]))
        for name, child in zip(_STREAMS, children, strict=True)
    }


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.mul(255.0).round_().to(torch.uint8)


def _clips(
    n: int, length: int, domain: Domain, image_size: int, motion_gen: torch.Generator, look_gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n`` motions of the domain's families and render them: uint8 ``(n, T, 3, S, S)`` and mm poses."""
    poses = sample_sequences(n, length, families=domain.families, fps=FPS, generator=motion_gen)
    look = sample_appearance(n, domain, image_size, look_gen)
    frames = torch.cat(
        [
            _to_uint8(render_clips(poses[i : i + _CLIPS_PER_CHUNK], domain, look[i : i + _CLIPS_PER_CHUNK], image_size))
            for i in range(0, n, _CLIPS_PER_CHUNK)
        ]
    )
    return frames, poses


def build_world(cfg: WorldConfig) -> World:
    """Build the proxy world; deterministic for a given config (each part has its own random stream)."""
    gens = _generators(cfg.seed)
    length, size = cfg.clip_len, cfg.image_size
    mocap = sample_sequences(cfg.mocap_sequences, 2 * length, families=FAMILIES, fps=FPS, generator=gens["mocap"])
    src_frames, src_poses = _clips(cfg.source_clips, length, SOURCE, size, gens["source_motion"], gens["source_look"])
    train_frames, _ = _clips(
        cfg.target_clips, 2 * length, TARGET, size, gens["target_train_motion"], gens["target_train_look"]
    )
    val_frames, val_poses = _clips(cfg.val_clips, length, TARGET, size, gens["val_motion"], gens["val_look"])
    return World(
        mocap=mocap,
        source=ClipSet(src_frames, src_poses, fps=FPS),
        target_train=ClipSet(train_frames, None, fps=FPS),
        target_val=ClipSet(val_frames, val_poses, fps=FPS),
    )

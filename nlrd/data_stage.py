"""The data stage: a ``World`` (mocap, source, target_train, target_val) filled as a ``DataConfig`` says.

Every part comes from the proxy world or from a real data set; the rest of the method sees the same ``World`` either
way.  Sizes follow the ``WorldConfig``: ``clip_len`` T (source and target_val clips have T frames, target_train
clips and mocap windows 2T), ``image_size``, and the counts: a world part renders that many clips, a real part reads
at most that many, evenly spread over all it has (``mocap_sequences`` windows of real mocap likewise).

When the mocap part is real, the world's clip parts render windows of it (at random headings) instead of
procedural motion; the proxy domains then differ in look and camera only, not in motion families.
"""

from __future__ import annotations

import dataclasses

import torch

from nlrd.core import CLIP_PARTS, ClipSet, World
from nlrd.data import DataConfig, DatasetError, stack_windows
from nlrd.world import WorldConfig, build_world, world_part


def real_mocap(world: WorldConfig, data: DataConfig) -> torch.Tensor:
    """``(M, 2T, 17, 3)`` mm windows of the real mocap part, ``M <= world.mocap_sequences``, in recording order."""
    sequences = data.mocap.poses(data.fps)
    motion = stack_windows(sequences, 2 * world.clip_len, skip_short=True, limit=world.mocap_sequences)
    if len(motion) < 2:
        raise DatasetError(
            f"{data.mocap.kind} mocap: only {len(motion)} window of {2 * world.clip_len} frames at {data.fps:g} fps "
            f"(at most world.mocap_sequences = {world.mocap_sequences} are taken); at least 2 are needed, as some are "
            "held out for non-localness"
        )
    return motion


def build_data(world: WorldConfig, data: DataConfig) -> World:
    """The ``World`` of ``data``; the default config gives exactly ``build_world(world)``."""
    if data.is_proxy:
        return build_world(world)
    motion = None if data.mocap.kind == "world" else real_mocap(world, data)
    parts: dict[str, torch.Tensor | ClipSet] = {"mocap": world_part(world, "mocap", motion, data.fps)}
    for part, (count, multiple, labelled) in CLIP_PARTS.items():
        source = getattr(data, part)
        if source.kind == "world":
            parts[part] = world_part(world, part, motion, data.fps)
            continue
        clips = source.clips(multiple * world.clip_len, data.fps, world.image_size, getattr(world, count))
        parts[part] = clips if labelled else dataclasses.replace(clips, poses=None)
    return World(**parts)


#: Added to the world's seed to draw clips no stage trained on (another seed's random streams).
FRESH_SEED_OFFSET = 2**31


def fresh_source_clips(world: WorldConfig, data: DataConfig, mocap: torch.Tensor, count: int = 32) -> ClipSet | None:
    """``count`` labelled source clips the source encoder never saw, or ``None`` when the source part is real data
    (its clips are all in the source part already).  ``mocap``: the world's mocap part, rendered in place of
    procedural motion when it is real."""
    if data.source.kind != "world":
        return None
    fresh = dataclasses.replace(world, seed=world.seed + FRESH_SEED_OFFSET, source_clips=count)
    motion = None if data.mocap.kind == "world" else mocap
    return world_part(fresh, "source", motion, data.fps)

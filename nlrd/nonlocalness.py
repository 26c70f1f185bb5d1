"""Non-localness of a relation: how far apart, in the frozen latent spaces, it ties its two sides.

A relation whose anchor and counterpart have nearly the same latent (a 5 degree rotation) says little
the contrastive losses do not already say; one that links distant latents (a flip, a reversed clip) can
pull target features into place.  This is the cheap pre-filter of the search: no image is involved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nlrd.relations import Relation

AGGREGATES = ("mean", "max", "min", "sum")


@dataclass
class NonLocalness:
    """``raw``: mean latent distance between anchor and counterpart (d^z at pose level, d^v at motion
    level).  ``baseline``: mean distance between random pairs of the same kind of latent (pose codes, or
    motion codes of forward clips).  ``normalised = raw / baseline`` compares pose- and motion-level
    relations on one scale."""

    relation: str
    level: str
    raw: float
    baseline: float
    normalised: float


def mocap_windows(mocap_mm: torch.Tensor, length: int) -> torch.Tensor:
    """Every ``length``-frame window of ``(M, L, 17, 3)`` mocap, ``(M * (L - length + 1), length, 17, 3)``."""
    return mocap_mm.unfold(1, length, 1).permute(0, 1, 4, 2, 3).flatten(0, 1)


def random_pairs(n: int, num_pairs: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)`` ``(num_pairs,)`` of random pairs of distinct items among ``n``, drawn from ``generator``."""
    if n < 2:
        raise ValueError("need at least two samples for the random-pair baseline")
    i = torch.randint(n, (num_pairs,), generator=generator)
    j = (i + torch.randint(1, n, (num_pairs,), generator=generator)) % n
    return i, j


def pair_distance(codes: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> float:
    """Mean L2 distance between rows ``i`` and rows ``j`` of ``codes`` ``(N, D)``."""
    return (codes[i.to(codes.device)] - codes[j.to(codes.device)]).norm(dim=-1).mean().item()


def random_subset(samples: torch.Tensor, max_samples: int, generator: torch.Generator) -> torch.Tensor:
    """At most ``max_samples`` rows of ``samples``, drawn without replacement from ``generator`` (CPU)."""
    if len(samples) <= max_samples:
        return samples
    return samples[torch.randperm(len(samples), generator=generator)[:max_samples].to(samples.device)]


def level_samples(mocap_mm: torch.Tensor, level: str, length: int) -> torch.Tensor:
    """Every frame (pose level) or every ``length``-frame window (motion level) of ``(M, L, 17, 3)`` mocap."""
    if level == "pose":
        return mocap_mm.flatten(0, 1)
    return mocap_windows(mocap_mm, length)


Codec = Callable[[torch.Tensor], torch.Tensor]


def level_codec(prior: nn.Module, motion: nn.Module, level: str, clip_len: int) -> tuple[Codec, Codec]:
    """Encoder and decoder of a level: poses <-> pose codes z, or ``(B, clip_len, 17, 3)`` clips <-> motion codes v
    (decoded through ``D_m`` then ``D_p``), poses in mm."""
    if level == "pose":
        return prior.encode, prior.decode
    return (lambda clips: motion.encode(prior.encode(clips))), (lambda v: prior.decode(motion.decode(v, clip_len)))


def chunked(fn: Codec, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``fn`` over ``x`` in slices of ``chunk`` rows, concatenated: bounds the memory of the LSTM."""
    return torch.cat([fn(x[start : start + chunk]) for start in range(0, len(x), chunk)])


def random_codes(
    prior: nn.Module,
    motion: nn.Module,
    mocap: torch.Tensor,
    level: str,
    clip_len: int,
    *,
    generator: torch.Generator,
    max_samples: int = 2048,
    chunk: int = 1024,
) -> torch.Tensor:
    """Codes of at most ``max_samples`` poses (pose level) or ``clip_len``-frame forward clips (motion level) of
    ``(M, L, 17, 3)`` mocap, drawn from ``generator``: what the random-pair baseline pairs up."""
    device = next(prior.parameters()).device
    mocap = mocap.to(device, torch.float32)
    if level != "pose" and clip_len > mocap.shape[1]:
        raise ValueError(f"motion clips need {clip_len} frames, mocap has {mocap.shape[1]}")
    encode, _ = level_codec(prior, motion, level, clip_len)
    samples = random_subset(level_samples(mocap, level, clip_len), max_samples, generator)
    return chunked(encode, samples, chunk)


def check_relation_window(relation: Relation, mocap: torch.Tensor) -> None:
    """Refuse ``(M, L, 17, 3)`` mocap whose sequences are shorter than a motion-level relation's window."""
    if relation.level != "pose" and relation.window > mocap.shape[1]:
        raise ValueError(f"relation {relation.name!r} needs {relation.window} frames, mocap has {mocap.shape[1]}")


def relation_samples(
    prior: nn.Module, mocap: torch.Tensor, relation: Relation, max_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """At most ``max_samples`` frames (pose level) or ``relation.window``-frame windows (motion level) of ``mocap``,
    drawn from ``generator``, on the prior's device: the samples a relation is scored on."""
    device = next(prior.parameters()).device
    return random_subset(
        level_samples(mocap.to(device, torch.float32), relation.level, relation.window), max_samples, generator
    )


@torch.no_grad()
def random_pair_baseline(
    prior: nn.Module,
    motion: nn.Module,
    mocap: torch.Tensor,
    level: str,
    clip_len: int,
    *,
    generator: torch.Generator,
    max_samples: int = 2048,
    num_pairs: int = 4096,
    chunk: int = 1024,
) -> float:
    """Mean latent distance between random pairs of pose codes (pose level) or of motion codes of
    ``clip_len``-frame forward clips (motion level): the scale ``nonlocalness`` divides by.

    It depends on the level only, so callers scoring many relations compute it once per level and pass it
    to ``nonlocalness`` with ``generator`` in the state this call left it in.
    """
    codes = random_codes(
        prior, motion, mocap, level, clip_len, generator=generator, max_samples=max_samples, chunk=chunk
    )
    return pair_distance(codes, *random_pairs(len(codes), num_pairs, generator))


@torch.no_grad()
def nonlocalness(
    prior: nn.Module,
    motion: nn.Module,
    mocap: torch.Tensor,
    relation: Relation,
    *,
    generator: torch.Generator,
    baseline: float | None = None,
    max_samples: int = 2048,
    num_pairs: int = 4096,
    chunk: int = 1024,
) -> NonLocalness:
    """Non-localness of ``relation`` on held-out ``mocap`` ``(M, L, 17, 3)`` mm through the frozen encoders.

    Samples: every frame (pose level) or every window of ``relation.window`` frames (motion level), a
    random ``max_samples`` of them when there are more, which bounds the cost of the LSTM.
    ``generator`` (CPU) draws that subset, after the ``random_pair_baseline`` of the relation's level is
    drawn from it; a caller sharing that baseline passes it as ``baseline`` with ``generator`` in the state
    computing it left, and gets the very numbers of a call that computes it.
    """
    check_relation_window(relation, mocap)
    if baseline is None:
        baseline = random_pair_baseline(
            prior,
            motion,
            mocap,
            relation.level,
            relation.clip_len,
            generator=generator,
            max_samples=max_samples,
            num_pairs=num_pairs,
            chunk=chunk,
        )
    encode, _ = level_codec(prior, motion, relation.level, relation.clip_len)
    samples = relation_samples(prior, mocap, relation, max_samples, generator)
    distances = []
    for start in range(0, len(samples), chunk):
        anchor, counterpart = relation.poses(samples[start : start + chunk])
        distances.append((encode(anchor) - encode(counterpart)).norm(dim=-1))
    raw = torch.cat(distances).mean().item()
    return NonLocalness(relation.name, relation.level, raw, baseline, raw / baseline)


def set_score(values: Sequence[float], aggregate: str = "mean") -> float:
    """One score for a relation set from its members' (normalised) non-localness values."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; allowed: {', '.join(AGGREGATES)}")
    if len(values) == 0:
        raise ValueError("cannot score an empty relation set")
    reduce = {"mean": lambda v: sum(v) / len(v), "max": max, "min": min, "sum": sum}[aggregate]
    return float(reduce(list(values)))

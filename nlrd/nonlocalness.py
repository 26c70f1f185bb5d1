"""Non-localness of a relation: how far apart, in the frozen latent spaces, it ties its two sides.

A relation whose anchor and counterpart have nearly the same latent (a 5 degree rotation) says little
the contrastive losses do not already say; one that links distant latents (a flip, a reversed clip) can
pull target features into place.  This is the cheap pre-filter of the search: no image is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def _windows(mocap_mm: torch.Tensor, length: int) -> torch.Tensor:
    """Every ``length``-frame window of ``(M, L, 17, 3)`` mocap, ``(M * (L - length + 1), length, 17, 3)``."""
    return mocap_mm.unfold(1, length, 1).permute(0, 1, 4, 2, 3).flatten(0, 1)


def _random_pair_distance(codes: torch.Tensor, num_pairs: int, generator: torch.Generator) -> float:
    """Mean L2 distance between ``num_pairs`` random pairs of distinct rows of ``codes`` ``(N, D)``."""
    n = len(codes)
    if n < 2:
        raise ValueError("need at least two samples for the random-pair baseline")
    i = torch.randint(n, (num_pairs,), generator=generator)
    j = (i + torch.randint(1, n, (num_pairs,), generator=generator)) % n
    return (codes[i.to(codes.device)] - codes[j.to(codes.device)]).norm(dim=-1).mean().item()


def _subset(samples: torch.Tensor, max_samples: int, generator: torch.Generator) -> torch.Tensor:
    if len(samples) <= max_samples:
        return samples
    return samples[torch.randperm(len(samples), generator=generator)[:max_samples].to(samples.device)]


@torch.no_grad()
def nonlocalness(
    prior: nn.Module,
    motion: nn.Module,
    mocap: torch.Tensor,
    relation: Relation,
    *,
    generator: torch.Generator,
    max_samples: int = 2048,
    num_pairs: int = 4096,
    chunk: int = 1024,
) -> NonLocalness:
    """Non-localness of ``relation`` on held-out ``mocap`` ``(M, L, 17, 3)`` mm through the frozen encoders.

    Samples: every frame (pose level) or every window of ``relation.window`` frames (motion level), a
    random ``max_samples`` of them when there are more, which bounds the cost of the LSTM.
    ``generator`` (CPU) draws that subset and the ``num_pairs`` random pairs of the baseline.
    """
    device = next(prior.parameters()).device
    mocap = mocap.to(device, torch.float32)
    if relation.level == "pose":
        raw_samples = mocap.flatten(0, 1)
        baseline_samples = raw_samples

        def encode(x: torch.Tensor) -> torch.Tensor:
            return prior.encode(x)
    else:
        if relation.window > mocap.shape[1]:
            raise ValueError(f"relation {relation.name!r} needs {relation.window} frames, mocap has {mocap.shape[1]}")
        raw_samples = _windows(mocap, relation.window)
        baseline_samples = _windows(mocap, relation.clip_len)

        def encode(x: torch.Tensor) -> torch.Tensor:
            return motion.encode(prior.encode(x))

    # Baseline first: relations of one level then share the baseline for a given generator seed.
    baseline_samples = _subset(baseline_samples, max_samples, generator)
    codes = torch.cat([encode(baseline_samples[s : s + chunk]) for s in range(0, len(baseline_samples), chunk)])
    baseline = _random_pair_distance(codes, num_pairs, generator)
    raw_samples = _subset(raw_samples, max_samples, generator)
    distances = []
    for start in range(0, len(raw_samples), chunk):
        anchor, counterpart = relation.poses(raw_samples[start : start + chunk])
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

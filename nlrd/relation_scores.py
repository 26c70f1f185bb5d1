"""Label-free scores of a relation beside its latent non-localness: candidates for the pre-filter's ranking.

Latent non-localness (``nlrd.nonlocalness``) ranks a relation by how far apart its two sides' codes lie.  A relation
can score high there for reasons that do not help adaptation: its counterparts may leave the pose prior's support
(a 30 degree in-plane rotation is reconstructed several times worse than an ordinary pose), or its transformer may
not reach them.  Each figure here is measured on held-out mocap through the frozen stages, with no image and no
target label, so any of them can rank relation sets before training:

* ``latent``: the normalised latent non-localness, exactly as the pre-filter measures it;
* ``pose``: the same in decoded pose space, the mean per-joint distance (mm) between the level's reconstructions
  ``D(E(a))`` and ``D(E(c))`` of anchor and counterpart (every frame of a motion-level window), divided by that
  of random pairs of poses or forward clips: what the pose-space non-local loss compares;
* ``support_ratio``: the level's reconstruction error of counterparts over that of anchors (~1 when counterparts
  are as ordinary as anchors); ``latent_in_support`` and ``pose_in_support`` divide by ``max(1, support_ratio)``;
* ``closed_share``: the share of the identity gap the relation transformer's decoded output closes
  (``nlrd.quality``); ``latent_x_transformer`` multiplies ``latent`` by it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nlrd.metrics import mpjpe
from nlrd.nonlocalness import (
    NonLocalness,
    check_relation_window,
    chunked,
    level_codec,
    pair_distance,
    random_codes,
    random_pairs,
    relation_samples,
)
from nlrd.quality import decoded_gap_left
from nlrd.relations import Relation

#: Every candidate score ``RelationScores.candidates`` holds, in the order tables list them.
CANDIDATES = ("latent", "pose", "latent_in_support", "pose_in_support", "latent_x_transformer")


@dataclass(frozen=True)
class PairBaselines:
    """Mean distance between random pairs of one level's samples (poses, or forward clips): between their codes
    (``nlrd.nonlocalness.random_pair_baseline``) and between their decodings (mm per joint)."""

    latent: float
    pose_mm: float


@dataclass(frozen=True)
class RelationScores:
    """What the candidates are made of, for one relation.

    ``nonlocalness``: the latent non-localness.  ``pose_raw_mm``: mean per-joint distance between the decodings of
    anchor and counterpart; ``pose_baseline_mm``: the same for random pairs.  ``anchor_recon_mm`` /
    ``counterpart_recon_mm``: MPJPE of the level's reconstruction ``D(E(x))`` against anchors / counterparts.
    ``gap_left``: the transformer's decoded error as a fraction of the identity gap (0: it reaches the counterpart).
    """

    nonlocalness: NonLocalness
    pose_raw_mm: float
    pose_baseline_mm: float
    anchor_recon_mm: float
    counterpart_recon_mm: float
    gap_left: float

    @classmethod
    def latent_only(cls, nonlocalness: NonLocalness) -> RelationScores:
        """A relation measured before the other candidates existed: ``latent`` is its score, every other one NaN."""
        nan = float("nan")
        return cls(nonlocalness, nan, nan, nan, nan, nan)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RelationScores:
        """The scores ``dataclasses.asdict`` made a dict of; other keys (derived figures) are ignored."""
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name != "nonlocalness"}
        return cls(nonlocalness=NonLocalness(**record["nonlocalness"]), **fields)

    @property
    def pose(self) -> float:
        return self.pose_raw_mm / self.pose_baseline_mm

    @property
    def support_ratio(self) -> float:
        return self.counterpart_recon_mm / self.anchor_recon_mm

    @property
    def outside_support(self) -> float:
        """``max(1, support_ratio)``: what the in-support scores divide by (NaN stays NaN, which ``max`` drops)."""
        ratio = self.support_ratio
        return ratio if math.isnan(ratio) else max(1.0, ratio)

    @property
    def closed_share(self) -> float:
        """Share of the identity gap closed; a transformer worse than not moving closes none (NaN stays NaN)."""
        share = 1.0 - self.gap_left
        return share if math.isnan(share) else max(0.0, share)

    @property
    def candidates(self) -> dict[str, float]:
        """Every candidate score by name (``CANDIDATES``)."""
        latent = self.nonlocalness.normalised
        outside = self.outside_support
        return {
            "latent": latent,
            "pose": self.pose,
            "latent_in_support": latent / outside,
            "pose_in_support": self.pose / outside,
            "latent_x_transformer": latent * self.closed_share,
        }


@torch.no_grad()
def random_pair_baselines(
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
) -> PairBaselines:
    """Both baselines of ``level`` on one draw of samples and pairs: the very draws of
    ``nlrd.nonlocalness.random_pair_baseline``, so ``latent`` is its number and ``generator`` ends as it does."""
    _, decode = level_codec(prior, motion, level, clip_len)
    codes = random_codes(
        prior, motion, mocap, level, clip_len, generator=generator, max_samples=max_samples, chunk=chunk
    )
    i, j = random_pairs(len(codes), num_pairs, generator)
    decoded = chunked(decode, codes, chunk)
    pose_mm = mpjpe(decoded[i.to(decoded.device)], decoded[j.to(decoded.device)]).item()
    return PairBaselines(latent=pair_distance(codes, i, j), pose_mm=pose_mm)


@torch.no_grad()
def relation_scores(
    prior: nn.Module,
    motion: nn.Module,
    transformer: nn.Module,
    mocap: torch.Tensor,
    relation: Relation,
    *,
    generator: torch.Generator,
    baselines: PairBaselines | None = None,
    max_samples: int = 2048,
    num_pairs: int = 4096,
    chunk: int = 1024,
) -> RelationScores:
    """Every candidate's ingredients for ``relation`` on held-out ``mocap`` ``(M, L, 17, 3)`` mm; ``transformer`` is
    the relation's frozen transformer.

    Samples and generator discipline are ``nlrd.nonlocalness.nonlocalness``'s (the level's baselines first, unless
    given with ``generator`` in the state computing them left; then the subset), so ``nonlocalness`` is bit for bit
    the number that function returns, and every other figure is read on the same samples.
    """
    check_relation_window(relation, mocap)
    if baselines is None:
        baselines = random_pair_baselines(
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
    encode, decode = level_codec(prior, motion, relation.level, relation.clip_len)
    samples = relation_samples(prior, mocap, relation, max_samples, generator)
    parts: dict[str, list[torch.Tensor]] = {
        name: [] for name in ("distance", "anchor", "counterpart", "anchor_out", "counterpart_out", "moved")
    }
    for start in range(0, len(samples), chunk):
        anchor, counterpart = relation.poses(samples[start : start + chunk])
        z_anchor, z_counterpart = encode(anchor), encode(counterpart)
        parts["distance"].append((z_anchor - z_counterpart).norm(dim=-1))
        parts["anchor"].append(anchor)
        parts["counterpart"].append(counterpart)
        parts["anchor_out"].append(decode(z_anchor))
        parts["counterpart_out"].append(decode(z_counterpart))
        parts["moved"].append(decode(transformer(z_anchor)))
    whole = {name: torch.cat(values) for name, values in parts.items()}
    raw = whole["distance"].mean().item()
    return RelationScores(
        nonlocalness=NonLocalness(relation.name, relation.level, raw, baselines.latent, raw / baselines.latent),
        pose_raw_mm=mpjpe(whole["anchor_out"], whole["counterpart_out"]).item(),
        pose_baseline_mm=baselines.pose_mm,
        anchor_recon_mm=mpjpe(whole["anchor_out"], whole["anchor"]).item(),
        counterpart_recon_mm=mpjpe(whole["counterpart_out"], whole["counterpart"]).item(),
        gap_left=decoded_gap_left(whole["anchor_out"], whole["counterpart_out"], whole["moved"]),
    )


def score_relations(
    prior: nn.Module,
    motion: nn.Module,
    transformers: Mapping[str, nn.Module],
    mocap: torch.Tensor,
    relations: Sequence[Relation],
    clip_len: int,
    seed: int = 0,
    **caps: int,
) -> dict[str, RelationScores]:
    """``relation_scores`` of every relation, with one ``PairBaselines`` per level (``clip_len``-frame clips at
    motion level) drawn from a generator seeded with ``seed``; each relation continues from the state its level's
    baselines left, as ``search.prefilter`` does, so every ``latent`` is the pre-filter's normalised non-localness.
    ``caps``: ``max_samples``, ``num_pairs``, ``chunk``."""
    levels: dict[str, tuple[PairBaselines, torch.Tensor]] = {}
    for level in dict.fromkeys(r.level for r in relations):
        generator = torch.Generator().manual_seed(seed)
        baselines = random_pair_baselines(prior, motion, mocap, level, clip_len, generator=generator, **caps)
        levels[level] = (baselines, generator.get_state())
    scores = {}
    for relation in relations:
        baselines, state = levels[relation.level]
        generator = torch.Generator()
        generator.set_state(state)
        scores[relation.name] = relation_scores(
            prior,
            motion,
            transformers[relation.name],
            mocap,
            relation,
            generator=generator,
            baselines=baselines,
            **caps,
        )
    return scores

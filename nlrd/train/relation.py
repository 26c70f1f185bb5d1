"""Stage 3: one relation transformer per candidate relation, trained on unpaired mocap latents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nlrd.config import ConfigError, check_ranges
from nlrd.core import Report
from nlrd.device import autocast
from nlrd.models import MotionAE, PosePrior, RelationTransformer
from nlrd.relations import Relation
from nlrd.train.common import augment_poses, descend, freeze, frozen_copy, seeded, should_report


@dataclass
class RelationConfig:
    """``pool_size``: augmented mocap samples per relation (at most ``steps * batch_size``), encoded once by
    the frozen encoders before training: the LSTM encodings dominate the cost, so the transformers then
    train on latents only.  ``bf16``: bf16 autocast of the transformers' forward passes (CUDA only; a no-op on
    the CPU).  ``residual``: each transformer learns the change from the identity (``RelationTransformer``); the
    paper's is a plain MLP (``False``)."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    hidden: tuple[int, ...] = (1024, 512)
    pool_size: int = 2048
    report_every: int = 50
    seed: int = 0
    bf16: bool = False
    residual: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            self, counts=("steps", "batch_size", "pool_size", "report_every"), positive=("lr",), non_negative=("seed",)
        )
        if not self.hidden or min(self.hidden) < 1:
            problem = f"must be a non-empty list of widths of at least 1, got {list(self.hidden)}"
            raise ConfigError("RelationConfig", "hidden", problem)


@torch.no_grad()
def relation_latents(
    prior: PosePrior, motion: MotionAE, relation: Relation, raw_mm: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents of the anchor and counterpart of ``raw_mm``: ``E_p`` at pose level, ``E_m E_p`` at motion level.

    ``raw_mm``: ``(B, 17, 3)`` or ``(B, window, 17, 3)``; returns two ``(B, dim)`` tensors.
    """

    def encode(x: torch.Tensor) -> torch.Tensor:
        return prior.encode(x) if relation.level == "pose" else motion.encode(prior.encode(x))

    sides = [relation.poses(raw_mm[start : start + chunk]) for start in range(0, len(raw_mm), chunk)]
    return torch.cat([encode(a) for a, _ in sides]), torch.cat([encode(c) for _, c in sides])


def sample_raw(mocap_mm: torch.Tensor, relation: Relation, batch_size: int) -> torch.Tensor:
    """Random raw samples for ``relation`` from ``(M, L, 17, 3)`` mocap: frames ``(B, 17, 3)`` at pose level,
    windows ``(B, window, 17, 3)`` at motion level."""
    m, length = mocap_mm.shape[:2]
    device = mocap_mm.device
    seq = torch.randint(m, (batch_size,)).to(device)
    if relation.level == "pose":
        return mocap_mm[seq, torch.randint(length, (batch_size,)).to(device)]
    start = torch.randint(length - relation.window + 1, (batch_size,))
    frames = (start[:, None] + torch.arange(relation.window)).to(device)
    return mocap_mm[seq[:, None], frames]


def train_relations(
    cfg: RelationConfig,
    prior: PosePrior,
    motion: MotionAE,
    mocap: torch.Tensor,
    relations: Sequence[Relation],
    report: Report | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, RelationTransformer]:
    """Fit ``T_r(E(anchor)) ~ E(counterpart)`` (L1 on latents) for every relation on ``mocap`` ``(M, L, 17, 3)``
    mm, with ``L`` at least the longest relation window.  Samples get a random azimuth and flip first, so
    the transformers cover every viewpoint.  Returns frozen transformers keyed by relation name.
    """
    device = torch.device(device)
    too_long = [r.name for r in relations if r.window > mocap.shape[1]]
    if too_long:
        raise ValueError(f"mocap sequences have {mocap.shape[1]} frames, too few for relations {too_long}")
    mocap = mocap.to(device, torch.float32)
    prior, motion = frozen_copy(prior, device), frozen_copy(motion, device)
    with seeded(cfg.seed, device):
        dims = {"pose": prior.latent_dim, "motion": motion.embed_dim}
        transformers = {
            r.name: RelationTransformer(dims[r.level], cfg.hidden, cfg.residual).to(device) for r in relations
        }
        pool_size = min(cfg.pool_size, cfg.steps * cfg.batch_size)
        pools = {
            r.name: relation_latents(prior, motion, r, augment_poses(sample_raw(mocap, r, pool_size)))
            for r in relations
        }
        params = [p for t in transformers.values() for p in t.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(pool_size, (cfg.batch_size,), device=device)
            with autocast(device, cfg.bf16):
                losses = {
                    name: (transformers[name](anchor[idx]).float() - counterpart[idx]).abs().mean()
                    for name, (anchor, counterpart) in pools.items()
                }
            loss = torch.stack(list(losses.values())).mean()
            descend(opt, loss, "relation", step)
            if report is not None and should_report(step, cfg.report_every, cfg.steps):
                report({"step": step, "loss": loss.item(), **{f"loss_{k}": v.item() for k, v in losses.items()}})
    return {name: freeze(t) for name, t in transformers.items()}

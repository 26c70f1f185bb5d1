"""Stage 4: the source image encoder G^s, supervised through the frozen pose decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nlrd.data import ClipSet
from nlrd.models import PosePrior, build_image_encoder
from nlrd.train.common import Report, descend, freeze, frozen_copy, pose_l1, seeded, should_report


@dataclass
class SourceConfig:
    """``encoder``: a name for ``nlrd.models.build_image_encoder``; ``width``: its base channel count."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 32
    encoder: str = "small_cnn"
    report_every: int = 50
    seed: int = 0


def train_source(
    cfg: SourceConfig,
    prior: PosePrior,
    source: ClipSet,
    report: Report | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train ``G^s`` on random labelled frames of ``source``: L1 between ``D_p(G(x))`` and the true pose
    (metres).  Going through ``D_p`` keeps G's output inside the prior's latent space.  Returns it frozen.
    """
    if source.poses is None:
        raise ValueError("train_source needs a labelled source ClipSet (poses is None)")
    device = torch.device(device)
    frames = source.frames.flatten(0, 1)
    poses = source.poses.flatten(0, 1).to(device, torch.float32)
    prior = frozen_copy(prior, device)
    with seeded(cfg.seed, device):
        encoder = build_image_encoder(cfg.encoder, latent_dim=prior.latent_dim, width=cfg.width).to(device)
        opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr)
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(len(frames), (cfg.batch_size,))
            images = frames[idx].to(device).float() / 255.0
            loss = pose_l1(prior.decode(encoder(images)), poses[idx.to(device)])
            descend(opt, loss, "source", step)
            if report is not None and should_report(step, cfg.report_every, cfg.steps):
                report({"step": step, "loss": loss.item()})
    return freeze(encoder)

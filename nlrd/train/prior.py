"""Stage 1: the pose prior, an adversarial auto-encoder trained on unpaired 3D poses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlrd.models import LATENT_BOUND, PoseDiscriminator, PosePrior
from nlrd.train.common import Report, augment_poses, descend, freeze, pose_l1, seeded, should_report


@dataclass
class PriorConfig:
    """``w_cycle`` weighs the latent cycle (L1 on z / 10), ``w_adv`` the adversarial term, which starts
    after ``warmup_steps`` of reconstruction and cycle only (a discriminator facing a random decoder
    only adds noise)."""

    steps: int = 600
    batch_size: int = 256
    lr: float = 1e-3
    latent_dim: int = 32
    hidden: int = 256
    warmup_steps: int = 200
    w_cycle: float = 1.0
    w_adv: float = 0.05
    report_every: int = 50
    seed: int = 0


def train_prior(
    cfg: PriorConfig,
    poses: torch.Tensor,
    report: Report | None = None,
    device: str | torch.device = "cpu",
) -> PosePrior:
    """Train ``E_p``/``D_p`` on ``poses`` ``(N, 17, 3)`` mm; returns the frozen prior.

    Losses: L1 reconstruction of augmented real poses (in metres), L1 cycle ``E_p(D_p(z)) = z`` on
    ``z ~ U(-10, 10)`` so the whole box decodes to something the encoder recognises, and a non-saturating
    GAN loss that makes decoded random codes look like real poses.
    """
    device = torch.device(device)
    poses = poses.to(device, torch.float32)
    with seeded(cfg.seed, device):
        prior = PosePrior(cfg.latent_dim, cfg.hidden).to(device)
        critic = PoseDiscriminator(cfg.hidden).to(device)
        opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
        opt_critic = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        for step in range(1, cfg.steps + 1):
            real = augment_poses(poses[torch.randint(len(poses), (cfg.batch_size,), device=device)])
            z = (torch.rand(cfg.batch_size, cfg.latent_dim, device=device) * 2 - 1) * LATENT_BOUND
            fake = prior.decode(z)
            recon = pose_l1(prior(real), real)
            cycle = (prior.encode(fake) - z).abs().mean() / LATENT_BOUND
            adversarial = torch.zeros((), device=device)
            if step > cfg.warmup_steps:
                critic_loss = F.binary_cross_entropy_with_logits(
                    critic(real), torch.ones(len(real), device=device)
                ) + F.binary_cross_entropy_with_logits(critic(fake.detach()), torch.zeros(len(fake), device=device))
                descend(opt_critic, critic_loss, "discriminator", step)
                adversarial = F.binary_cross_entropy_with_logits(critic(fake), torch.ones(len(fake), device=device))
            loss = recon + cfg.w_cycle * cycle + cfg.w_adv * adversarial
            descend(opt, loss, "prior", step)
            if report is not None and should_report(step, cfg.report_every, cfg.steps):
                report(
                    {
                        "step": step,
                        "loss": loss.item(),
                        "recon": recon.item(),
                        "cycle": cycle.item(),
                        "adversarial": adversarial.item(),
                    }
                )
    return freeze(prior)

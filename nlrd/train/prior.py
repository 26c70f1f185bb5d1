"""Stage 1: the pose prior, an adversarial auto-encoder trained on unpaired 3D poses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlrd.config import check_ranges
from nlrd.core import Report
from nlrd.device import autocast
from nlrd.models import LATENT_BOUND, DiscriminatorLogits, PoseDiscriminator, PosePrior
from nlrd.train.common import augment_poses, descend, freeze, pose_l1, seeded, should_report

#: Weight of each logit's BCE at each level of the critic: 17 joints x 1/51, 5 parts x 1/15, 1 body x 1/3,
#: so every level adds up to 1/3 and the three levels weigh the same in total (the paper's weighting).
LEVEL_WEIGHTS: dict[str, float] = {"joint": 1.0 / 51.0, "part": 1.0 / 15.0, "body": 1.0 / 3.0}


@dataclass
class PriorConfig:
    """``w_cycle`` weighs the latent cycle (L1 on z / 10), ``w_adv`` the adversarial term, which starts
    after ``warmup_steps`` of reconstruction and cycle only (a discriminator facing a random decoder
    only adds noise).  ``lr_disc``: the discriminator's Adam rate; ``flip_prob``: chance of a left/right
    flip in the pose augmentation (a random azimuth is always applied).  ``bf16``: bf16 autocast of the forward
    passes (CUDA only; a no-op on the CPU)."""

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
    lr_disc: float = 1e-3
    flip_prob: float = 0.5
    bf16: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            self,
            counts=("steps", "batch_size", "latent_dim", "hidden", "report_every"),
            positive=("lr", "lr_disc"),
            non_negative=("warmup_steps", "w_cycle", "w_adv", "seed"),
            fractions=("flip_prob",),
        )


def adversarial_levels(logits: DiscriminatorLogits, real: bool) -> dict[str, torch.Tensor]:
    """BCE-with-logits against ``real`` (1) or fake (0) targets, per critic level, weighted by ``LEVEL_WEIGHTS``.

    Each level is the weighted *sum* over its logits of the batch-mean BCE, so ``joint`` = sum over 17 joints
    / 51, ``part`` = sum over 5 parts / 15, ``body`` = BCE / 3.  Returns 0-d tensors keyed ``joint``,
    ``part``, ``body``.
    """
    out = {}
    for level, weight in LEVEL_WEIGHTS.items():
        x = getattr(logits, level)
        n_logits = 1 if level == "body" else x.shape[-1]
        # The mean over batch and logits, times the number of logits: the batch mean of the sum over logits.
        out[level] = weight * n_logits * F.binary_cross_entropy_with_logits(x, torch.full_like(x, float(real)))
    return out


def adversarial_logits_loss(logits: DiscriminatorLogits, real: bool) -> torch.Tensor:
    """The critic loss of a batch against ``real`` targets: the sum of ``adversarial_levels``."""
    return torch.stack(list(adversarial_levels(logits, real).values())).sum()


def train_prior(
    cfg: PriorConfig,
    poses: torch.Tensor,
    report: Report | None = None,
    device: str | torch.device = "cpu",
) -> PosePrior:
    """Train ``E_p``/``D_p`` on ``poses`` ``(N, 17, 3)`` mm; returns the frozen prior.

    Losses: L1 reconstruction of augmented real poses (in metres), L1 cycle ``E_p(D_p(z)) = z`` on
    ``z ~ U(-10, 10)`` so the whole box decodes to something the encoder recognises, and, after the
    warm-up, a non-saturating GAN loss on the joint/part/body logits that makes decoded random codes look
    like real poses.  Reports ``loss``, ``recon``, ``cycle``, ``adversarial`` (generator side) and its
    levels ``adv_joint``, ``adv_part``, ``adv_body``, and the discriminator's loss ``critic``.
    """
    device = torch.device(device)
    poses = poses.to(device, torch.float32)
    with seeded(cfg.seed, device):
        prior = PosePrior(cfg.latent_dim, cfg.hidden).to(device)
        critic = PoseDiscriminator(cfg.hidden).to(device)
        opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
        opt_critic = torch.optim.Adam(critic.parameters(), lr=cfg.lr_disc, betas=(0.5, 0.999))
        zero = torch.zeros((), device=device)
        for step in range(1, cfg.steps + 1):
            real = augment_poses(poses[torch.randint(len(poses), (cfg.batch_size,), device=device)], cfg.flip_prob)
            z = (torch.rand(cfg.batch_size, cfg.latent_dim, device=device) * 2 - 1) * LATENT_BOUND
            with autocast(device, cfg.bf16):
                fake = prior.decode(z).float()
                recon = pose_l1(prior(real).float(), real)
                cycle = (prior.encode(fake).float() - z).abs().mean() / LATENT_BOUND
            levels = dict.fromkeys(LEVEL_WEIGHTS, zero)
            critic_loss = zero
            if step > cfg.warmup_steps:
                with autocast(device, cfg.bf16):
                    critic_loss = adversarial_logits_loss(critic(real), True) + adversarial_logits_loss(
                        critic(fake.detach()), False
                    )
                descend(opt_critic, critic_loss.float(), "discriminator", step)
                with autocast(device, cfg.bf16):
                    levels = {k: v.float() for k, v in adversarial_levels(critic(fake), True).items()}
            adversarial = torch.stack(list(levels.values())).sum()
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
                        **{f"adv_{level}": value.item() for level, value in levels.items()},
                        "critic": critic_loss.item(),
                    }
                )
    return freeze(prior)

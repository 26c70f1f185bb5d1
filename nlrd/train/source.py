"""Stage 4: the source image encoder G^s, supervised through the frozen pose decoder."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nlrd import skeleton
from nlrd.config import KEY_OMITS_DEFAULT, check_ranges
from nlrd.core import ClipSet, Report
from nlrd.device import autocast
from nlrd.models import IMAGE_ENCODERS, PosePrior, build_image_encoder
from nlrd.train.common import descend, freeze, frozen_copy, pose_l1, rotate_hue, seeded, should_report


@dataclass
class SourceConfig:
    """``encoder``: a name for ``nlrd.models.build_image_encoder``; ``width``: its base channel count.

    ``augment``: label-preserving augmentation of every batch (see ``augment_labelled``); without it the encoder
    overfits the source's exact colours and scale and is worse than the mean pose on the target.  ``flip_augment``:
    whether that augmentation includes the horizontal flip; with it the encoder learns to be mirror-equivariant on
    the source, so on the target it makes few of the mirror-breaking errors the flip relations can see.  The learning
    rate follows a one-cycle schedule (warm-up over the first ``warmup_fraction``, then cosine decay).  ``bf16``:
    bf16 autocast of the forward pass (CUDA only; a no-op on the CPU).
    """

    steps: int = 1200
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 32
    encoder: str = "small_cnn"
    augment: bool = True
    warmup_fraction: float = 0.1
    report_every: int = 50
    seed: int = 0
    bf16: bool = False
    flip_augment: bool = field(default=True, metadata={KEY_OMITS_DEFAULT: True})

    def __post_init__(self) -> None:
        check_ranges(
            self,
            counts=("steps", "batch_size", "width", "report_every"),
            positive=("lr",),
            non_negative=("seed",),
            fractions=("warmup_fraction",),
            words={"encoder": IMAGE_ENCODERS},
        )


#: Random zoom about the image centre, up to this factor either way.
ZOOM = 1.2
#: Saturation is scaled by a factor in ``1 +- SATURATION``.
SATURATION = 0.5


def augment_labelled(images: torch.Tensor, poses: torch.Tensor, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random label-preserving changes, one draw per image: ``(B, 3, H, W)`` in [0, 1] and ``(B, 17, 3)`` mm.

    Horizontal flip with the pose flipped (exact: the renderer commutes with the flip; left out without ``flip``,
    with the same random draws for the rest), zoom about the centre
    (the root-relative pose does not depend on the camera distance), any hue rotation, saturation, brightness,
    contrast, per-channel gain and pixel noise.  None of them reads the target domain: they widen the source
    so that the encoder learns limb shapes rather than the source's exact palette and scale.
    """
    b, device = images.shape[0], images.device
    flipped = torch.rand(b, device=device) < (0.5 if flip else 0.0)
    images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    poses = torch.where(flipped[:, None, None], skeleton.flip(poses), poses)
    zoom = torch.exp((2 * torch.rand(b, device=device) - 1) * math.log(ZOOM))
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / zoom
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    images = rotate_hue(images, (2 * torch.rand(b, device=device) - 1) * math.pi)
    grey = images.mean(1, keepdim=True)
    images = grey + (1 + SATURATION * (2 * torch.rand(b, 1, 1, 1, device=device) - 1)) * (images - grey)
    brightness = 0.3 * (torch.rand(b, 1, 1, 1, device=device) - 0.5)
    contrast = 0.7 + 0.6 * torch.rand(b, 1, 1, 1, device=device)
    gain = 0.8 + 0.4 * torch.rand(b, 3, 1, 1, device=device)
    noise = 0.04 * torch.rand(b, 1, 1, 1, device=device) * torch.randn(images.shape, device=device)
    images = ((images - 0.5) * contrast + 0.5 + brightness) * gain + noise
    return images.clamp(0.0, 1.0), poses


def labelled_batch(
    source: ClipSet, batch_size: int, device: torch.device, augment: bool = True, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random labelled frames of ``source`` on ``device``: images ``(B, 3, H, W)`` in [0, 1] and
    poses ``(B, 17, 3)`` mm, through ``augment_labelled`` (with its ``flip``) when ``augment``.  Drawn from the
    global generator."""
    idx = torch.randint(source.frames.shape[0] * source.frames.shape[1], (batch_size,))
    images = source.frames.flatten(0, 1)[idx].to(device).float() / 255.0
    poses = source.poses.flatten(0, 1)[idx].to(device, torch.float32)
    return augment_labelled(images, poses, flip) if augment else (images, poses)


def one_cycle(step: int, steps: int, warmup: float) -> float:
    """Learning-rate factor at ``step`` (from 0): linear warm-up over ``warmup * steps`` steps (at least one),
    then cosine decay to zero; defined for any number of steps, however small."""
    ramp = max(1, round(warmup * steps))
    if step < ramp:
        return (step + 1) / ramp
    return 0.5 * (1 + math.cos(math.pi * (step - ramp) / max(1, steps - ramp)))


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
    prior = frozen_copy(prior, device)
    with seeded(cfg.seed, device):
        encoder = build_image_encoder(cfg.encoder, latent_dim=prior.latent_dim, width=cfg.width).to(device)
        opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr)
        factor = partial(one_cycle, steps=cfg.steps, warmup=cfg.warmup_fraction)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        for step in range(1, cfg.steps + 1):
            images, targets = labelled_batch(source, cfg.batch_size, device, cfg.augment, cfg.flip_augment)
            with autocast(device, cfg.bf16):
                loss = pose_l1(prior.decode(encoder(images)).float(), targets)
            descend(opt, loss, "source", step)
            schedule.step()
            if report is not None and should_report(step, cfg.report_every, cfg.steps):
                report({"step": step, "loss": loss.item()})
    return freeze(encoder)

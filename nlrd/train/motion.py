"""Stage 2: the motion embedding, a BiLSTM auto-encoder on pose-latent sequences."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nlrd.config import check_ranges
from nlrd.core import Report
from nlrd.device import autocast
from nlrd.models import MotionAE, PosePrior
from nlrd.train.common import augment_poses, descend, freeze, frozen_copy, pose_l1, seeded, should_report


@dataclass
class MotionConfig:
    """``time_augment``: also train on reversed and 2x-fast clips, so the embedding has seen the kinds of
    sequence that the motion-level relations produce as anchors and counterparts.  ``bf16``: bf16 autocast of the
    forward passes (CUDA only; a no-op on the CPU)."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    hidden: int = 128
    embed_dim: int = 128
    num_layers: int = 2
    time_augment: bool = True
    report_every: int = 50
    seed: int = 0
    bf16: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            self,
            counts=("steps", "batch_size", "hidden", "embed_dim", "num_layers", "report_every"),
            positive=("lr",),
            non_negative=("seed",),
        )


def _sample_clips(sequences: torch.Tensor, batch_size: int, clip_len: int, time_augment: bool) -> torch.Tensor:
    """Random ``(B, clip_len, 17, 3)`` crops; with ``time_augment``, half at stride 2, half reversed."""
    n, length = sequences.shape[:2]
    device = sequences.device
    stride = torch.ones(batch_size, dtype=torch.long)
    if time_augment and length >= 2 * clip_len - 1:
        stride[torch.rand(batch_size) < 0.5] = 2
    span = (clip_len - 1) * stride + 1
    start = (torch.rand(batch_size) * (length - span + 1)).long()
    frames = start[:, None] + stride[:, None] * torch.arange(clip_len)
    if time_augment:
        reverse = torch.rand(batch_size) < 0.5
        frames[reverse] = frames[reverse].flip(-1)
    seq = torch.randint(n, (batch_size,))
    return sequences[seq.to(device)[:, None], frames.to(device)]


def train_motion(
    cfg: MotionConfig,
    prior: PosePrior,
    sequences: torch.Tensor,
    clip_len: int,
    report: Report | None = None,
    device: str | torch.device = "cpu",
) -> MotionAE:
    """Train ``E_m``/``D_m`` on ``clip_len``-frame windows of ``sequences`` ``(N, L, 17, 3)`` mm; returns it frozen.

    ``clip_len`` is the T of the relations and of adaptation: the world's, not a tuning knob.

    Clips are encoded by the frozen prior, auto-encoded in latent space and decoded by the frozen
    ``D_p``; the L1 loss is on poses (metres), so latent directions the prior ignores cost nothing.
    """
    device = torch.device(device)
    if sequences.shape[1] < clip_len:
        raise ValueError(f"sequences have {sequences.shape[1]} frames, fewer than clip_len={clip_len}")
    sequences = sequences.to(device, torch.float32)
    prior = frozen_copy(prior, device)
    with seeded(cfg.seed, device):
        motion = MotionAE(prior.latent_dim, cfg.hidden, cfg.embed_dim, cfg.num_layers).to(device)
        opt = torch.optim.Adam(motion.parameters(), lr=cfg.lr)
        for step in range(1, cfg.steps + 1):
            clips = augment_poses(_sample_clips(sequences, cfg.batch_size, clip_len, cfg.time_augment))
            with autocast(device, cfg.bf16):
                with torch.no_grad():
                    z = prior.encode(clips)
                loss = pose_l1(prior.decode(motion(z)).float(), clips)
            descend(opt, loss, "motion", step)
            if report is not None and should_report(step, cfg.report_every, cfg.steps):
                report({"step": step, "loss": loss.item()})
    return freeze(motion)

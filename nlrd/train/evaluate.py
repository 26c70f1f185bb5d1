"""Target-domain error of an image encoder read through the pose decoder, under every protocol of ``nlrd.metrics``."""

from __future__ import annotations

import torch
from torch import nn

from nlrd.core import ClipSet
from nlrd.metrics import evaluate_protocols


@torch.no_grad()
def predict(
    encoder: nn.Module,
    prior: nn.Module,
    frames: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Decoded poses ``(N, T, 17, 3)`` mm (on the CPU) of uint8 clips ``(N, T, 3, S, S)``: ``prior.decode(encoder(x))``
    in eval mode, in batches of ``batch_size`` frames; the encoder's train/eval mode is restored afterwards."""
    device = torch.device(device)
    flat = frames.flatten(0, 1)
    was_training = encoder.training
    encoder.eval()
    try:
        preds = [
            prior.decode(encoder(flat[start : start + batch_size].to(device).float() / 255.0)).float().cpu()
            for start in range(0, len(flat), batch_size)
        ]
    finally:
        encoder.train(was_training)
    return torch.cat(preds).view(*frames.shape[:2], 17, 3)


@torch.no_grad()
def evaluate(
    encoder: nn.Module, prior: nn.Module, clips: ClipSet, batch_size: int = 256, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Errors of ``prior.decode(encoder(x))`` (``predict``) over every frame of labelled ``clips``, keyed by protocol.

    The keys are those of ``nlrd.metrics.evaluate_protocols``: ``mpjpe`` and ``pa_mpjpe`` (mm) are the plain
    protocol, on the decoded pose as it is (canonical bone lengths); ``mpjpe_gtbone`` / ``pa_mpjpe_gtbone`` give the
    predicted bone directions the ground-truth bone lengths first (the official protocol); ``pck150``, ``auc`` and
    their ``_gtbone`` twins are in percent.  Only ``clips.eval_joints`` count when the clips name them (3DHP).
    ``encoder`` and ``prior`` must already live on ``device``.
    """
    if clips.poses is None:
        raise ValueError("evaluate needs labelled clips (poses is None)")
    preds = predict(encoder, prior, clips.frames, batch_size, device).flatten(0, 1)
    return evaluate_protocols(preds, clips.poses.flatten(0, 1).float(), joints=clips.eval_joints)

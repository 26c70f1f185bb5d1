"""Target-domain error of an image encoder read through the pose decoder."""

from __future__ import annotations

import torch
from torch import nn

from nlrd.data import ClipSet
from nlrd.metrics import mpjpe, pa_mpjpe


@torch.no_grad()
def evaluate(
    encoder: nn.Module, prior: nn.Module, clips: ClipSet, batch_size: int = 256, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """MPJPE and PA-MPJPE in mm of ``prior.decode(encoder(x))`` over every frame of labelled ``clips``.

    Predicted poses have canonical bone lengths (no rescaling to the ground truth).  ``encoder`` and
    ``prior`` must already live on ``device``; the encoder's train/eval mode is restored afterwards.
    """
    if clips.poses is None:
        raise ValueError("evaluate needs labelled clips (poses is None)")
    device = torch.device(device)
    frames = clips.frames.flatten(0, 1)
    poses = clips.poses.flatten(0, 1)
    was_training = encoder.training
    encoder.eval()
    try:
        sums = {"mpjpe": 0.0, "pa_mpjpe": 0.0}
        for start in range(0, len(frames), batch_size):
            images = frames[start : start + batch_size].to(device).float() / 255.0
            pred = prior.decode(encoder(images))
            target = poses[start : start + batch_size].to(pred)
            sums["mpjpe"] += mpjpe(pred, target).item() * len(target)
            sums["pa_mpjpe"] += pa_mpjpe(pred, target).item() * len(target)
    finally:
        encoder.train(was_training)
    return {name: total / len(frames) for name, total in sums.items()}

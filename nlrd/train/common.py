"""Pieces every training loop shares: seeding, freezing, pose and hue augmentation, loss checks."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nlrd import skeleton

#: Poses are divided by this before pose-space losses, so they are about unit size (metres).
POSE_SCALE_MM = 1000.0


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for a training run without leaking the seeded state to the caller."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients: how every stage is handed on."""
    module.eval()
    module.requires_grad_(False)
    return module


def frozen_copy(module: nn.Module, device: torch.device) -> nn.Module:
    """A frozen copy on ``device``, so callers' modules are never moved or mutated."""
    return freeze(copy.deepcopy(module).to(device))


def check_finite(loss: torch.Tensor, name: str, step: int) -> None:
    """Stop a diverged run early with a message that says which loss blew up and when."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"non-finite {name} loss ({loss.item()}) at step {step}")


def descend(optimiser: torch.optim.Optimizer, loss: torch.Tensor, name: str, step: int) -> None:
    """One checked gradient step: refuse a non-finite ``loss``, then backpropagate it and step."""
    check_finite(loss, name, step)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


def augment_poses(joints_mm: torch.Tensor, flip_prob: float = 0.5) -> torch.Tensor:
    """Random azimuth (about z) and random left/right flip, one draw per leading index.

    ``joints_mm``: ``(B, ..., 17, 3)``; every pose of a sequence gets its sample's rotation and flip.
    """
    b = joints_mm.shape[0]
    extra = (1,) * (joints_mm.dim() - 3)
    angles = torch.rand(b) * 2 * math.pi
    rotation = skeleton.rotation_z(angles).to(joints_mm).view(b, *extra, 3, 3)
    rotated = skeleton.rotate(joints_mm, rotation)
    flipped = (torch.rand(b) < flip_prob).to(joints_mm.device).view(b, *extra, 1, 1)
    return torch.where(flipped, skeleton.flip(rotated), rotated)


def rotate_hue(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Turn the colours of ``(B, 3, H, W)`` images by ``(B,)`` angles (rad) about RGB space's grey axis through
    mid-grey: a hue shift that keeps greys and leaves the pose in the image as it is.  Not clamped."""
    k = 1.0 / math.sqrt(3.0)
    cross = angle.new_tensor([[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]])
    sin, cos = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    rotation = torch.eye(3, device=angle.device) + sin * cross + (1.0 - cos) * (cross @ cross)
    return torch.einsum("bij,bjhw->bihw", rotation, images - 0.5) + 0.5


def pose_l1(pred_mm: torch.Tensor, target_mm: torch.Tensor) -> torch.Tensor:
    """Mean absolute coordinate error of poses scaled to metres."""
    return (pred_mm - target_mm).abs().mean() / POSE_SCALE_MM


def should_report(step: int, every: int, steps: int) -> bool:
    """Report every ``every`` steps and at the last one (steps count from 1)."""
    return step % every == 0 or step == steps

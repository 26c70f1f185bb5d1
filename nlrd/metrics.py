"""Pose errors in millimetres.  Inputs are ``(..., J, 3)`` tensors; every function averages over all
leading dimensions and joints and returns a 0-d tensor."""

from __future__ import annotations

import torch


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint position error: mean Euclidean distance between matching joints."""
    return (pred - target).norm(dim=-1).mean()


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after the least-squares scale of each prediction (Rhodin et al., 2018)."""
    scale = (pred * target).sum(dim=(-1, -2), keepdim=True) / (pred * pred).sum(dim=(-1, -2), keepdim=True).clamp_min(
        1e-12
    )
    return mpjpe(scale * pred, target)


def procrustes_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Similarity transform (rotation, isotropic scale, translation) of ``pred`` that best fits ``target``.

    Umeyama's closed form with a reflection guard, in float64 for stability.  Returns the aligned
    prediction, same shape and dtype as ``pred``.
    """
    x = pred.double()
    y = target.double()
    mu_x, mu_y = x.mean(dim=-2, keepdim=True), y.mean(dim=-2, keepdim=True)
    x0, y0 = x - mu_x, y - mu_y
    var_x = (x0 * x0).sum(dim=(-1, -2))
    cov = x0.transpose(-1, -2) @ y0  # (..., 3, 3)
    u, s, vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.linalg.det(u @ vh))
    d = torch.ones_like(s)
    d[..., -1] = sign
    rot = (u * d[..., None, :]) @ vh  # maps row vectors: x0 @ rot ~ y0
    scale = (s * d).sum(dim=-1) / var_x.clamp_min(1e-12)
    aligned = scale[..., None, None] * (x0 @ rot) + mu_y
    return aligned.to(pred.dtype)


def pa_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after similarity Procrustes alignment of each prediction to its target."""
    return mpjpe(procrustes_align(pred, target), target)

"""Pose errors in millimetres and the evaluation protocols that name them.

Inputs are ``(..., J, 3)`` tensors in mm; every metric averages over all leading dimensions and joints and
returns a 0-d tensor.  ``joints`` (a sequence of joint indices) restricts a metric to a subset, as the
MPI-INF-3DHP protocol compares only the joints both skeletons share; PA alignment then uses the subset only.

Keys of ``evaluate_protocols`` (all over the same frames and joints):

* ``mpjpe``: mean Euclidean joint distance of the raw prediction (root-relative poses).
* ``pa_mpjpe``: MPJPE after a similarity Procrustes alignment (rotation, scale, translation) per pose.
* ``mpjpe_gtbone`` / ``pa_mpjpe_gtbone``: the same after ``rescale_to_bone_lengths``: the predicted bone
  directions given each sample's ground-truth bone lengths (the official protocol of the paper's
  evaluation code).
* ``pck150``: percent of joints closer than 150 mm (3DHP's PCK), on the raw prediction.
* ``auc``: mean PCK over the thresholds 0, 5, ..., 150 mm (3DHP's AUC, in percent), on the raw prediction.
* ``pck150_gtbone`` / ``auc_gtbone``: the same after ``rescale_to_bone_lengths``.

Targets are root-relative (pelvis at the origin); rescaled predictions always are.

PCK counts a joint as correct when its error is strictly below the threshold (``err < t``), as
``mpii_compute_3d_pck.m`` of the 3DHP release does; so PCK at 0 mm is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nlrd import skeleton

Joints = Sequence[int] | torch.Tensor | None


@dataclass(frozen=True)
class Protocol:
    """How a key of ``evaluate_protocols`` is shown and which way is better: errors in mm (``min``), PCK and AUC
    in percent (``max``)."""

    name: str
    unit: str
    better: str


#: Every key ``evaluate_protocols`` returns, in its order: the one place metric names, units and directions live.
PROTOCOLS: dict[str, Protocol] = {
    "mpjpe": Protocol("MPJPE", "mm", "min"),
    "pa_mpjpe": Protocol("PA-MPJPE", "mm", "min"),
    "mpjpe_gtbone": Protocol("MPJPE, GT bone lengths", "mm", "min"),
    "pa_mpjpe_gtbone": Protocol("PA-MPJPE, GT bone lengths", "mm", "min"),
    "pck150": Protocol("PCK@150mm", "%", "max"),
    "auc": Protocol("AUC", "%", "max"),
    "pck150_gtbone": Protocol("PCK@150mm, GT bone lengths", "%", "max"),
    "auc_gtbone": Protocol("AUC, GT bone lengths", "%", "max"),
}


def _select(x: torch.Tensor, joints: Joints) -> torch.Tensor:
    """``x[..., joints, :]``; a tuple of indices is read as a list (a tuple index would mean several axes)."""
    if joints is None:
        return x
    return x[..., joints if torch.is_tensor(joints) else list(joints), :]


def _joint_errors(pred: torch.Tensor, target: torch.Tensor, joints: Joints) -> torch.Tensor:
    """Per-joint Euclidean distances ``(..., J')`` on the selected joints."""
    return (_select(pred, joints) - _select(target, joints)).norm(dim=-1)


def mpjpe(pred: torch.Tensor, target: torch.Tensor, joints: Joints = None) -> torch.Tensor:
    """Mean per-joint position error: mean Euclidean distance between matching joints."""
    return _joint_errors(pred, target, joints).mean()


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


def pa_mpjpe(pred: torch.Tensor, target: torch.Tensor, joints: Joints = None) -> torch.Tensor:
    """MPJPE after similarity Procrustes alignment of each prediction (its ``joints``) to its target."""
    pred, target = _select(pred, joints), _select(target, joints)
    return mpjpe(procrustes_align(pred, target), target)


def pck(pred: torch.Tensor, target: torch.Tensor, threshold_mm: float = 150.0, joints: Joints = None) -> torch.Tensor:
    """Percent (0-100) of joints whose error is below ``threshold_mm``."""
    return 100.0 * (_joint_errors(pred, target, joints) < threshold_mm).double().mean()


def auc(
    pred: torch.Tensor, target: torch.Tensor, max_mm: float = 150.0, steps: int = 31, joints: Joints = None
) -> torch.Tensor:
    """Mean PCK (percent) over ``steps`` evenly spaced thresholds from 0 to ``max_mm``: 0, 5, ..., 150 mm."""
    errors = _joint_errors(pred, target, joints).double().reshape(-1, 1)
    thresholds = torch.linspace(0.0, max_mm, steps, dtype=torch.float64, device=errors.device)
    return 100.0 * (errors < thresholds).double().mean()


def rescale_to_bone_lengths(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Give each predicted bone the ground-truth length of the same sample: the official protocol.

    ``pred``, ``target``: ``(..., 17, 3)`` mm.  Takes ``pred``'s 16 bone directions, scales each by the
    matching bone length measured on ``target`` and runs forward kinematics from the root, so the result is
    root-relative with ``target``'s proportions and ``pred``'s bone directions.
    """
    lengths = skeleton.measured_bone_lengths(target).to(pred.dtype)
    return skeleton.from_bone_directions(skeleton.to_bone_directions(pred), lengths)


def evaluate_protocols(pred: torch.Tensor, target: torch.Tensor, joints: Joints = None) -> dict[str, float]:
    """Every protocol of the module docstring for ``(..., 17, 3)`` mm poses, as plain floats."""
    rescaled = rescale_to_bone_lengths(pred, target)
    return {
        "mpjpe": mpjpe(pred, target, joints).item(),
        "pa_mpjpe": pa_mpjpe(pred, target, joints).item(),
        "mpjpe_gtbone": mpjpe(rescaled, target, joints).item(),
        "pa_mpjpe_gtbone": pa_mpjpe(rescaled, target, joints).item(),
        "pck150": pck(pred, target, 150.0, joints).item(),
        "auc": auc(pred, target, joints=joints).item(),
        "pck150_gtbone": pck(rescaled, target, 150.0, joints).item(),
        "auc_gtbone": auc(rescaled, target, joints=joints).item(),
    }

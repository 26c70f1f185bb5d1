"""Property tests of the pose errors.

Ordering note: each alignment (none < scale < similarity) minimises the *squared* error over a larger
family, so the RMS errors are ordered, but the reported means of per-joint distances are not: one
far-off joint can make PA-MPJPE exceed MPJPE.  Both facts are pinned below.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlrd import metrics, skeleton

SEEDS = st.integers(0, 2**31 - 1)
ANGLES = st.floats(-math.pi, math.pi, allow_nan=False)
SCALES = st.floats(0.2, 5.0, allow_nan=False)
FAST = settings(max_examples=50, deadline=None)


def pose_pair(seed: int, n: int = 4, noise_mm: float = 60.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Root-relative canonical targets and noisy predictions, ``(n, 17, 3)`` mm, float64."""
    g = torch.Generator().manual_seed(seed)
    target = skeleton.from_bone_directions(torch.randn(n, 16, 3, generator=g, dtype=torch.float64))
    pred = skeleton.root_relative(target + noise_mm * torch.randn(n, 17, 3, generator=g, dtype=torch.float64))
    return pred, target


def rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    r = skeleton.rotation_z(yaw) @ skeleton.rotation_x(pitch) @ skeleton.rotation_y(roll)
    return r.double()


def rms_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).square().sum(dim=-1).mean().sqrt()


def test_mpjpe_known_values() -> None:
    pred, target = pose_pair(0)
    assert metrics.mpjpe(target, target).item() == 0.0
    assert metrics.mpjpe(pred, target).item() == metrics.mpjpe(target, pred).item()
    offset = torch.tensor([30.0, -40.0, 120.0], dtype=torch.float64)  # |offset| = 130 mm
    assert metrics.mpjpe(target + offset, target).item() == pytest.approx(130.0)
    assert metrics.mpjpe(pred, target).dim() == 0


@FAST
@given(SEEDS)
def test_mpjpe_is_a_symmetric_mean_distance(seed: int) -> None:
    pred, target = pose_pair(seed)
    assert metrics.mpjpe(pred, target).item() == metrics.mpjpe(target, pred).item()
    per_joint = torch.stack([(p - t).norm(dim=-1) for p, t in zip(pred, target, strict=True)])
    assert metrics.mpjpe(pred, target).item() == pytest.approx(per_joint.mean().item())


@FAST
@given(SEEDS, SCALES)
def test_n_mpjpe_ignores_the_scale_of_the_prediction(seed: int, scale: float) -> None:
    pred, target = pose_pair(seed)
    base = metrics.n_mpjpe(pred, target).item()
    assert metrics.n_mpjpe(scale * pred, target).item() == pytest.approx(base, rel=1e-6)
    assert metrics.n_mpjpe(scale * target, target).item() < 1e-6


@FAST
@given(SEEDS, ANGLES, ANGLES, ANGLES, SCALES, st.floats(-2000.0, 2000.0))
def test_pa_mpjpe_ignores_similarity_transforms_of_the_prediction(
    seed: int, yaw: float, pitch: float, roll: float, scale: float, shift_mm: float
) -> None:
    pred, target = pose_pair(seed)
    r = rotation(yaw, pitch, roll)
    shift = torch.tensor([shift_mm, -0.5 * shift_mm, 0.25 * shift_mm], dtype=torch.float64)
    moved = scale * skeleton.rotate(pred, r) + shift
    base = metrics.pa_mpjpe(pred, target).item()
    assert metrics.pa_mpjpe(moved, target).item() == pytest.approx(base, rel=1e-6)
    # A similarity copy of the target is a perfect prediction (up to the float32 rotation matrices of skeleton).
    assert metrics.pa_mpjpe(scale * skeleton.rotate(target, r) + shift, target).item() < 1e-4
    assert metrics.pa_mpjpe(target, target).item() < 1e-9


def test_pa_does_not_use_reflections() -> None:
    _, target = pose_pair(1, noise_mm=0.0)
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert metrics.pa_mpjpe(mirrored, target).item() > 10.0


def test_float32_inputs_give_float32_alignment() -> None:
    pred, target = pose_pair(2)
    aligned = metrics.procrustes_align(pred.float(), target.float())
    assert aligned.dtype == torch.float32 and aligned.shape == pred.shape


@FAST
@given(SEEDS, st.floats(1.0, 300.0))
def test_rms_errors_are_ordered_by_alignment_freedom(seed: int, noise_mm: float) -> None:
    pred, target = pose_pair(seed, noise_mm=noise_mm)
    scale = (pred * target).sum(dim=(-1, -2), keepdim=True) / (pred * pred).sum(dim=(-1, -2), keepdim=True)
    raw = rms_error(pred, target)
    scaled = rms_error(scale * pred, target)
    similar = rms_error(metrics.procrustes_align(pred, target), target)
    assert similar <= scaled + 1e-9 <= raw + 2e-9


def test_mean_errors_are_not_always_ordered() -> None:
    """One grossly wrong joint: least-squares alignment chases it and raises the mean distance."""
    _, target = pose_pair(3, n=1, noise_mm=0.0)
    pred = target.clone()
    pred[0, 4] += torch.tensor([3000.0, 0.0, 0.0], dtype=torch.float64)
    assert metrics.pa_mpjpe(pred, target) > metrics.mpjpe(pred, target)
    assert metrics.n_mpjpe(pred, target) > metrics.mpjpe(pred, target)

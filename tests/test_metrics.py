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


# --- protocols: PCK, AUC, ground-truth bone lengths, joint subsets -----------------------------------------

THRESHOLDS_MM = [5.0 * i for i in range(31)]


@FAST
@given(SEEDS)
def test_rescaling_a_prediction_with_ground_truth_bone_lengths_is_the_identity(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lengths = 50 + 400 * torch.rand(4, 16, generator=g, dtype=torch.float64)
    target = skeleton.from_bone_directions(torch.randn(4, 16, 3, generator=g, dtype=torch.float64), lengths)
    pred = skeleton.from_bone_directions(torch.randn(4, 16, 3, generator=g, dtype=torch.float64), lengths)
    torch.testing.assert_close(metrics.rescale_to_bone_lengths(pred, target), pred)


@FAST
@given(SEEDS)
def test_rescaling_keeps_predicted_directions_and_takes_target_lengths(seed: int) -> None:
    pred, target = pose_pair(seed)
    rescaled = metrics.rescale_to_bone_lengths(pred, target)
    torch.testing.assert_close(skeleton.measured_bone_lengths(rescaled), skeleton.measured_bone_lengths(target))
    torch.testing.assert_close(skeleton.to_bone_directions(rescaled), skeleton.to_bone_directions(pred))
    assert rescaled.dtype == pred.dtype and torch.equal(rescaled[:, 0], torch.zeros(4, 3, dtype=pred.dtype))


@FAST
@given(SEEDS, st.floats(150.001, 2000.0))
def test_pck_is_100_for_a_perfect_prediction_and_0_beyond_the_threshold(seed: int, distance_mm: float) -> None:
    _, target = pose_pair(seed)
    assert metrics.pck(target, target).item() == 100.0
    g = torch.Generator().manual_seed(seed)
    offsets = torch.nn.functional.normalize(torch.randn(target.shape, generator=g, dtype=torch.float64), dim=-1)
    assert metrics.pck(target + distance_mm * offsets, target).item() == 0.0


@FAST
@given(SEEDS, st.integers(0, 4 * 200))
def test_auc_of_a_constant_error_is_the_share_of_thresholds_above_it(seed: int, quarter_mm: int) -> None:
    """Integer-mm targets and quarter-mm x offsets keep every distance exact in float64."""
    _, target = pose_pair(seed)
    target = target.round()
    error_mm = quarter_mm / 4
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(target.shape[:-1], generator=g) < 0.5, -1.0, 1.0).double()
    pred = target + torch.stack([sign * error_mm, 0 * sign, 0 * sign], dim=-1)
    expected = 100.0 * sum(t > error_mm for t in THRESHOLDS_MM) / 31
    assert metrics.auc(pred, target).item() == pytest.approx(expected)
    assert metrics.pck(pred, target).item() == (100.0 if error_mm < 150 else 0.0)


def test_auc_uses_strict_thresholds_like_the_3dhp_script() -> None:
    target = torch.zeros(2, 17, 3, dtype=torch.float64)
    pred = target + torch.tensor([10.0, 0.0, 0.0], dtype=torch.float64)
    assert metrics.auc(pred, target).item() == pytest.approx(100.0 * 28 / 31)  # thresholds 15, ..., 150 mm
    assert metrics.auc(target, target).item() == pytest.approx(100.0 * 30 / 31)  # 0 mm counts nothing


@FAST
@given(SEEDS, st.lists(st.integers(0, 16), min_size=4, max_size=17, unique=True))
def test_joint_subsets_evaluate_only_those_joints(seed: int, joints: list[int]) -> None:
    pred, target = pose_pair(seed)
    per_joint = (pred - target).norm(dim=-1)
    assert metrics.mpjpe(pred, target, joints).item() == pytest.approx(per_joint[:, joints].mean().item())
    assert metrics.mpjpe(pred, target, tuple(joints)).item() == metrics.mpjpe(pred, target, joints).item()
    sub_pred, sub_target = pred[:, joints], target[:, joints]
    assert metrics.pa_mpjpe(pred, target, joints).item() == pytest.approx(metrics.pa_mpjpe(sub_pred, sub_target).item())
    assert metrics.pck(pred, target, 80.0, joints).item() == metrics.pck(sub_pred, sub_target, 80.0).item()
    assert metrics.auc(pred, target, joints=torch.tensor(joints)).item() == metrics.auc(sub_pred, sub_target).item()


def test_evaluate_protocols_names_both_protocols() -> None:
    pred, target = pose_pair(5)
    joints = [0, 1, 2, 3, 5, 6, 9, 10, 13, 14]
    result = metrics.evaluate_protocols(pred, target, joints)
    rescaled = metrics.rescale_to_bone_lengths(pred, target)
    assert result == pytest.approx(
        {
            "mpjpe": metrics.mpjpe(pred, target, joints).item(),
            "pa_mpjpe": metrics.pa_mpjpe(pred, target, joints).item(),
            "mpjpe_gtbone": metrics.mpjpe(rescaled, target, joints).item(),
            "pa_mpjpe_gtbone": metrics.pa_mpjpe(rescaled, target, joints).item(),
            "pck150": metrics.pck(pred, target, 150.0, joints).item(),
            "auc": metrics.auc(pred, target, joints=joints).item(),
            "pck150_gtbone": metrics.pck(rescaled, target, 150.0, joints).item(),
            "auc_gtbone": metrics.auc(rescaled, target, joints=joints).item(),
        }
    )
    assert all(isinstance(v, float) for v in result.values())
    # Noise changes bone lengths, so the two protocols differ on these poses.
    assert result["mpjpe_gtbone"] != result["mpjpe"]


def test_protocols_name_every_key_evaluate_protocols_returns_in_order():
    target = torch.randn(2, 17, 3) * 100.0
    target -= target[:, :1].clone()
    assert list(metrics.evaluate_protocols(target, target)) == list(metrics.PROTOCOLS)

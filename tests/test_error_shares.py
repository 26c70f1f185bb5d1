"""The error-share diagnostic: each share is 1 or 0 where the error's kind says so, and the shares add up."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlrd import skeleton
from nlrd.error_shares import CUTOFF_HZ, dct_matrix, error_shares, mirror_share, nearer_fractions, temporal_shares
from nlrd.world.motion import sample_sequences

seeds = st.integers(0, 2**31 - 1)
lengths = st.integers(2, 24)


def poses(seed: int, clips: int = 6, length: int = 8) -> torch.Tensor:
    return sample_sequences(clips, length, generator=torch.Generator().manual_seed(seed)).double()


def noise(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=20, deadline=None)
@given(seeds, lengths)
def test_an_offset_per_clip_is_all_offset(seed: int, length: int) -> None:
    gt = poses(seed, length=length)
    shares = error_shares(gt + 50 * noise(seed, 6, 1, 17, 3), gt)
    assert shares.offset == pytest.approx(1.0) and shares.slow == pytest.approx(0, abs=1e-9)
    assert shares.fast == pytest.approx(0, abs=1e-9) and shares.mirror is None


@settings(max_examples=20, deadline=None)
@given(seeds, lengths, st.floats(0.01, 100.0))
def test_temporal_shares_add_up_and_do_not_depend_on_scale(seed: int, length: int, scale: float) -> None:
    error = noise(seed, 4, length, 17, 3)
    shares = temporal_shares(error)
    assert all(0 <= s <= 1 + 1e-12 for s in shares) and sum(shares) == pytest.approx(1.0)
    assert temporal_shares(scale * error) == pytest.approx(shares)
    assert temporal_shares(error[torch.randperm(4)]) == pytest.approx(shares)


@settings(max_examples=20, deadline=None)
@given(seeds, lengths, st.data())
def test_one_temporal_frequency_lands_in_its_band(seed: int, length: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, length - 1))
    error = dct_matrix(length)[k].view(1, length, 1, 1) * noise(seed, 3, 1, 17, 3)
    offset, slow, fast = temporal_shares(error, fps=30.0)
    fast_expected = float(k * 30.0 / (2 * length) > CUTOFF_HZ)
    assert offset == pytest.approx(0, abs=1e-9)
    assert fast == pytest.approx(fast_expected) and slow == pytest.approx(1 - fast_expected)


def test_white_noise_spreads_over_all_frequencies() -> None:
    length = 16
    offset, slow, fast = temporal_shares(noise(0, 2000, length, 17, 3))
    above = sum(k * 30.0 / (2 * length) > CUTOFF_HZ for k in range(length))
    assert offset == pytest.approx(1 / length, abs=0.005)
    assert fast == pytest.approx(above / length, abs=0.01)


def test_dct_is_orthonormal() -> None:
    for length in (1, 5, 16):
        basis = dct_matrix(length)
        torch.testing.assert_close(basis @ basis.T, torch.eye(length, dtype=torch.float64))


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_an_error_that_mirrors_with_the_input_is_not_mirror_breaking(seed: int) -> None:
    gt = poses(seed)
    pred = gt + 40 * noise(seed, *gt.shape)
    assert error_shares(pred, gt, skeleton.flip(pred)).mirror == pytest.approx(0, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_an_error_that_flips_sign_on_the_mirrored_input_is_all_mirror_breaking(seed: int) -> None:
    gt = poses(seed)
    pred = gt + 40 * noise(seed, *gt.shape)
    assert mirror_share(pred, gt, skeleton.flip(2 * gt - pred)) == pytest.approx(1.0)


@settings(max_examples=20, deadline=None)
@given(seeds, st.floats(0.0, 1.0))
def test_the_mirror_share_is_the_flip_residual_over_both_errors(seed: int, mix: float) -> None:
    """It is in [0, 1] and reads the pose-flip residual ``pred - flip(pred_mirror)``, not the truth, on top."""
    gt = poses(seed)
    pred = gt + 40 * noise(seed, *gt.shape)
    pred_mirror = skeleton.flip(gt) + 40 * noise(seed + 1, *gt.shape)
    share = mirror_share(pred, gt, pred_mirror)
    residual = (pred - skeleton.flip(pred_mirror)).square().sum()
    both = (pred - gt).square().sum() + (skeleton.flip(pred_mirror) - gt).square().sum()
    assert 0 <= share <= 1 and share == pytest.approx((residual / (2 * both)).item())
    blended = mix * skeleton.flip(pred) + (1 - mix) * pred_mirror  # moving towards a mirroring error lowers it
    assert mirror_share(pred, gt, blended) <= share + 1e-12


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_nearer_fractions_find_the_ambiguous_twins(seed: int) -> None:
    gt = poses(seed)
    assert nearer_fractions(gt, gt) == (0.0, 0.0)
    depth_reversed = gt * gt.new_tensor([1.0, -1.0, 1.0])
    moved = (depth_reversed - gt).norm(dim=-1).mean(-1) > 1e-6  # frames the reversal changes
    assert nearer_fractions(depth_reversed, gt)[0] == pytest.approx(moved.double().mean().item())
    swapped = gt[..., list(skeleton.FLIP_PERMUTATION), :]
    moved = (swapped - gt).norm(dim=-1).mean(-1) > 1e-6
    assert nearer_fractions(swapped, gt)[1] == pytest.approx(moved.double().mean().item())


def test_error_shares_report_the_rms_error_and_refuse_wrong_shapes() -> None:
    gt = poses(3)
    shares = error_shares(gt + gt.new_tensor([3.0, 0.0, 4.0]), gt)
    assert shares.rms_mm == pytest.approx(5.0) and set(shares.as_dict()) >= {"offset", "mirror", "fast"}
    assert math.isnan(error_shares(gt, gt).offset)
    with pytest.raises(ValueError, match="pred"):
        error_shares(gt[:, :4], gt)
    with pytest.raises(ValueError, match="gt"):
        error_shares(gt[0], gt[0])
    with pytest.raises(ValueError, match="pred_mirror"):
        error_shares(gt, gt, gt[:2])

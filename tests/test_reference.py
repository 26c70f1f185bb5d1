from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlrd.core import ClipSet
from nlrd.metrics import PROTOCOLS
from nlrd.reference import mean_pose, mean_pose_metrics


def _clips(poses: torch.Tensor) -> ClipSet:
    frames = torch.zeros(*poses.shape[:2], 3, 8, 8, dtype=torch.uint8)
    return ClipSet(frames, poses)


def _root_relative(poses: torch.Tensor) -> torch.Tensor:
    return poses - poses[..., :1, :]


def test_mean_pose_is_the_root_relative_average():
    mocap = torch.randn(5, 4, 17, 3) * 300.0 + 1000.0
    expected = _root_relative(mocap).reshape(-1, 17, 3).mean(0)
    assert torch.allclose(mean_pose(mocap), expected, atol=1e-3)
    assert torch.equal(mean_pose(mocap)[0], torch.zeros(3))


def test_mean_pose_metrics_are_zero_error_when_every_target_frame_is_the_mean():
    pose = _root_relative(torch.randn(17, 3) * 200.0)
    clips = _clips(pose.expand(2, 3, 17, 3).clone())
    metrics = mean_pose_metrics(pose.expand(4, 6, 17, 3), clips)
    assert set(metrics) == set(PROTOCOLS)
    assert metrics["mpjpe"] < 1e-3 and metrics["pa_mpjpe"] < 1e-3
    assert metrics["pck150"] == 100.0


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_no_constant_pose_beats_the_mean_pose_in_squared_error(seed):
    """The mean minimises the summed squared joint error: a shifted constant is never better in that sense."""
    generator = torch.Generator().manual_seed(seed)
    mocap = _root_relative(torch.randn(6, 2, 17, 3, generator=generator) * 200.0)
    target = mocap.reshape(-1, 17, 3)
    shift = torch.randn(17, 3, generator=generator) * 50.0
    shift[0] = 0.0

    def squared(pose: torch.Tensor) -> float:
        return float(((target - pose) ** 2).sum())

    assert squared(mean_pose(mocap)) <= squared(mean_pose(mocap) + shift) + 1e-3


def test_mean_pose_metrics_refuse_unlabelled_clips():
    clips = ClipSet(torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="labelled"):
        mean_pose_metrics(torch.zeros(1, 2, 17, 3), clips)

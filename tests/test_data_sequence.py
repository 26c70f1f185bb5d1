"""PoseSequence: validation, resampling, windows, and the unpaired-mocap tensor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlrd import skeleton
from nlrd.data import DatasetError, PoseSequence, stack_windows
from nlrd.data.sequence import contiguous_runs


def walking(frames: int, fps: float = 30.0, source: str = "walk") -> PoseSequence:
    """The rest pose translating along +x at 1 mm per frame with a joint offset growing linearly in time."""
    t = torch.arange(frames, dtype=torch.float32)
    positions = skeleton.rest_pose_mm().expand(frames, 17, 3).clone()
    positions[:, 1:, 2] += t[:, None]  # every non-root joint rises 1 mm per frame relative to the pelvis
    positions[..., 0] += t[:, None]
    return PoseSequence.from_positions(positions, fps=fps, source=source)


def test_from_positions_splits_root_and_root_relative_joints() -> None:
    seq = walking(5)
    assert seq.joints.dtype == torch.float32 and seq.joints.shape == (5, 17, 3)
    assert torch.equal(seq.joints[:, 0], torch.zeros(5, 3))
    assert torch.allclose(seq.root[:, 0], torch.arange(5.0))
    assert torch.allclose(seq.joints[0], skeleton.rest_pose_mm())


@pytest.mark.parametrize(
    ("joints", "root", "fps", "message"),
    [
        (torch.zeros(4, 16, 3), torch.zeros(4, 3), 30.0, "joints must be"),
        (torch.zeros(0, 17, 3), torch.zeros(0, 3), 30.0, "joints must be"),
        (torch.zeros(4, 17, 3), torch.zeros(3, 3), 30.0, "root must be"),
        (torch.zeros(4, 17, 3), torch.zeros(4, 3), 0.0, "fps must be"),
        (torch.zeros(4, 17, 3), torch.zeros(4, 3), "fast", "fps must be"),
        (torch.ones(4, 17, 3), torch.zeros(4, 3), 30.0, "joints must be root-relative"),
    ],
)
def test_invalid_sequences_name_the_source(joints, root, fps, message) -> None:
    with pytest.raises(DatasetError, match=rf"my/file.bvh: {message}"):
        PoseSequence(joints, fps, root, "my/file.bvh")


def test_nan_is_an_error_naming_source_and_frame() -> None:
    joints = torch.zeros(4, 17, 3)
    joints[2, 5, 1] = math.nan
    with pytest.raises(DatasetError, match=r"S9/Walk: joints has NaN .* frame 2"):
        PoseSequence(joints, 50.0, torch.zeros(4, 3), "S9/Walk")
    root = torch.zeros(4, 3)
    root[3, 0] = math.inf
    with pytest.raises(DatasetError, match=r"S9/Walk: root has NaN .* frame 3"):
        PoseSequence(torch.zeros(4, 17, 3), 50.0, root, "S9/Walk")


def test_numpy_inputs_become_float32_tensors() -> None:
    seq = PoseSequence(np.zeros((2, 17, 3)), np.float32(25.0), np.zeros((2, 3)), "np")
    assert seq.joints.dtype == torch.float32 and seq.root.dtype == torch.float32 and seq.fps == 25.0


def test_resample_interpolates_linearly_in_time() -> None:
    seq = walking(11, fps=50.0)  # 0.2 s
    half = seq.resample(25.0)
    assert len(half) == 6 and half.fps == 25.0
    assert torch.allclose(half.joints, seq.joints[::2]) and torch.allclose(half.root, seq.root[::2])
    up = seq.resample(100.0)
    assert len(up) == 21
    # the motion is linear in time, so interpolated frames lie exactly on it: frame k at 100 fps is t = k / 2
    assert torch.allclose(up.root[:, 0], torch.arange(21) / 2.0)
    assert torch.allclose(up.joints[3], seq.joints[1] + 0.5 * (seq.joints[2] - seq.joints[1]))


def test_resample_30_from_50_keeps_duration_and_endpoints() -> None:
    seq = walking(51, fps=50.0)  # exactly 1 s
    out = seq.resample(30.0)
    assert len(out) == 31
    assert torch.allclose(out.root[-1], seq.root[-1]) and torch.allclose(out.joints[0], seq.joints[0])


@settings(max_examples=25, deadline=None)
@given(frames=st.integers(1, 40), fps=st.sampled_from([24.0, 25.0, 30.0, 50.0, 60.0]))
def test_resample_to_own_rate_is_identity_and_stays_in_range(frames: int, fps: float) -> None:
    seq = walking(frames, fps=30.0)
    assert seq.resample(30.0) is seq
    out = seq.resample(fps)
    assert out.duration_s <= seq.duration_s + 1e-9
    assert seq.duration_s - out.duration_s < 1.0 / fps
    assert out.root[:, 0].min() >= 0 and out.root[:, 0].max() <= frames - 1 + 1e-4


def test_windows_shape_and_content() -> None:
    seq = walking(10)
    w = seq.windows(4, stride=3)
    assert w.shape == (3, 4, 17, 3) and w.dtype == torch.float32
    assert torch.equal(w[1], seq.joints[3:7]) and torch.equal(w[2], seq.joints[6:10])


def test_windows_of_too_short_sequence_names_source() -> None:
    with pytest.raises(DatasetError, match=r"short.bvh: 5 frames, shorter than a clip of 8"):
        walking(5, source="short.bvh").windows(8)
    with pytest.raises(DatasetError, match="stride"):
        walking(5).windows(2, stride=0)


@settings(max_examples=30, deadline=None)
@given(frames=st.integers(1, 30), length=st.integers(1, 10), stride=st.integers(1, 5))
def test_window_count_formula(frames: int, length: int, stride: int) -> None:
    seq = walking(frames)
    if frames < length:
        with pytest.raises(DatasetError):
            seq.windows(length, stride)
    else:
        assert seq.windows(length, stride).shape[0] == (frames - length) // stride + 1


def test_stack_windows_concatenates_in_order_and_skips_short_on_request() -> None:
    a, b, short = walking(6, source="a"), walking(8, source="b"), walking(2, source="short")
    mocap = stack_windows([a, b], 4, stride=2)
    assert mocap.shape == (2 + 3, 4, 17, 3)
    assert torch.equal(mocap[0], a.joints[:4]) and torch.equal(mocap[2], b.joints[:4])
    with pytest.raises(DatasetError, match="short: 2 frames"):
        stack_windows([a, short], 4)
    assert stack_windows([a, short], 4, skip_short=True).shape == (3, 4, 17, 3)
    with pytest.raises(DatasetError, match="all 1 sequences are shorter than 4"):
        stack_windows([short], 4, skip_short=True)
    with pytest.raises(DatasetError, match="no sequences"):
        stack_windows([], 4)


def test_contiguous_runs() -> None:
    assert contiguous_runs([1, 1, 0, 1, 0, 0, 1, 1, 1]) == [(0, 2), (3, 4), (6, 9)]
    assert contiguous_runs([0, 0]) == [] and contiguous_runs([True]) == [(0, 1)]


def test_stack_windows_limit_spreads_evenly_in_order() -> None:
    a, b = walking(6, source="a"), walking(8, source="b")
    every = stack_windows([a, b], 4)  # 3 + 5 windows
    assert torch.equal(stack_windows([a, b], 4, limit=3), every[[0, 4, 7]])
    assert torch.equal(stack_windows([a, b], 4, limit=100), every)
    with pytest.raises(DatasetError, match="window limit"):
        stack_windows([a], 4, limit=0)

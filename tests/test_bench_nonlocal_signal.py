"""``bench.nonlocal_signal``'s readouts of one domain: the symmetrised prediction is the flip-consistent encoder."""

from __future__ import annotations

import torch
from torch import nn

from bench.nonlocal_signal import domain_row, first_clips, projection_row
from nlrd import skeleton
from nlrd.core import ClipSet, Stages


class _FlatPrior(nn.Module):
    """Latents are the flattened pose: decoding only reshapes."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 17, 3)


class _MarkedEncoder(nn.Module):
    """Reads the truth plus ``error`` on frames whose marker pixel is on the left; on flipped frames (marker on the
    right) the flipped truth plus the flip of ``mirrored_error``."""

    def __init__(self, truth: torch.Tensor, error: torch.Tensor, mirrored_error: torch.Tensor) -> None:
        super().__init__()
        self.truth, self.error, self.mirrored_error = truth, error, mirrored_error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, 0, 0, 0] > 0.5
        plain = self.truth + self.error
        flipped = skeleton.flip(self.truth + self.mirrored_error)
        return torch.where(left[:, None, None], plain, flipped).flatten(1)


def _clips(n: int) -> tuple[ClipSet, torch.Tensor]:
    frames = torch.zeros(1, n, 3, 4, 4, dtype=torch.uint8)
    frames[:, :, 0, 0, 0] = 255  # the marker, top left
    poses = torch.randn(1, n, 17, 3, generator=torch.Generator().manual_seed(0)) * 200
    return ClipSet(frames=frames, poses=poses), poses[0]


def _cells(row: str) -> list[float]:
    return [float(cell.split()[0]) for cell in row.strip("|").split("|")[1:]]


def test_an_error_that_the_flip_reverses_is_removed_by_symmetrising():
    clips, truth = _clips(6)
    error = torch.randn(6, 17, 3, generator=torch.Generator().manual_seed(1)) * 30
    stages = Stages(_FlatPrior(), nn.Identity(), {"flip": nn.Identity()}, _MarkedEncoder(truth, error, -error))
    mpjpe, symmetrised, pa, pa_symmetrised = _cells(domain_row("d", stages, clips, frames=6))[:4]
    assert mpjpe > 10 and pa > 1 and symmetrised < 0.05 and pa_symmetrised < 0.05


def test_an_error_made_the_same_way_on_both_sides_stays():
    clips, truth = _clips(6)
    error = torch.randn(6, 17, 3, generator=torch.Generator().manual_seed(1)) * 30
    stages = Stages(_FlatPrior(), nn.Identity(), {"flip": nn.Identity()}, _MarkedEncoder(truth, error, error))
    mpjpe, symmetrised, pa, pa_symmetrised = _cells(domain_row("d", stages, clips, frames=6))[:4]
    assert symmetrised == mpjpe and pa_symmetrised == pa


class _TemporalMean(nn.Module):
    """A motion embedding that keeps only what a clip holds throughout: every frame becomes the clip's mean."""

    def forward(self, z_seq: torch.Tensor) -> torch.Tensor:
        return z_seq.mean(1, keepdim=True).expand_as(z_seq)


def _projection_cells(motion: nn.Module, error: torch.Tensor) -> list[float]:
    clips, truth = _clips(6)
    still = ClipSet(frames=clips.frames, poses=truth[:1].expand(6, 17, 3)[None].clone())
    encoder = _MarkedEncoder(still.poses[0], error, error)
    row = projection_row("d", Stages(_FlatPrior(), motion, {}, encoder), still)
    return [float(v) for cell in row.strip("|").split("|")[1:] for v in cell.split("/")]


def test_a_projection_that_keeps_the_motion_changes_nothing():
    error = torch.randn(6, 17, 3, generator=torch.Generator().manual_seed(2)) * 30
    cells = _projection_cells(nn.Identity(), error)
    assert cells[0] > 10 and cells[2:4] == cells[0:2]


def test_a_projection_onto_smooth_motion_removes_a_per_frame_error_of_a_still_pose():
    error = torch.randn(6, 17, 3, generator=torch.Generator().manual_seed(2)) * 30
    error = error - error.mean(0, keepdim=True)
    mpjpe, pa, projected, pa_projected = _projection_cells(_TemporalMean(), error)[:4]
    assert mpjpe > 10 and pa > 1 and projected < 0.05 and pa_projected < 0.05


def test_first_clips_takes_whole_clips_of_the_frames_asked_for_and_at_least_one():
    frames = torch.zeros(5, 4, 3, 2, 2, dtype=torch.uint8)
    clips = ClipSet(frames=frames, poses=torch.arange(5.0)[:, None, None, None].expand(5, 4, 17, 3).clone())
    assert len(first_clips(clips, 9)) == 2 and first_clips(clips, 9).poses[:, 0, 0, 0].tolist() == [0.0, 1.0]
    assert len(first_clips(clips, 1)) == 1

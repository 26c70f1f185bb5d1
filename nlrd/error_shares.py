"""Which part of a pose encoder's error the method's relations can see.

A non-local relation r trains the encoder G through ``|T_r(G(x)) - G(T_r(x))|``: it sees only what differs between
G's answer on x and its answer on the transformed input.  So a target error of the kind a relation cannot see stays,
however well the relation is distilled.  ``error_shares`` splits the squared error of predicted against true poses
of clips into

- **offset**, **slow**, **fast**: the error's energy at temporal frequency zero (constant within a clip), up to
  ``cutoff_hz`` and above it (an orthonormal DCT along each clip, so the three add up to 1).  G works frame by
  frame, so it commutes with every reordering of frames (reversal, subsampling): a motion relation's loss is only
  nonzero where the sequence of predictions is not a motion the motion embedding and its transformer agree on.  A
  per-clip offset or a slow drift leaves a smooth motion; jitter faster than the motions themselves does not.  The
  fast share is what time relations could see at best: through the motion embedding they see little of it
  (``bench/loss_sight.py``);
- **mirror**: the share of the error that is not symmetric under the pose flip, given G's predictions on the
  mirrored frames.  With ``a = pred - gt`` and ``b = flip(pred_mirror) - gt`` (the mirrored prediction mapped back),
  the error splits into a symmetric part ``(a + b) / 2`` and a mirror-breaking part ``(a - b) / 2`` whose squares
  add up to ``(|a|^2 + |b|^2) / 2`` (parallelogram law); ``mirror = sum |a - b|^2 / (2 sum (|a|^2 + |b|^2))`` is the
  latter's share.  The flip is linear and orthogonal, so ``|a - b| = |flip(pred) - pred_mirror|``: the pose-flip
  loss's residual in pose space with an exact flip transformer, i.e. what pose-flip can see.  Predicted and true
  poses alone cannot define it: ``flip(pred) - flip(gt)`` is the flip of ``pred - gt`` and always as large.

It also counts the frames whose prediction is nearer (per-frame MPJPE) the **depth-reversed** truth (mirrored through
the plane facing the canonical camera: y negated) or the **left/right-swapped** truth (left and right joints
exchanged, not mirrored) than the truth itself: the classic monocular ambiguities.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from nlrd import skeleton

#: Default edge between slow and fast error, Hz: above every proxy motion family's cycle frequency (at most 1.6 Hz)
#: and its second harmonic.
CUTOFF_HZ = 4.0


@dataclass(frozen=True)
class ErrorShares:
    """Shares of the squared pose error (``offset + slow + fast = 1``; ``mirror`` is None without predictions on
    mirrored frames), the fractions of frames nearer an ambiguous twin of the truth, and ``rms_mm``: the root mean
    squared joint error the shares divide."""

    offset: float
    slow: float
    fast: float
    mirror: float | None
    depth_reversed: float
    left_right_swapped: float
    rms_mm: float

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _check(name: str, poses: torch.Tensor, shape: torch.Size | None = None) -> torch.Tensor:
    if poses.dim() != 4 or poses.shape[-2:] != (skeleton.NUM_JOINTS, 3) or (shape is not None and poses.shape != shape):
        want = "(N, T, 17, 3)" if shape is None else str(tuple(shape))
        raise ValueError(f"{name} must be {want} poses, got {tuple(poses.shape)}")
    return poses.double()


def dct_matrix(length: int) -> torch.Tensor:
    """The orthonormal DCT-II ``(length, length)`` float64: row k is the cosine of k half-cycles over the clip."""
    t = torch.arange(length, dtype=torch.float64) + 0.5
    k = torch.arange(length, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * k * t / length) * math.sqrt(2.0 / length)
    basis[0] /= math.sqrt(2.0)
    return basis


def temporal_shares(error: torch.Tensor, fps: float = 30.0, cutoff_hz: float = CUTOFF_HZ) -> tuple[float, ...]:
    """``(offset, slow, fast)`` shares of the energy of ``(N, T, J, 3)`` errors: DCT component 0 (each clip's mean
    error, the part constant within a clip), components at most ``cutoff_hz`` and those above it.  Component k
    oscillates at ``k * fps / (2 T)`` Hz, so white noise puts ``1 / T`` of its energy in the offset and the share of
    components above the cutoff in ``fast``.  NaN when the error is zero."""
    length = error.shape[1]
    energy = torch.einsum("kt,ntjc->nkjc", dct_matrix(length), error.double()).square().sum((0, 2, 3))  # (T,)
    hz = torch.arange(length, dtype=torch.float64) * fps / (2 * length)
    slow, fast = energy[(hz > 0) & (hz <= cutoff_hz)].sum(), energy[hz > cutoff_hz].sum()
    return tuple((part / energy.sum()).item() for part in (energy[0], slow, fast))


def mirror_share(pred: torch.Tensor, gt: torch.Tensor, pred_mirror: torch.Tensor) -> float:
    """The mirror-breaking share of the error (module docstring): 0 when ``pred_mirror = flip(pred)`` (the error
    mirrors with the input), 1 when the mirrored input's error is the opposite.  NaN when both errors are zero."""
    a, b = pred - gt, skeleton.flip(pred_mirror) - gt
    return ((a - b).square().sum() / (2 * (a.square().sum() + b.square().sum()))).item()


def nearer_fractions(pred: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    """Fractions of frames whose prediction is strictly nearer (per-frame MPJPE) the depth-reversed truth, and the
    left/right-swapped truth, than the truth: ``(depth_reversed, left_right_swapped)``."""

    def frame_error(truth: torch.Tensor) -> torch.Tensor:
        return (pred - truth).norm(dim=-1).mean(-1)

    own = frame_error(gt)
    depth_reversed = gt * gt.new_tensor([1.0, -1.0, 1.0])
    swapped = gt[..., list(skeleton.FLIP_PERMUTATION), :]
    return tuple((frame_error(twin) < own).double().mean().item() for twin in (depth_reversed, swapped))


def error_shares(
    pred: torch.Tensor,
    gt: torch.Tensor,
    pred_mirror: torch.Tensor | None = None,
    *,
    fps: float = 30.0,
    cutoff_hz: float = CUTOFF_HZ,
) -> ErrorShares:
    """The shares of the error of ``pred`` against ``gt``, both ``(N, T, 17, 3)`` mm clips; ``pred_mirror``: the
    predictions on the horizontally mirrored frames, as predicted (for the mirror share); ``fps`` the clips' rate."""
    gt = _check("gt", gt)
    pred = _check("pred", pred, gt.shape)
    error = pred - gt
    offset, slow, fast = temporal_shares(error, fps, cutoff_hz)
    mirror = None if pred_mirror is None else mirror_share(pred, gt, _check("pred_mirror", pred_mirror, gt.shape))
    depth_reversed, swapped = nearer_fractions(pred, gt)
    rms = error.square().sum(-1).mean().sqrt().item()
    return ErrorShares(offset, slow, fast, mirror, depth_reversed, swapped, rms)

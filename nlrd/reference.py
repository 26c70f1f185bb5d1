"""Reference lines every result is read against: what a prediction is worth without looking at the image.

A trained or adapted encoder is only evidence when it beats the **mean pose**, the constant prediction of the
average pose of the unpaired mocap the stages train on (no image, no target label): an encoder at or above that
line has learnt nothing about the pose in front of it.  The other lines, source only (the unadapted source encoder)
and the oracle (the same encoder supervised on labelled target clips, a benchmark-only line), come from trained
encoders; this module holds the one that needs no training.
"""

from __future__ import annotations

import torch

from nlrd.core import ClipSet
from nlrd.metrics import evaluate_protocols


def mean_pose(mocap_mm: torch.Tensor) -> torch.Tensor:
    """The average root-relative pose ``(17, 3)`` mm of ``(..., 17, 3)`` mocap poses."""
    poses = mocap_mm.reshape(-1, 17, 3).double()
    return (poses - poses[:, :1]).mean(0).float()


def mean_pose_metrics(mocap_mm: torch.Tensor, clips: ClipSet) -> dict[str, float]:
    """Every protocol of ``nlrd.metrics.evaluate_protocols`` for predicting ``mean_pose(mocap_mm)`` on every frame of
    labelled ``clips`` (on ``clips.eval_joints`` when they name them)."""
    if clips.poses is None:
        raise ValueError("mean_pose_metrics needs labelled clips (poses is None)")
    target = clips.poses.flatten(0, 1).float()
    prediction = mean_pose(mocap_mm).expand_as(target)
    return evaluate_protocols(prediction, target, joints=clips.eval_joints)

"""The real-data loaders, and the pose-sequence type they share.

Mocap (BVH, Human3.6M, and the pose tracks of 3DHP/3DPW) becomes :class:`PoseSequence`, and
:func:`stack_windows` turns many of them into the ``(N, L, 17, 3)`` float32 mm tensor the method trains on (the shape
of ``World.mocap``).  Labelled videos become :class:`ClipSet`, which lives with ``World`` in ``nlrd.core`` and is
re-exported here.  Every loader raises :class:`DatasetError` with the file and what was expected.
:class:`DataConfig` (``nlrd.data.sources``) says which source, proxy or real, fills each part of the data.
"""

from __future__ import annotations

from nlrd.core import ClipSet
from nlrd.data.bvh import load_bvh, load_bvh_files, load_bvh_folder
from nlrd.data.errors import DatasetError
from nlrd.data.h36m import load_h36m_clips, load_h36m_poses
from nlrd.data.images import read_frames, square_box
from nlrd.data.mpi_inf_3dhp import EVAL_JOINTS_3DHP, VALID_JOINTS_3DHP, load_3dhp_clips, load_3dhp_test
from nlrd.data.pw3d import load_3dpw, load_3dpw_clips
from nlrd.data.safe_pickle import restricted_load
from nlrd.data.sequence import PoseSequence, stack_windows
from nlrd.data.sources import DataConfig, DataConfigError, DataSource

__all__ = [
    "EVAL_JOINTS_3DHP", "VALID_JOINTS_3DHP", "ClipSet", "DataConfig", "DataConfigError", "DataSource",
    "DatasetError", "PoseSequence", "load_3dhp_clips", "load_3dhp_test", "load_3dpw", "load_3dpw_clips",
    "load_bvh", "load_bvh_files", "load_bvh_folder", "load_h36m_clips", "load_h36m_poses",
    "read_frames", "restricted_load", "square_box", "stack_windows",
]  # fmt: skip

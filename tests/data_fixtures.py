"""Small real-data fixtures in each format's exact layout, built from the loaders' own test writers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tests.test_data_3dhp import person_in_camera, write_mat
from tests.test_data_bvh import bvh_text, common_skeleton
from tests.test_data_h36m import recording, write_npz


def write_bvh_folder(folder: Path, files: int = 2, frames: int = 40) -> Path:
    """``files`` BVH takes (y up, cm, 30 fps) of a person turning, bending a knee and swinging an arm."""
    folder.mkdir(parents=True)
    for k in range(files):
        motion = [
            {
                "Hips": {"Yposition": 95.0, "Xposition": 2.0 * t, "Yrotation": 40.0 * k + 3.0 * t},
                "LeftLeg": {"Xrotation": 30.0 + 25.0 * math.sin(t / 4 + k)},
                "RightArm": {"Zrotation": 40.0 * math.sin(t / 5)},
            }
            for t in range(frames)
        ]
        (folder / f"take{k:02d}.bvh").write_text(bvh_text(common_skeleton(), motion))
    return folder


def write_jpegs(folder: Path, names: Sequence[str], size: int = 16) -> None:
    """Small grey JPEG frames, a different level per frame."""
    folder.mkdir(parents=True)
    for t, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), (9 * t) % 256, dtype=np.uint8)).save(folder / name)


def write_video(path: Path, images: Sequence[np.ndarray], fps: int = 50) -> Path:
    """``(H, W, 3)`` uint8 frames as an MPEG-4 video at high quality (PyAV must be installed)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = images[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps, options={"qscale": "1"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def grey_levels(count: int, step: int = 10, size: tuple[int, int] = (16, 32)) -> list[np.ndarray]:
    """Frames whose centre square has grey level ``step * t``, with red bars at the sides that a centre crop
    removes."""
    frames = []
    for t in range(count):
        image = np.full((*size, 3), step * t, dtype=np.uint8)
        image[:, :4] = image[:, -4:] = (255, 0, 0)
        frames.append(image)
    return frames


def write_h36m(root: Path, recordings: dict[str, dict[str, int]], camera: str = "54138969") -> tuple[Path, Path]:
    """VideoPose3D's ``data_3d_h36m.npz`` with ``{subject: {action: frames}}`` recordings, and one camera's
    extracted frames per recording; returns ``(npz, frames root)``."""
    root.mkdir(parents=True, exist_ok=True)
    npz = write_npz(
        root / "data_3d_h36m.npz", {s: {a: recording(n) for a, n in acts.items()} for s, acts in recordings.items()}
    )
    for subject, actions in recordings.items():
        for action, count in actions.items():
            write_jpegs(root / "frames" / subject / f"{action}.{camera}", [f"{t + 1:06d}.jpg" for t in range(count)])
    return npz, root / "frames"


def write_3dhp(root: Path, sequences: Sequence[str] = ("TS1",), frames: int = 12) -> Path:
    """The MPI-INF-3DHP test-set layout: ``TSk/annot_data.mat`` (v7.3, every frame valid) and ``imageSequence``."""
    for name in sequences:
        write_mat(root / name / "annot_data.mat", person_in_camera(frames), np.ones(frames))
        write_jpegs(root / name / "imageSequence", [f"img_{t + 1:06d}.jpg" for t in range(frames)])
    return root

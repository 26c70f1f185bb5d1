"""Frames from image files: crops, colour modes, errors, and clip assembly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlrd import skeleton
from nlrd.core import ClipSet
from nlrd.data import DatasetError, PoseSequence, read_frames, square_box
from nlrd.data.images import FramedSequence, ImageFiles, build_clips


def quadrants(path: Path, width: int = 40, height: int = 20) -> Path:
    """An image whose left quarter is red, right quarter blue, centre square green (lossless PNG)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 4] = (255, 0, 0)
    image[:, width // 4 : 3 * width // 4] = (0, 255, 0)
    image[:, 3 * width // 4 :] = (0, 0, 255)
    Image.fromarray(image).save(path)
    return path


def test_centre_crop_and_resize(tmp_path: Path) -> None:
    frames = read_frames([quadrants(tmp_path / "a.png")] * 2, size=6)
    assert frames.shape == (2, 3, 6, 6) and frames.dtype == torch.uint8
    assert (frames[:, 1] == 255).all() and (frames[:, 0] == 0).all() and (frames[:, 2] == 0).all()


def test_boxes_are_made_square_and_padded_past_the_border(tmp_path: Path) -> None:
    path = quadrants(tmp_path / "a.png")
    left = read_frames([path], size=4, boxes=[(0, 5, 10, 15)])  # the red quarter
    assert (left[0, 0] == 255).all() and (left[0, 1] == 0).all()
    wide = read_frames([path], size=4, boxes=np.array([[0.0, 5.0, 10.0, 7.0]]))  # 10 x 2 -> a 10 x 10 square
    assert (wide[0, 0] == 255).all()
    outside = read_frames([path], size=4, boxes=[(-20, 0, 0, 20)])  # entirely left of the image: black padding
    assert (outside == 0).all()
    with pytest.raises(DatasetError, match=r"a.png: crop box must be finite"):
        read_frames([path], size=4, boxes=[(5, 5, 5, 10)])
    with pytest.raises(DatasetError, match="1 frames but 2 crop boxes"):
        read_frames([path], size=4, boxes=[(0, 0, 1, 1)] * 2)


def test_colour_modes_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 77).save(tmp_path / "grey.png")
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    Image.new("P", (8, 8), 0).save(tmp_path / "palette.gif")
    frames = read_frames([tmp_path / "grey.png", tmp_path / "rgba.png", tmp_path / "palette.gif"], size=3)
    assert (frames[0] == 77).all()
    assert frames[1, :, 0, 0].tolist() == [10, 20, 30]
    assert frames.shape == (3, 3, 3, 3)


def test_missing_and_unreadable_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"absent.jpg: image file not found"):
        read_frames([tmp_path / "absent.jpg"], size=4)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match=r"text.jpg: unreadable image"):
        read_frames([tmp_path / "text.jpg"], size=4)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"cut.jpg: unreadable image"):
        read_frames([tmp_path / "cut.jpg"], size=4)
    with pytest.raises(DatasetError, match="frame size must be >= 1"):
        read_frames([tmp_path / "full.jpg"], size=0)


def test_square_box() -> None:
    points = np.array([[[10.0, 20.0], [30.0, 60.0]]])
    assert square_box(points, margin=1.0).tolist() == [[0.0, 20.0, 40.0, 60.0]]
    assert square_box(points, margin=1.5).tolist() == [[-10.0, 10.0, 50.0, 70.0]]


def framed(tmp_path: Path, frames: int, fps: float, name: str) -> FramedSequence:
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for t in range(frames):
        paths.append(folder / f"{t}.png")
        Image.new("RGB", (8, 8), (t, 0, 0)).save(paths[-1])
    positions = skeleton.rest_pose_mm().expand(frames, 17, 3).clone()
    positions[:, 8, 2] += torch.arange(frames, dtype=torch.float32)
    return FramedSequence(PoseSequence.from_positions(positions, fps, name), ImageFiles(tuple(paths)))


def test_build_clips_steps_strides_and_spreads(tmp_path: Path) -> None:
    fast, slow = framed(tmp_path, 20, 60.0, "fast"), framed(tmp_path, 7, 30.0, "slow")
    clips = build_clips([fast, slow], clip_len=3, fps=30.0, image_size=2, stride=2)
    assert isinstance(clips, ClipSet) and clips.fps == 30.0
    # fast: every 2nd frame, span 5, starts 4 apart -> 0, 4, 8, 12; slow: every frame, starts 2 apart -> 0, 2, 4
    red = clips.frames[:, :, 0, 0, 0].tolist()
    assert red == [[0, 2, 4], [4, 6, 8], [8, 10, 12], [12, 14, 16], [0, 1, 2], [2, 3, 4], [4, 5, 6]]
    assert torch.allclose(clips.poses[:, :, 8, 2] - skeleton.rest_pose_mm()[8, 2], torch.tensor(red).float())
    spread = build_clips([fast, slow], clip_len=3, fps=30.0, image_size=2, stride=2, max_clips=3)
    assert spread.frames[:, :, 0, 0, 0].tolist() == [red[0], red[3], red[6]]


def test_build_clips_errors(tmp_path: Path) -> None:
    item = framed(tmp_path, 4, 50.0, "s")
    with pytest.raises(DatasetError, match="s: clips at 30.0 fps .* not a whole number"):
        build_clips([item], clip_len=2, fps=30.0, image_size=2)
    with pytest.raises(DatasetError, match="no clip of 5 frames at 50.0 fps fits"):
        build_clips([item], clip_len=5, fps=50.0, image_size=2)
    with pytest.raises(DatasetError, match="max_clips must be >= 1"):
        build_clips([item], clip_len=2, fps=50.0, image_size=2, max_clips=0)
    with pytest.raises(DatasetError, match="4 poses but 3 frames"):
        FramedSequence(item.poses, ImageFiles(item.frames.paths[:3]))
    with pytest.raises(DatasetError, match=r"boxes must be \(T, 4\)"):
        FramedSequence(item.poses, item.frames, np.zeros((4, 2)))

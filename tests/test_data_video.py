"""Video files through PyAV: frames by decoding order, crops like image files, Human3.6M from its original videos."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nlrd import skeleton
from nlrd.data import DatasetError, load_h36m_clips
from nlrd.data.sources import DataConfigError, H36MSource
from nlrd.data.video import VideoFrames, count_video_frames, read_video
from tests.data_fixtures import grey_levels, write_h36m, write_video

pytest.importorskip("av", reason="the video extra (PyAV) is part of the dev install")

#: Grey-level tolerance of an MPEG-4 round trip (4:2:0 chroma, quantisation) at the highest quality.
LOSSY = 6.0


def test_frames_by_index_in_any_order_with_repeats(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ramp.mp4", grey_levels(10, step=25))
    assert count_video_frames(path) == 10
    frames = read_video(path, np.array([7, 2, 2, 0, 9]), size=8)
    assert frames.shape == (5, 3, 8, 8) and frames.dtype == torch.uint8
    # the centre square only: the red side bars are cropped away
    assert torch.allclose(frames.float().mean(dim=(1, 2, 3)), torch.tensor([175.0, 50, 50, 0, 225]), atol=LOSSY)
    assert (frames[:, 0].float() - frames[:, 2].float()).abs().max() < 2 * LOSSY
    assert read_video(path, np.array([], dtype=int), size=8).shape == (0, 3, 8, 8)


def test_boxes_crop_each_frame(tmp_path: Path) -> None:
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[:, :32] = (250, 0, 0)
    image[:, 32:] = (0, 0, 250)
    path = write_video(tmp_path / "halves.mp4", [image] * 3)
    boxes = np.array([[0.0, 0.0, 32.0, 32.0], [32.0, 0.0, 64.0, 32.0]])
    left, right = read_video(path, np.array([1, 2]), size=4, boxes=boxes)[:, :, 1:3, 1:3].float().mean(dim=(2, 3))
    assert left[0] > 200 and left[2] < 40 and right[2] > 200 and right[0] < 40


def test_video_frames_offset_and_errors(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ramp.mp4", grey_levels(6, step=40))
    late = VideoFrames(path, count=3, first=2)
    assert len(late) == 3
    assert torch.allclose(
        late.read(np.array([0, 2]), 4, None).float().mean(dim=(1, 2, 3)), torch.tensor([80.0, 160]), atol=LOSSY
    )
    with pytest.raises(DatasetError, match=r"ramp.mp4: video has 6 frames, but frame 6 \(0-based\) was asked for"):
        read_video(path, np.array([1, 6]), size=4)
    with pytest.raises(DatasetError, match="2 frames but 1 crop boxes"):
        read_video(path, np.array([0, 1]), size=4, boxes=np.zeros((1, 4)))
    with pytest.raises(DatasetError, match="absent.mp4: video file not found"):
        read_video(tmp_path / "absent.mp4", np.array([0]), size=4)
    (tmp_path / "text.mp4").write_text("not a video\n")
    with pytest.raises(DatasetError, match="text.mp4: not a readable video file"):
        read_video(tmp_path / "text.mp4", np.array([0]), size=4)


def test_without_pyav_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_video(tmp_path / "ramp.mp4", grey_levels(2))
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(
        DatasetError, match=r"ramp.mp4: reading video files needs PyAV.*pip install 'nlrd-search\[video\]'"
    ):
        read_video(path, np.array([0]), size=4)


def write_h36m_videos(root: Path, frames: int, camera: str = "54138969") -> Path:
    """Human3.6M's video layout for S9 'Directions 1': ``videos/S9/Videos/Directions 1.<camera>.mp4``."""
    videos = root / "videos"
    write_video(videos / "S9" / "Videos" / f"Directions 1.{camera}.mp4", grey_levels(frames))
    return videos


def test_h36m_clips_from_videos_match_the_extracted_frames(tmp_path: Path) -> None:
    npz, frames_root = write_h36m(tmp_path / "h36m", {"S9": {"Directions 1": 12}})
    videos = write_h36m_videos(tmp_path / "h36m", frames=13)  # a video may run a frame or two past its poses
    kwargs = {"subjects": ("S9",), "actions": ["Directions 1"], "clip_len": 3, "fps": 25.0, "image_size": 8}
    from_video = load_h36m_clips(npz, None, videos_root=videos, **kwargs)
    from_frames = load_h36m_clips(npz, frames_root, **kwargs)
    assert from_video.frames.shape == from_frames.frames.shape == (2, 3, 3, 8, 8)
    assert torch.equal(from_video.poses, from_frames.poses)
    head_rise = from_video.poses[..., skeleton.JOINT_NAMES.index("head_top"), 2] - skeleton.rest_pose_mm()[8, 2]
    assert torch.allclose(
        from_video.frames.float().mean(dim=(2, 3, 4)), 10 * head_rise, atol=LOSSY
    )  # frame t: level 10 t
    with pytest.raises(DatasetError, match="exactly one of frames_root"):
        load_h36m_clips(npz, frames_root, videos_root=videos, **kwargs)
    with pytest.raises(DatasetError, match=r"videos not found: .*Directions 1.55011271.mp4"):
        load_h36m_clips(npz, None, videos_root=videos, cameras=["55011271"], **kwargs)
    short = write_h36m_videos(tmp_path / "short", frames=8)
    with pytest.raises(DatasetError, match=r"video has 8 frames, but frame 10 \(0-based\) was asked for"):
        load_h36m_clips(npz, None, videos_root=short, **kwargs)


def test_h36m_source_checks_videos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    npz, frames_root = write_h36m(tmp_path / "h36m", {"S9": {"Directions 1": 12}})
    videos = write_h36m_videos(tmp_path / "h36m", frames=12)
    source = H36MSource(npz=str(npz), subjects=("S9",), videos=str(videos))
    source.check(clips=True)
    assert any(p.suffix == ".mp4" for p in source.files())  # the cache key follows the videos
    assert source.clips(clip_len=3, fps=25.0, image_size=8, max_clips=1).frames.shape == (1, 3, 3, 8, 8)

    def key_and_message(**changes: object) -> tuple[str, str]:
        fields = {"npz": str(npz), "subjects": ("S9",), "videos": str(videos), **changes}
        with pytest.raises(DataConfigError) as info:
            H36MSource(**fields).check(clips=True)
        return info.value.key, str(info.value)

    assert key_and_message(frames=str(frames_root)) == (
        "videos",
        "give frames (extracted JPEG frames) or videos, not both",
    )
    key, message = key_and_message(videos=str(tmp_path / "nowhere"))
    assert key == "videos" and "folder not found (expected <subject>/Videos/*.mp4 inside)" in message
    key, message = key_and_message(cameras=("55011271",))
    assert key == "videos" and "Directions 1.55011271.mp4" in message
    monkeypatch.setitem(sys.modules, "av", None)
    key, message = key_and_message()
    assert key == "videos" and "needs PyAV" in message and "video frames" in message

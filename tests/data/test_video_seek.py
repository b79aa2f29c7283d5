"""Clips decoded by seeking equal a full decode, frame for frame, on every real video we have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATA, shared_path

from sparselabel.data.video import IMAGE_SUFFIXES, FrameCache, _seek_index, read_video
from sparselabel.errors import VideoDecodeError


def shared_videos() -> list[Path]:
    """Every video file and frame folder under ../shared/data (mp4, avi, gif, jpg and png folders)."""
    root = SHARED_DATA
    if not root.is_dir():
        return []  # the tests below then skip (test_every_shared_video_is_found says why)
    files = [p for p in root.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".gif")]
    folders = {p.parent for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
               and "Annotations" not in p.parts and "puppet_mask" not in p.parts}
    return sorted(files) + sorted(folders)


def clips(num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Clips as training and inference cut them, plus the edges and an out-of-order request."""
    starts = [0, num_frames - 15, *rng.integers(0, num_frames - 15, size=6)]
    out = [np.minimum(s + 2 * np.arange(8), num_frames - 1) for s in starts]
    out.append(np.array([num_frames - 1, 0, num_frames // 2, num_frames // 2]))
    return out


def test_every_shared_video_is_found():
    shared_path()
    kinds = {p.suffix.lower() or "folder" for p in shared_videos()}
    assert {".mp4", ".avi", ".gif", "folder"} <= kinds


@pytest.mark.parametrize("path", shared_videos(), ids=lambda p: p.name)
def test_seek_decoded_clips_equal_full_decode(path: Path):
    full = read_video(path)
    rng = np.random.default_rng(len(full))
    for clip in clips(len(full), rng):
        cache = FrameCache()  # cold: every clip decoded on its own, from its keyframe
        got = cache.frames(path, clip, len(full))
        np.testing.assert_array_equal(got, full[clip], err_msg=f"{path.name} frames {clip.tolist()}")
    warm = FrameCache(max_bytes=full[0].nbytes * 20)  # small: most frames are evicted and decoded again
    for clip in clips(len(full), rng):
        np.testing.assert_array_equal(warm.frames(path, clip, len(full)), full[clip])
    assert warm.nbytes <= full[0].nbytes * 20


def test_mp4_clips_really_seek(shared_data):
    """The UCF mp4s have keyframes every few frames: a late clip starts decoding at one of them."""
    path = shared_data / "ucf24" / "videos" / "v_Biking_g01_c01.mp4"
    pts, keyframes = _seek_index(str(path), 151)
    assert len(pts) == 151 and len(keyframes) > 5 and keyframes[0] == 0
    assert _seek_index(str(path), 150) is None  # a frame count that disagrees: decode from the start


def test_a_frame_past_the_end_is_an_error(shared_data):
    path = shared_data / "ucf24" / "videos" / "v_Biking_g01_c01.mp4"
    with pytest.raises(VideoDecodeError, match="frame 151"):
        FrameCache().frames(path, [150, 151], 151)
    with pytest.raises(VideoDecodeError, match="not decoded|truncated"):
        FrameCache().frames(path, [160], 170)  # the workspace says 170 frames, the file has 151

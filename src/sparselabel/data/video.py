"""Decoding and encoding frames with PyAV, and a bounded cache of decoded videos.

A "video" on disk is either a container file (mp4, avi, mkv, gif, ...) or a
folder of numbered jpg/png frames (J-HMDB, DAVIS). Both decode to uint8 RGB
arrays of shape (T, H, W, 3).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sparselabel.errors import VideoDecodeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _decode_file(path: Path) -> list[np.ndarray]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream", path)
            stream = container.streams.video[0]
            return [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise VideoDecodeError(f"cannot decode: {reason} (corrupt, truncated or not a video)", path) from exc


def read_video(path: str | Path, expected_frames: int | None = None) -> np.ndarray:
    """All frames of a video file or frame folder as uint8 (T, H, W, 3).

    With ``expected_frames``, a video that decodes to fewer frames (a truncated
    file) is an error rather than a silently shorter clip.
    """
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError("no such file or folder", path)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise VideoDecodeError("folder holds no jpg/png frames", path)
        frames = [_single_image(f) for f in files]
    else:
        frames = _decode_file(path)
    if not frames:
        raise VideoDecodeError("decoded zero frames", path)
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise VideoDecodeError(f"frames differ in size: {sorted(shapes)}", path)
    if expected_frames is not None and len(frames) < expected_frames:
        raise VideoDecodeError(
            f"decoded {len(frames)} frames, expected {expected_frames} (truncated?)", path
        )
    return np.stack(frames)


def _single_image(path: Path) -> np.ndarray:
    frames = _decode_file(path)
    if len(frames) != 1:
        raise VideoDecodeError(f"expected one image, decoded {len(frames)} frames", path)
    return frames[0]


def probe(path: str | Path, default_fps: float = 25.0) -> VideoInfo:
    """Frame count (by decoding, which is exact where headers are not), fps and size."""
    path = Path(path)
    frames = read_video(path)
    fps = default_fps
    if path.is_file():
        try:
            with av.open(str(path)) as container:
                rate = container.streams.video[0].average_rate
                fps = float(rate) if rate else default_fps
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"cannot read header ({exc})", path) from exc
    return VideoInfo(len(frames), fps, frames.shape[2], frames.shape[1])


def write_video(
    path: str | Path, frames: np.ndarray, fps: float = 25.0, codec: str = "libx264", crf: int = 18
) -> None:
    """Encode uint8 (T, H, W, 3) frames. Single-threaded so the bytes depend only on the input."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        container.metadata.clear()
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.thread_count = 1
        if codec == "libx264":
            stream.pix_fmt = "yuv444p"
            # mb-tree rate control makes libx264 output vary between runs on small frames.
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
        elif codec == "ffv1":
            stream.pix_fmt = "bgr0"
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


class FrameCache:
    """Decoded videos kept in memory, least recently used evicted past ``max_bytes``."""

    def __init__(self, max_bytes: int = 2 << 30):
        self.max_bytes = max_bytes
        self._videos: OrderedDict[tuple[str, int | None], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def video(self, path: str | Path, expected_frames: int | None = None) -> np.ndarray:
        key = (str(path), expected_frames)
        with self._lock:
            if key in self._videos:
                self._videos.move_to_end(key)
                return self._videos[key]
        frames = read_video(path, expected_frames)
        frames.setflags(write=False)
        with self._lock:
            self._videos[key] = frames
            self._bytes += frames.nbytes
            while self._bytes > self.max_bytes and len(self._videos) > 1:
                _, old = self._videos.popitem(last=False)
                self._bytes -= old.nbytes
        return frames

    def frames(
        self, path: str | Path, indices: Sequence[int] | np.ndarray, expected_frames: int | None = None
    ) -> np.ndarray:
        return self.video(path, expected_frames)[np.asarray(indices, dtype=np.int64)]

    def clear(self) -> None:
        with self._lock:
            self._videos.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes


DEFAULT_CACHE = FrameCache()

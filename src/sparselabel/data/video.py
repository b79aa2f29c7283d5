"""Decoding and encoding frames with PyAV, and a bounded cache of decoded frames.

A "video" on disk is either a container file (mp4, avi, mkv, gif, ...) or a
folder of numbered jpg/png frames (J-HMDB, DAVIS). Both decode to uint8 RGB
frames of shape (H, W, 3). Nothing here holds a whole video unless asked to
(``read_video``, for tests): whole-video passes stream one frame at a time
(``checked_frames``) and clips are decoded from the keyframe before them
(``decode_range``), through a cache bounded in bytes (``FrameCache``).
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
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


def _av_frames(path: Path) -> Iterator[av.VideoFrame]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream", path)
            yield from container.decode(container.streams.video[0])
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _decode_error(exc, path) from exc


def _container_frames(path: Path) -> Iterator[np.ndarray]:
    for frame in _av_frames(path):
        yield frame.to_ndarray(format="rgb24")


def _decode_error(exc: Exception, path: Path) -> VideoDecodeError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return VideoDecodeError(f"cannot decode: {reason} (corrupt, truncated or not a video)", path)


def iter_frames(path: str | Path, decode_only: bool = False) -> Iterator[np.ndarray]:
    """The frames of a video file or frame folder, decoded one at a time (uint8 (H, W, 3)).

    ``decode_only``: a video file's frames are decoded but not converted to RGB, and an
    empty (H, W, 3) array stands for each (enough to count frames and check sizes, faster).
    """
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError("no such file or folder", path)
    if not path.is_dir():
        if decode_only:
            for frame in _av_frames(path):
                yield np.empty((frame.height, frame.width, 3), np.uint8)
            return
        yield from _container_frames(path)
        return
    files = frame_files(path)
    if not files:
        raise VideoDecodeError("folder holds no jpg/png frames", path)
    for file in files:
        yield _single_image(file)


def checked_frames(path: str | Path, expected_frames: int | None = None, decode_only: bool = False
                   ) -> Iterator[np.ndarray]:
    """``iter_frames``, refusing frames of differing sizes, zero frames, and (with
    ``expected_frames``) fewer frames than expected: a truncated file is an error rather
    than a silently shorter clip."""
    shape, count = None, 0
    for frame in iter_frames(path, decode_only):
        if shape is not None and frame.shape != shape:
            raise VideoDecodeError(f"frames differ in size: {sorted({shape, frame.shape})}", path)
        shape, count = frame.shape, count + 1
        yield frame
    if count == 0:
        raise VideoDecodeError("decoded zero frames", path)
    if expected_frames is not None and count < expected_frames:
        raise VideoDecodeError(f"decoded {count} frames, expected {expected_frames} (truncated?)", path)


def read_video(path: str | Path, expected_frames: int | None = None) -> np.ndarray:
    """All frames of a video file or frame folder as uint8 (T, H, W, 3) (see ``checked_frames``).

    For tests and small inputs: everything else reads clips (``FrameCache.frames``).
    """
    return np.stack(list(checked_frames(path, expected_frames)))


def check_video(path: str | Path, expected_frames: int | None = None) -> tuple[int, int, int]:
    """Decode a whole video one frame at a time, holding one frame: (frames, width, height)."""
    count, shape = 0, (0, 0, 3)
    for frame in checked_frames(path, expected_frames, decode_only=True):
        count, shape = count + 1, frame.shape
    return count, shape[1], shape[0]


def _single_image(path: Path) -> np.ndarray:
    frames = list(_container_frames(path))
    if len(frames) != 1:
        raise VideoDecodeError(f"expected one image, decoded {len(frames)} frames", path)
    return frames[0]


def probe(path: str | Path, default_fps: float = 25.0) -> VideoInfo:
    """Frame count (by decoding, which is exact where headers are not), fps and size."""
    path = Path(path)
    num_frames, width, height = check_video(path)
    fps = default_fps
    if path.is_file():
        try:
            with av.open(str(path)) as container:
                rate = container.streams.video[0].average_rate
                fps = float(rate) if rate else default_fps
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"cannot read header ({exc})", path) from exc
    return VideoInfo(num_frames, fps, width, height)


# ---------------------------------------------------------------------------
# Clips: frames by index, decoded from the keyframe before them
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _seek_index(path: str, expected_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(pts of frame 0, 1, ... in presentation order, indices of the keyframes), read by
    demuxing packets without decoding; None where that cannot be trusted to give exact
    frame indices (packets without pts, repeated pts, or not one packet per decoded frame,
    which ``expected_frames``, counted by a full decode at init, tells)."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size > 0]
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
    if len(packets) != expected_frames or any(pts is None for pts, _ in packets):
        return None
    packets.sort()
    pts = np.array([p for p, _ in packets], dtype=np.int64)
    if np.unique(pts).size != pts.size:
        return None
    return pts, np.flatnonzero([key for _, key in packets])


def decode_range(path: str | Path, first: int, last: int, expected_frames: int | None = None
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for frames ``start`` .. ``last`` of a video, ``start`` <= ``first``.

    A frame folder reads just those files. A container file seeks to the last keyframe
    at or before ``first`` and decodes forward (frames are then numbered by their pts in
    the packet index, ``_seek_index``); where its packets cannot be trusted, it decodes
    from the start and counts, as a full decode does. Either way frame i is the i-th
    frame of a full decode (tests/data/test_video_seek.py checks every shared video).
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if last >= len(files):
            raise VideoDecodeError(f"frame {last} asked, folder holds {len(files)} frames", path)
        for index in range(first, last + 1):
            yield index, _single_image(files[index])
        return
    index = _seek_index(str(path), expected_frames) if expected_frames is not None and path.is_file() else None
    if index is None:
        yield from _counted(path, last, expected_frames)
        return
    yield from _seeked(path, index, first, last)


def _counted(path: Path, last: int, expected_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    count = 0
    for count, frame in enumerate(checked_frames(path)):
        yield count, frame
        if count == last:
            return
    raise VideoDecodeError(f"decoded {count + 1} frames, expected {expected_frames or last + 1} (truncated?)", path)


def _seeked(path: Path, index: tuple[np.ndarray, np.ndarray], first: int, last: int
            ) -> Iterator[tuple[int, np.ndarray]]:
    pts, keyframes = index
    before = np.searchsorted(keyframes, first, side="right") - 1
    start = int(keyframes[before]) if before >= 0 else 0
    number = {int(p): i for i, p in enumerate(pts[start : last + 1], start)}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start > 0:
                container.seek(int(pts[start]), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                i = number.get(frame.pts) if frame.pts is not None else None
                if i is not None:  # frames before ``start`` (an earlier keyframe, leading B-frames) are skipped
                    yield i, frame.to_ndarray(format="rgb24")
                    if i == last:
                        return
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _decode_error(exc, path) from exc
    raise VideoDecodeError(f"frame {last} not decoded (truncated?)", path)


def write_video(
    path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float = 25.0, codec: str = "libx264",
    crf: int = 18, pix_fmt: str = "yuv444p", faststart: bool = False,
) -> None:
    """Encode uint8 (H, W, 3) frames: an array (T, H, W, 3) or any iterable of frames (then
    one frame is in memory at a time). Single-threaded so the bytes depend only on the input.

    libx264 writes ``pix_fmt`` (4:4:4 by default: datasets keep their colours; browsers need
    ``write_playable_video``); ``faststart`` puts the index first, so a browser can start
    playing before the whole file has arrived."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = np.asarray(first).shape[:2]
    options = {"movflags": "+faststart"} if faststart else None
    with av.open(str(path), mode="w", options=options) as container:
        container.metadata.clear()
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.thread_count = 1
        if codec == "libx264":
            stream.pix_fmt = pix_fmt
            # mb-tree rate control makes libx264 output vary between runs on small frames.
            stream.options = {"crf": str(crf), "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
        elif codec == "ffv1":
            stream.pix_fmt = "bgr0"
        for array in itertools.chain([first], frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(array, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_playable_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 25.0, crf: int = 18
                         ) -> tuple[int, int]:
    """Encode frames as web browsers play them: H.264 in MP4 with 4:2:0 chroma (yuv420p), same
    frames, same rate. 4:2:0 needs an even width and height, so an odd one gets one more pixel
    on the right / bottom, repeating the edge: pixels of the original frame keep their
    coordinates. Returns the (width, height) written."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = np.asarray(first).shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    padded = (np.pad(np.asarray(f), pad, mode="edge") for f in itertools.chain([first], frames))
    write_video(path, padded, fps=fps, crf=crf, pix_fmt="yuv420p", faststart=True)
    return width + width % 2, height + height % 2


SEEK_GAP = 32  # frames asked this far apart are decoded as separate runs, each from its keyframe


def _runs(indices: list[int], gap: int) -> list[tuple[int, int]]:
    """Sorted ``indices`` as (first, last) runs, split where two are more than ``gap`` apart."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and i - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


class FrameCache:
    """Decoded frames kept in memory, least recently used evicted past ``max_bytes``.

    It holds frames, never whole videos: a clip is decoded from the keyframe before it
    (``decode_range``), and every frame decoded on the way is kept, so the next window
    of the same video is usually served from memory.
    """

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self._frames: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def frames(self, path: str | Path, indices: Sequence[int] | np.ndarray, expected_frames: int | None = None
               ) -> np.ndarray:
        """Frames ``indices`` (any order, repeats allowed) of a video as uint8 (N, H, W, 3)."""
        key, wanted = str(path), [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        if expected_frames is not None and wanted and max(wanted) >= expected_frames:
            raise VideoDecodeError(f"frame {max(wanted)} asked, the video has {expected_frames}", path)
        found = self._lookup(key, wanted)
        for first, last in _runs(sorted(set(wanted) - set(found)), 1 if Path(path).is_dir() else SEEK_GAP):
            for i, frame in decode_range(path, first, last, expected_frames):
                frame.setflags(write=False)
                found[i] = frame
                self._store((key, i), frame)
        out = [found[i] for i in wanted]
        if len({f.shape for f in out}) > 1:
            raise VideoDecodeError(f"frames differ in size: {sorted({f.shape for f in out})}", path)
        return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)

    def _lookup(self, key: str, wanted: list[int]) -> dict[int, np.ndarray]:
        found = {}
        with self._lock:
            for i in set(wanted):
                frame = self._frames.get((key, i))
                if frame is not None:
                    self._frames.move_to_end((key, i))
                    found[i] = frame
        return found

    def _store(self, key: tuple[str, int], frame: np.ndarray) -> None:
        with self._lock:
            if key in self._frames:
                return
            self._frames[key] = frame
            self._bytes += frame.nbytes
            while self._bytes > self.max_bytes and len(self._frames) > 1:
                _, old = self._frames.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes


DEFAULT_CACHE = FrameCache()

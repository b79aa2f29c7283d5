"""Helpers shared by the dataset adapters: finding videos, probing them, boxes and masks.

Kept here so that each adapter module reads as "parse this format", not as a
re-implementation of the same file handling.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from sparselabel.data.tubes import boxes_from_masks
from sparselabel.data.video import VideoInfo, frame_files, probe
from sparselabel.errors import AnnotationError, VideoDecodeError

log = logging.getLogger("sparselabel.data")

# Container formats we look for when a dataset names a video without a suffix,
# in order of preference when one video exists in several formats.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif")

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Threads for probing: PyAV releases the GIL while decoding, so threads scale."""
    return max(1, min(8, os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool; the first exception propagates."""
    items = list(items)
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


class VideoIndex:
    """Finds the video of a dataset key under a root folder, listing each folder once.

    A key ``Class/v_name`` matches ``root/v_name.<ext>``, ``root/Class/v_name.<ext>``,
    or a frame folder ``root/v_name/`` / ``root/Class/v_name/`` (the ``rgb-images``
    layout), so the flat UCF101 download and the per-class layouts both work.
    """

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[Path, dict[str, list[Path]]] = {}

    def _listing(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._listings:
            entries: dict[str, list[Path]] = {}
            if folder.is_dir():
                for p in folder.iterdir():
                    name = p.name if p.is_dir() else p.stem
                    if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES:
                        entries.setdefault(name, []).append(p)
            self._listings[folder] = entries
        return self._listings[folder]

    def find(self, key: str) -> Path | None:
        """The video file or frame folder of ``key``, or None when it is not there."""
        parts = Path(key).parts
        name = parts[-1]
        for folder in (self.root.joinpath(*parts[:-1]), self.root):
            candidates = self._listing(folder).get(name, [])
            files = sorted((p for p in candidates if p.is_file()), key=_suffix_rank)
            if files:
                return files[0]
            if any(p.is_dir() for p in candidates) and frame_files(folder / name):
                return folder / name
        return None


def _suffix_rank(path: Path) -> int:
    suffix = path.suffix.lower()
    return VIDEO_SUFFIXES.index(suffix) if suffix in VIDEO_SUFFIXES else len(VIDEO_SUFFIXES)


def probe_all(paths: list[Path], workers: int | None = None, folder_fps: float = 25.0) -> list[VideoInfo]:
    """Exact frame count, fps and size of each video file (decoded once, on a thread pool).

    Frame folders are counted from their file list instead of decoded (see
    :func:`folder_info`); they have no fps of their own, so ``folder_fps`` is used.
    """
    return parallel_map(lambda p: folder_info(p, folder_fps) if p.is_dir() else probe(p), paths, workers)


def folder_info(folder: Path, fps: float) -> VideoInfo:
    """Frame count and size of a frame folder from the file list and the first image's header.

    Decoding every frame of a large image dataset just to count it would take
    minutes; frame sizes are checked again when the frames are decoded.
    """
    if not folder.is_dir():
        raise VideoDecodeError("frame folder not found", folder)
    files = frame_files(folder)
    if not files:
        raise VideoDecodeError("folder holds no jpg/png frames", folder)
    width, height = image_size(files[0])
    return VideoInfo(len(files), fps, width, height)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) read from an image header, VideoDecodeError if it is not an image."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise VideoDecodeError(f"cannot read image ({exc})", path) from exc


def check_frame_count(info: VideoInfo, expected: int, path: Path) -> None:
    """A video shorter than its annotation is an error; a longer one only a warning."""
    if info.num_frames < expected:
        raise VideoDecodeError(
            f"decoded {info.num_frames} frames but the annotation has {expected} (truncated?)", path
        )
    if info.num_frames > expected:
        log.warning("%s: decoded %d frames, annotation has %d; using the first %d",
                    path, info.num_frames, expected, expected)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int]:
    """Clip (n, 4) x1,y1,x2,y2 boxes to the frame; returns the boxes and how many changed.

    Annotators sometimes drag a box a pixel past the border; that is noise, not
    an error, but it is counted so that a file where it happens a lot is noticed.
    """
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    changed = int(np.any(clipped != boxes, axis=1).sum())
    return clipped, changed


def report_clipped(count: int, total: int, source: Path) -> None:
    """Warn (visibly, not only in a log) when boxes had to be clipped to the frame."""
    if count:
        message = f"{source}: clipped {count} of {total} boxes that extended past the frame border"
        warnings.warn(message, stacklevel=3)
        log.warning(message)


def read_split_names(path: Path) -> list[str]:
    """Names listed one per line in a split file (blank lines and comments skipped)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AnnotationError(f"cannot read split file ({exc.strerror})", path) from exc
    return [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]


def mask_tube_parts(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, boxes, masks) of the non-empty frames of a (T, H, W) mask stack."""
    keep, boxes = boxes_from_masks(masks)
    return np.flatnonzero(keep), boxes, masks[keep]

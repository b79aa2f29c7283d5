"""The ACT ``*-GT.pkl`` ground truth (Kalogeiton et al.), read by most action-detection code.

The pickle is a dict::

    labels        [class names]
    gttubes       {video: {label: [ndarray (n, 5): frame (1-BASED), x1, y1, x2, y2]}}
    nframes       {video: int}
    train_videos  [[videos of split 1], [split 2], ...]
    test_videos   [[...], ...]
    resolution    {video: (height, width)}

Coordinates are in the resolution of the frames (for UCF101-24 that is already
the video resolution, unlike the 320x240 of the corrected UCF pickle). Frames
live under ``frames_root`` as ``<video>/`` frame folders (ACT's ``Frames/``) or
``<video>.<ext>`` video files; only videos found there are loaded.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sparselabel.data.dataset import Dataset, Video, register_loader
from sparselabel.data.datasets.common import (
    VideoIndex,
    check_frame_count,
    clip_boxes,
    log,
    probe_all,
    report_clipped,
)
from sparselabel.data.safe_pickle import as_int, safe_load
from sparselabel.data.tubes import Tube
from sparselabel.data.video import VideoInfo
from sparselabel.errors import AnnotationError

KEYS = ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution")
DEFAULT_FRAME_FOLDERS = ("Frames", "rgb-images", "videos")


@register_loader("act-pkl")
def load_act_pkl(
    path: Path,
    frames_root: str | Path | None = None,
    split: int = 0,
    check_videos: bool = True,
    fps: float = 25.0,
    workers: int | None = None,
    name: str | None = None,
) -> Dataset:
    """Read an ACT ground-truth pickle; ``split`` is 0-based (0 = the official split 1).

    With ``check_videos`` every video is decoded once to check that it has at
    least ``nframes`` frames of size ``resolution`` and to read its fps; without
    it the pickle is trusted and ``fps`` is used.
    """
    path = Path(path)
    doc = _parse(safe_load(path), path)
    root = _frames_root(path, frames_root)
    index = VideoIndex(root)
    found = {v: p for v in sorted(doc["nframes"]) if (p := index.find(v)) is not None}
    if not found:
        raise AnnotationError(f"none of its {len(doc['nframes'])} videos is under {root}", path)
    log.info("act-pkl: %d of %d videos found under %s", len(found), len(doc["nframes"]), root)
    infos = probe_all(list(found.values()), workers, fps) if check_videos else [None] * len(found)
    videos = {v: _video(v, p, info, doc, fps, path) for (v, p), info in zip(found.items(), infos, strict=True)}
    tubes, clipped, total = _tubes(doc["gttubes"], videos, path)
    report_clipped(clipped, total, path)
    splits = {
        "train": [v for v in _split_list(doc, "train_videos", split, path) if v in videos],
        "test": [v for v in _split_list(doc, "test_videos", split, path) if v in videos],
    }
    dataset_name = name or path.stem.removesuffix("-GT")
    return Dataset(dataset_name, doc["labels"], videos, tubes, splits, source=path)


def _parse(doc: Any, path: Path) -> dict[str, Any]:
    """Check the top-level layout and normalise names to str."""
    if not isinstance(doc, dict) or any(k not in doc for k in KEYS):
        have = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise AnnotationError(f"not an ACT GT pickle: expected keys {list(KEYS)}, found {have}", path)
    try:
        nframes = {str(v): as_int(n) for v, n in doc["nframes"].items()}
        resolution = {str(v): (as_int(hw[0]), as_int(hw[1])) for v, hw in doc["resolution"].items()}
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        raise AnnotationError(f"malformed 'nframes' or 'resolution' ({exc})", path) from exc
    if not isinstance(doc["gttubes"], dict):
        raise AnnotationError("'gttubes' is not a dict", path)
    unknown = sorted(set(map(str, doc["gttubes"])) - set(nframes))
    if unknown:
        raise AnnotationError(f"'gttubes' has videos missing from 'nframes', e.g. {unknown[0]!r}", path)
    missing = sorted(set(nframes) - set(resolution))
    if missing:
        raise AnnotationError(f"'resolution' lacks video {missing[0]!r}", path)
    # Class names as stored: Dataset.validate refuses ones that are not strings, empty or repeated.
    return {**doc, "labels": list(doc["labels"]), "nframes": nframes, "resolution": resolution}


def _frames_root(path: Path, frames_root: str | Path | None) -> Path:
    if frames_root is not None:
        root = Path(frames_root)
    else:
        root = next((path.parent / d for d in DEFAULT_FRAME_FOLDERS if (path.parent / d).is_dir()), path.parent / "Frames")
    if not root.is_dir():
        raise AnnotationError(f"frames folder {root} not found (pass frames_root=...)", path)
    return root


def _video(vid: str, video_path: Path, info: VideoInfo | None, doc: dict, fps: float, path: Path) -> Video:
    """A Video sized by the pickle, checked against the decoded video when ``info`` is given."""
    nframes, (height, width) = doc["nframes"][vid], doc["resolution"][vid]
    if info is not None:
        check_frame_count(info, nframes, video_path)
        if (info.width, info.height) != (width, height):
            raise AnnotationError(
                f"video {vid!r}: resolution is {width}x{height} in the pickle but {video_path} "
                f"decodes to {info.width}x{info.height}",
                path,
            )
        fps = info.fps
    return Video(vid, video_path, nframes, fps, width, height, label=-1)


def _tubes(gttubes: dict, videos: dict[str, Video], path: Path) -> tuple[dict[str, list[Tube]], int, int]:
    """Tubes of the loaded videos (frames converted to 0-based); video labels from their tubes."""
    tubes: dict[str, list[Tube]] = {}
    clipped = total = 0
    for vid, per_label in gttubes.items():
        vid = str(vid)
        if vid not in videos:
            continue
        video = videos[vid]
        tubes[vid] = []
        for label in per_label:
            if not isinstance(label, int | np.integer) or isinstance(label, bool):
                raise AnnotationError(f"video {vid!r}: tube label {label!r} is not a class index (an integer)", path)
        for label in sorted(per_label, key=as_int):
            for k, rows in enumerate(per_label[label]):
                what = f"video {vid!r} label {label} tube {k}"
                frames, boxes = _rows(rows, what, path)
                boxes, n = clip_boxes(boxes, video.width, video.height)
                tubes[vid].append(Tube(as_int(label), frames, boxes))
                clipped, total = clipped + n, total + len(frames)
        labels = {t.label for t in tubes[vid]}
        if len(labels) == 1:  # ACT videos have one action class; keep -1 if they do not
            videos[vid] = replace(video, label=labels.pop())
    return tubes, clipped, total


def _rows(rows: Any, what: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """0-based frames and boxes from (n, 5) rows of frame (1-based), x1, y1, x2, y2."""
    arr = np.asarray(rows)
    if arr.ndim != 2 or arr.shape[1] != 5 or len(arr) == 0 or arr.dtype.kind not in "uif":
        raise AnnotationError(f"{what}: expected a numeric (n, 5) array, got {arr.dtype} {arr.shape}", path)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():  # NaN or inf: no box to clip, the annotation is broken
        raise AnnotationError(f"{what}: holds NaN or infinite values", path)
    frames = arr[:, 0]
    if not np.all(frames == np.round(frames)) or frames.min() < 1:
        raise AnnotationError(f"{what}: frame numbers must be integers >= 1 (they are 1-based)", path)
    return frames.astype(np.int64) - 1, arr[:, 1:]


def _split_list(doc: dict, key: str, split: int, path: Path) -> list[str]:
    lists = doc[key]
    if not isinstance(lists, list | tuple) or not 0 <= split < len(lists):
        n = len(lists) if isinstance(lists, list | tuple) else 0
        raise AnnotationError(f"'{key}' has {n} splits; split={split} (0-based) is not one of them", path)
    return [str(v) for v in lists[split]]


def write_act_pkl(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` as an ACT ``*-GT.pkl`` (one split: its 'train' and 'test'), atomically.

    Only tubes with boxes are written (the format has no masks); frame numbers
    become 1-based as ACT expects. A plain pickle of dicts, lists and float64
    arrays, so :func:`sparselabel.data.safe_pickle.safe_load` reads it back.
    """
    path = Path(path)
    doc = {
        "labels": list(dataset.classes),
        "gttubes": dataset.act_gttubes(),
        "nframes": {vid: int(v.num_frames) for vid, v in dataset.videos.items()},
        "train_videos": [list(dataset.splits.get("train", []))],
        "test_videos": [list(dataset.splits.get("test", []))],
        "resolution": {vid: (int(v.height), int(v.width)) for vid, v in dataset.videos.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(doc, f, protocol=4)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

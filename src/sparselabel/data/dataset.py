"""Video and Dataset, and the registry of dataset loaders.

Frame indices are 0-based everywhere inside sparselabel; formats that count
from 1 (ACT ``gttubes``) are converted at the edges.
"""

from __future__ import annotations

import glob
import math
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparselabel.data.tubes import Tube
from sparselabel.data.video import DEFAULT_CACHE, FrameCache, decode_range
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.registry import Registry


@dataclass(frozen=True)
class Video:
    """One video of the pool: where its frames are and what they look like."""

    id: str
    path: Path  # a video file or a folder of frames
    num_frames: int
    fps: float
    width: int
    height: int
    label: int  # video-level class index, -1 when unknown

    def frames(self, indices: Iterable[int] | None = None, cache: FrameCache = DEFAULT_CACHE) -> np.ndarray:
        """Decoded uint8 RGB frames (N, H, W, 3) at ``indices``; all of them when None
        (a whole video in memory: for small videos and tests; clips ask for their frames)."""
        wanted = np.arange(self.num_frames) if indices is None else np.asarray(list(indices), dtype=np.int64)
        return cache.frames(self.path, wanted, self.num_frames)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame in order, one at a time (a whole-video pass in the memory of one frame)."""
        for _, frame in decode_range(self.path, 0, self.num_frames - 1, self.num_frames):
            yield frame


@dataclass
class Dataset:
    """Videos with their actor tubes, class names and train/test split."""

    name: str
    classes: list[str]
    videos: dict[str, Video]
    tubes: dict[str, list[Tube]] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    source: Path | None = None  # the annotation file or folder it was read from

    def split(self, name: str) -> list[str]:
        """Video ids of split ``name`` ('train', 'test' or 'all')."""
        if name == "all":
            return list(self.videos)
        if name not in self.splits:
            raise SparseLabelError(f"dataset {self.name!r} has no split {name!r} (has {sorted(self.splits)})")
        return list(self.splits[name])

    def actors_at(self, video_id: str, frame: int) -> list[tuple[int, Tube]]:
        """(tube index, tube) of every actor of ``video_id`` present in ``frame``."""
        return [(k, t) for k, t in enumerate(self.tubes.get(video_id, [])) if t.index_of(frame) is not None]

    def num_frames(self, video_ids: Iterable[str] | None = None) -> int:
        ids = self.videos if video_ids is None else video_ids
        return sum(self.videos[v].num_frames for v in ids)

    def act_gttubes(self, video_ids: Iterable[str] | None = None) -> dict[str, dict[int, list[np.ndarray]]]:
        """Ground truth in the ACT layout: {video: {label: [(n, 5) rows frame(1-based), x1, y1, x2, y2]}}."""
        out: dict[str, dict[int, list[np.ndarray]]] = {}
        for vid in self.videos if video_ids is None else video_ids:
            per_label: dict[int, list[np.ndarray]] = {}
            for tube in self.tubes.get(vid, []):
                if tube.boxes is None:
                    continue
                rows = np.column_stack([tube.frames + 1, tube.boxes]).astype(np.float64)
                per_label.setdefault(tube.label, []).append(rows)
            out[vid] = per_label
        return out

    def validate(self) -> None:
        """Class names usable, and every tube inside its video: frames in range, boxes inside
        the frame, masks of frame size."""
        where = self.source
        check_class_names(self.classes, where)
        for video in self.videos.values():
            check_video_fields(video, len(self.classes), where)
        for vid, tubes in self.tubes.items():
            if vid not in self.videos:
                raise AnnotationError(f"tubes for unknown video {vid!r}", where)
            video = self.videos[vid]
            for k, tube in enumerate(tubes):
                check_tube(tube, video, f"video {vid!r} tube {k}", where, len(self.classes))


def check_class_names(classes: object, where: Path | None) -> None:
    """A non-empty list of distinct, non-empty strings without control characters (a newline
    inside one would make it two names wherever names are listed one per line)."""
    if not isinstance(classes, list | tuple) or not classes:
        raise AnnotationError(f"classes must be a non-empty list of names, got {type(classes).__name__}", where)
    for k, name in enumerate(classes):
        if not isinstance(name, str):
            raise AnnotationError(f"class {k} is {type(name).__name__} {name!r}, not a name (a string)", where)
        if not name.strip():
            raise AnnotationError(f"class {k} has an empty name", where)
        if any(unicodedata.category(c).startswith("C") for c in name):
            raise AnnotationError(f"class {k} {name!r} holds a control character (newline, tab, NUL...)", where)
    repeated = sorted({n for n in classes if classes.count(n) > 1})
    if repeated:
        raise AnnotationError(f"class name {repeated[0]!r} is listed twice", where)


MAX_ID_LENGTH = 200  # ids become (escaped) file names; most file systems stop at 255 bytes


def check_video_fields(video: Video, num_classes: int, where: Path | None) -> None:
    """A usable id, a positive length, size and frame rate, and a label among the classes
    (or -1, unknown)."""
    vid = video.id
    if not isinstance(vid, str) or not vid.strip():
        raise AnnotationError(f"video id {vid!r} is not a non-empty string", where)
    if any(unicodedata.category(c).startswith("C") for c in vid) or len(vid) > MAX_ID_LENGTH:
        raise AnnotationError(f"video id {vid[:60]!r}: ids hold no control characters (newline, NUL...) "
                              f"and at most {MAX_ID_LENGTH} characters", where)
    what = f"video {vid!r}"
    if video.num_frames <= 0 or video.width <= 0 or video.height <= 0:
        raise AnnotationError(f"{what}: num_frames, width and height must be positive, got "
                              f"{video.num_frames}, {video.width}, {video.height}", where)
    if not (math.isfinite(video.fps) and video.fps > 0):
        raise AnnotationError(f"{what}: fps must be a positive number, got {video.fps}", where)
    if not (video.label == -1 or 0 <= video.label < num_classes):
        raise AnnotationError(f"{what}: label {video.label} is not a class index 0..{num_classes - 1} "
                              "(or -1 for unknown)", where)


def check_tube(tube: Tube, video: Video, what: str, where: Path | None, num_classes: int) -> None:
    """Raise AnnotationError naming ``what`` if ``tube`` does not fit ``video``."""
    if not 0 <= tube.label < num_classes:
        raise AnnotationError(f"{what}: label {tube.label} outside 0..{num_classes - 1}", where)
    if len(tube.frames) == 0:
        raise AnnotationError(f"{what}: no frames", where)
    if np.any(np.diff(tube.frames) <= 0):
        raise AnnotationError(f"{what}: frames are not strictly increasing", where)
    if tube.frames[0] < 0 or tube.frames[-1] >= video.num_frames:
        raise AnnotationError(
            f"{what}: frames {tube.start}..{tube.end} outside the video's 0..{video.num_frames - 1}", where
        )
    if tube.boxes is not None:
        bad = box_problems(tube.boxes, video.width, video.height)
        if bad is not None:
            row, problem = bad
            raise AnnotationError(f"{what} frame {int(tube.frames[row])}: {problem}", where)
    if tube.mask_shape is not None and tube.mask_shape[1:] != (video.height, video.width):
        raise AnnotationError(
            f"{what}: masks are {tube.mask_shape[1:]}, video is {(video.height, video.width)}", where
        )


def box_problems(boxes: np.ndarray, width: int, height: int) -> tuple[int, str] | None:
    """The first box that is not inside a width x height frame with x1 < x2, y1 < y2, as (row, why)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for row, (x1, y1, x2, y2) in enumerate(boxes):
        if not np.all(np.isfinite((x1, y1, x2, y2))):
            return row, f"box {[x1, y1, x2, y2]} is not finite"
        if x2 <= x1 or y2 <= y1:
            return row, f"box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1"
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            return row, f"box {[x1, y1, x2, y2]} lies outside the {width}x{height} frame"
    return None


Loader = Callable[..., Dataset]
LOADERS: Registry[Loader] = Registry("dataset kind")
register_loader = LOADERS.register  # decorator: a loader for ``load_dataset(kind, ...)``


def load_dataset(kind: str, path: str | Path, **options: object) -> Dataset:
    """Load a dataset of format ``kind`` (see ``LOADERS``) from ``path``."""
    import sparselabel.data.datasets  # noqa: F401  (registers the loaders)

    loader = LOADERS.lookup(kind)
    if not str(path).strip():
        raise SparseLabelError("no dataset given (dataset.path is empty)")
    # Never a fallback to a neighbouring folder's annotations (a glob names files that exist).
    if not Path(path).exists() and not glob.has_magic(str(path)):
        raise SparseLabelError("dataset not found: no such file or folder", path)
    dataset = loader(Path(path), **options)
    dataset.validate()
    return dataset

"""What every task format shares: the exported task model, the parsed-answer model, safe names.

Export side: a cycle's selected frames become ``TaskFrame`` objects (with the
model's boxes as ``PreBox`` pre-annotations) and, for the video formats, one
``PreTrack`` per predicted tube. Each format module turns those into its files.

Import side: each format module turns a file into a ``ParsedFile``: answers
for single frames (``FrameAnswer``) and, for video tasks, the keyframes of
tracks (``VideoAnswer``). The importer decides which frames they answer,
checks them against the workspace and writes them to the ledger.

Nothing here trusts a name that came from a file or a video id: names of
written files are escaped (``frame_file_name``) and checked to stay inside the
export folder (``inside``), and names read from task files may not step out of
it (``check_relative_name``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote

import numpy as np

from sparselabel.errors import AnnotationError, SparseLabelError

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in video pixels, right/bottom exclusive

# Written into every task file sparselabel exports, so the task file itself is never
# mistaken for an annotator's answers (its boxes are the model's, not a person's).
EXPORT_MARKER = "sparselabel-task-file"
IMAGE_SUFFIX = ".jpg"
FRAME_SEPARATOR = "__"
MAX_NAME_BYTES = 255  # the file-name limit of common file systems (ext4, APFS, NTFS)


# --- export model -------------------------------------------------------------------------


@dataclass(frozen=True)
class PreBox:
    """A pre-annotation: one box the current model predicts, offered for correction."""

    box: Box
    label: str  # class name (the video's top predicted class)
    score: float
    track: int | None = None  # index of the predicted tube it belongs to (video formats)


@dataclass
class TaskFrame:
    """One selected frame to annotate."""

    video_id: str
    frame: int  # 0-based
    cycle: int
    width: int
    height: int
    fps: float
    num_frames: int
    image: str  # path of the exported image, relative to the export folder
    boxes: list[PreBox] = field(default_factory=list)


@dataclass
class PreTrack:
    """A predicted tube as a track: its boxes on every frame it spans (video formats)."""

    video_id: str
    track: int
    label: str
    score: float
    frames: np.ndarray  # int, contiguous
    boxes: np.ndarray  # (n, 4)

    def box_at(self, frame: int) -> Box | None:
        hit = np.flatnonzero(self.frames == frame)
        return None if hit.size == 0 else tuple(float(c) for c in self.boxes[hit[0]])


@dataclass
class ExportBatch:
    """Everything one export writes: the frames, the class names, the predicted tracks."""

    cycle: int
    classes: list[str]
    frames: list[TaskFrame]
    tracks: dict[str, list[PreTrack]] = field(default_factory=dict)
    model_version: str | None = None  # the prediction run, when pre-annotated

    def by_video(self) -> dict[str, list[TaskFrame]]:
        out: dict[str, list[TaskFrame]] = {}
        for f in self.frames:
            out.setdefault(f.video_id, []).append(f)
        return {vid: sorted(frames, key=lambda f: f.frame) for vid, frames in sorted(out.items())}


# --- import model -------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxAnswer:
    """One actor box an annotator left on a frame."""

    actor: int  # stable within a video in one file (track / region), else order in the frame
    label: str  # class name as written in the file
    box: Box


@dataclass
class FrameAnswer:
    """Every actor of one frame, as answered (an empty list: no actor visible)."""

    video_id: str
    frame: int
    boxes: list[BoxAnswer]
    where: str  # where in the file, for messages ("image 'x.jpg'", "line 3")


@dataclass(frozen=True)
class Span:
    """Frames where the tool shows a box of one track / region that nobody put there: Label Studio's
    interpolation after an enabled keyframe, CVAT's interpolated shapes. Never holds a frame on
    which that track has a keyframe."""

    first: int
    last: int | None  # inclusive; None: to the end of the video
    actor: int

    def covers(self, frame: int) -> bool:
        return self.first <= frame and (self.last is None or frame <= self.last)


@dataclass
class VideoAnswer:
    """The keyframes of one video task; the importer decides which frames the task covers.

    A frame's answer is clear when no track shows an interpolated box there (``spans``) and,
    with ``near_miss``, when a frame without any keyframe has none one frame away either (the
    mark of keyframes put one frame off, as Label Studio counts frames from 1).
    """

    video_ids: tuple[str, ...]  # candidate ids, first known one wins (task name, source file...)
    keyframes: dict[int, list[BoxAnswer]]  # 0-based frame -> boxes drawn there as keyframes
    task_frames: list[int] | None  # frames the task asked about, when the file says so
    where: str
    num_frames: int | None = None  # frames in the tool's task, when the file says so
    spans: list[Span] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # actor -> "track 3" / "region 1 (id 'x')"
    near_miss: bool = False
    covered: range | None = None  # the video frames the tool's task holds (None: every frame)
    covered_text: str = ""  # how ``covered`` was found, for messages
    frame_size: tuple[int, int] | None = None  # (width, height) of the task's frames, when the file says so
    last_frame: int | None = None  # the highest frame any shape in the file is on


@dataclass
class ParsedFile:
    format: str
    frames: list[FrameAnswer] = field(default_factory=list)
    videos: list[VideoAnswer] = field(default_factory=list)
    unanswered: int = 0  # tasks in the file that nobody answered
    notes: list[str] = field(default_factory=list)


# --- names --------------------------------------------------------------------------------


def escape_id(video_id: str) -> str:
    """A video id as one safe path component: no separators, no dots, reversible."""
    return quote(video_id, safe="").replace(".", "%2E")


def frame_file_name(video_id: str, frame: int, suffix: str = IMAGE_SUFFIX) -> str:
    """``<escaped id>__<frame:06d>.jpg``; raises if the id is too long for a file name."""
    name = f"{escape_id(video_id)}{FRAME_SEPARATOR}{frame:06d}{suffix}"
    if len(name.encode()) > MAX_NAME_BYTES:
        raise SparseLabelError(f"video id {video_id[:40]!r}... is too long to name a file after")
    return name


def parse_frame_file_name(name: str) -> tuple[str, int] | None:
    """(video id, frame) of a name written by ``frame_file_name`` (any folder, any image suffix)."""
    stem = PurePosixPath(name.replace("\\", "/")).name
    stem, dot, _ = stem.rpartition(".")
    escaped, sep, frame = (stem if dot else name).rpartition(FRAME_SEPARATOR)
    if not sep or not re.fullmatch(r"\d{6,}", frame):
        return None
    video_id = unquote(escaped)
    return (video_id, int(frame)) if escape_id(video_id) == escaped else None


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing anything (``..``, absolute paths, symlinks) that lands outside root."""
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise SparseLabelError(f"refusing to write {relative!r}: it would land outside the export folder", root)
    return target


def check_relative_name(name: str, where: str, path: Path) -> None:
    """A file name read from a task file may not climb out of the folder it is relative to."""
    parts = unquote(name).replace("\\", "/").split("/")
    if ".." in parts or "\x00" in name:
        raise AnnotationError(f"{where}: file name {name!r} points outside the export folder", path)


# --- boxes --------------------------------------------------------------------------------


def rotated_envelope(x: float, y: float, w: float, h: float, degrees: float, pivot: tuple[float, float]) -> Box:
    """The axis-aligned box around a w x h rectangle at (x, y) rotated clockwise about ``pivot``."""
    if not degrees:
        return (x, y, x + w, y + h)
    t = math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    px, py = pivot
    xs, ys = [], []
    for cx, cy in ((x, y), (x + w, y), (x, y + h), (x + w, y + h)):
        dx, dy = cx - px, cy - py
        xs.append(px + dx * cos - dy * sin)
        ys.append(py + dx * sin + dy * cos)
    return (min(xs), min(ys), max(xs), max(ys))


def iou(a: Box, b: Box) -> float:
    """Continuous-coordinate IoU of two boxes (0 when they do not overlap)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def count_corrected(answer: list[Box], offered: list[Box], threshold: float) -> int:
    """How many answer boxes match an offered pre-annotation (greedy one-to-one, IoU >= threshold)."""
    pairs = sorted(((iou(a, o), i, j) for i, a in enumerate(answer) for j, o in enumerate(offered)), reverse=True)
    used_a, used_o = set(), set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_a and j not in used_o:
            used_a.add(i)
            used_o.add(j)
    return len(used_a)


def video_size(sizes: Mapping[str, tuple[int, int]], video_id: str, where: str, path: Path) -> tuple[int, int]:
    """(width, height) of a known video, or the unknown-video AnnotationError."""
    if video_id not in sizes:
        raise AnnotationError(f"{where}: unknown video {video_id!r}", path)
    return sizes[video_id]

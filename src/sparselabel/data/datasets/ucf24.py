"""UCF101-24 with the corrected annotations of Singh et al. (``pyannot_with_class_names.pkl``).

Layout (``path`` is the root; ``annotations=`` / ``videos=`` override either part)::

    ROOT/annotations/pyannot_with_class_names.pkl   (or the older pyannot.pkl)
    ROOT/annotations/testlist01.txt                 optional, cross-checked
    ROOT/videos/v_Class_gXX_cYY.<mp4|avi|...>       or videos/Class/v_..., or frame folders

The pickle is ``{'db': {'Class/v_Class_gXX_cYY': {'numf', 'label', 'annotations':
[{'sf', 'ef', 'label', 'boxes'}]}}, 'trainvideos': [...], 'classes': [...]}``.
``boxes`` are ``[x, y, w, h]`` in 320x240 pixels, one row per frame ``sf`` (0-based,
inclusive) .. ``ef`` (exclusive), stored as uint8/uint16 (so they are cast before
any arithmetic). Boxes are rescaled to each video's decoded size, because many
copies of UCF101 are re-encoded at other resolutions (340x256 is common).

Only videos present in the videos folder are loaded, so a subset of UCF101 is a
valid dataset. Splits: ``train`` = keys in ``trainvideos``, ``test`` = the rest.
Boxes that extend past the frame border are clipped, with a warning saying how
many (none of the 573,862 boxes of the corrected annotations need it).
"""

from __future__ import annotations

import warnings
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
    read_split_names,
    report_clipped,
)
from sparselabel.data.safe_pickle import as_int, safe_load
from sparselabel.data.tubes import Tube
from sparselabel.data.video import VideoInfo
from sparselabel.errors import AnnotationError

UCF24_CLASSES = [
    "Basketball", "BasketballDunk", "Biking", "CliffDiving", "CricketBowling", "Diving",
    "Fencing", "FloorGymnastics", "GolfSwing", "HorseRiding", "IceDancing", "LongJump",
    "PoleVault", "RopeClimbing", "SalsaSpin", "SkateBoarding", "Skiing", "Skijet",
    "SoccerJuggling", "Surfing", "TennisSwing", "TrampolineJumping", "VolleyballSpiking",
    "WalkingWithDog",
]
ANNOTATION_NAMES = ("pyannot_with_class_names.pkl", "pyannot.pkl")
ANNOTATION_SIZE = (320, 240)  # (width, height) the boxes are drawn in
TESTLIST = "testlist01.txt"


@register_loader("ucf24")
def load_ucf24(
    path: Path,
    annotations: str | Path | None = None,
    videos: str | Path | None = None,
    annotation_size: tuple[int, int] = ANNOTATION_SIZE,
    workers: int | None = None,
) -> Dataset:
    """Read the UCF101-24 pickle and the videos of it that are present under ``videos``."""
    ann_path, videos_dir = _locate(Path(path), annotations, videos)
    db, train_keys, classes = _parse_top(safe_load(ann_path), ann_path)
    index = VideoIndex(videos_dir)
    found = {key: p for key in sorted(db) if (p := index.find(key)) is not None}
    if not found:
        raise AnnotationError(f"none of its {len(db)} videos is in {videos_dir}", ann_path)
    log.info("ucf24: %d of %d annotated videos found in %s", len(found), len(db), videos_dir)
    infos = probe_all(list(found.values()), workers)
    videos_out: dict[str, Video] = {}
    tubes: dict[str, list[Tube]] = {}
    clipped = total = 0
    for (key, video_path), info in zip(found.items(), infos, strict=True):
        video, video_tubes, n_clipped = _video_and_tubes(key, db[key], video_path, info, annotation_size, ann_path)
        videos_out[key], tubes[key] = video, video_tubes
        clipped += n_clipped
        total += sum(len(t) for t in video_tubes)
    report_clipped(clipped, total, ann_path)
    splits = {
        "train": [k for k in videos_out if k in train_keys],
        "test": [k for k in videos_out if k not in train_keys],
    }
    _cross_check_testlist(ann_path.parent / TESTLIST, splits["test"], list(videos_out))
    return Dataset("ucf24", classes, videos_out, tubes, splits, source=ann_path)


def _locate(path: Path, annotations: str | Path | None, videos: str | Path | None) -> tuple[Path, Path]:
    """The annotation file and the videos folder, from a root folder or explicit paths."""
    if annotations is not None:
        ann_path = Path(annotations)
    elif path.is_file():
        ann_path = path
    else:
        candidates = [path / "annotations" / n for n in ANNOTATION_NAMES] + [path / n for n in ANNOTATION_NAMES]
        ann_path = next((c for c in candidates if c.is_file()), candidates[0])
    if not ann_path.is_file():
        raise AnnotationError(f"UCF101-24 annotation pickle not found (looked for {', '.join(ANNOTATION_NAMES)})", ann_path)
    if videos is not None:
        videos_dir = Path(videos)
    else:
        root = path if path.is_dir() else ann_path.parent.parent
        videos_dir = root / "videos"
    if not videos_dir.is_dir():
        raise AnnotationError("videos folder not found (pass videos=...)", videos_dir)
    return ann_path, videos_dir


def _parse_top(doc: Any, ann_path: Path) -> tuple[dict[str, dict], set[str], list[str]]:
    """The ``db``, the training keys and the class names, checked for shape."""
    if not isinstance(doc, dict) or not isinstance(doc.get("db"), dict):
        raise AnnotationError("not a UCF101-24 annotation pickle: expected a dict with a 'db' dict", ann_path)
    classes = [str(c) for c in doc.get("classes", UCF24_CLASSES)]
    train = doc.get("trainvideos", [])
    if not isinstance(train, list | tuple):
        raise AnnotationError("'trainvideos' is not a list", ann_path)
    db = {str(k): v for k, v in doc["db"].items()}  # keys may be numpy str_ in old pickles
    return db, {str(k) for k in train}, classes


def _video_and_tubes(
    key: str, entry: Any, video_path: Path, info: VideoInfo, annotation_size: tuple[int, int], ann_path: Path
) -> tuple[Video, list[Tube], int]:
    """The Video of one db entry and its tubes in the video's own pixel grid."""
    try:
        numf = as_int(entry["numf"])
        label = as_int(entry["label"])
        annots = list(entry["annotations"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"video {key!r}: malformed entry ({type(exc).__name__}: {exc})", ann_path) from exc
    check_frame_count(info, numf, video_path)
    scale = np.array([info.width / annotation_size[0], info.height / annotation_size[1]] * 2)
    tubes, clipped = [], 0
    for k, ann in enumerate(annots):
        frames, boxes = _tube_rows(ann, numf, f"video {key!r} annotation {k}", ann_path)
        boxes, n = clip_boxes(boxes * scale, info.width, info.height)
        tubes.append(Tube(_tube_label(ann, f"video {key!r} annotation {k}", ann_path), frames, boxes))
        clipped += n
    video = Video(key, video_path, numf, info.fps, info.width, info.height, label)
    return video, tubes, clipped


def _tube_label(ann: Any, what: str, ann_path: Path) -> int:
    try:
        return as_int(ann["label"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{what}: no usable 'label' ({exc})", ann_path) from exc


def _tube_rows(ann: Any, numf: int, what: str, ann_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames (0-based) and x1,y1,x2,y2 boxes in annotation pixels of one ``annotations`` item."""
    try:
        sf, ef = as_int(ann["sf"]), as_int(ann["ef"])
        raw = np.asarray(ann["boxes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{what}: malformed ({type(exc).__name__}: {exc})", ann_path) from exc
    if not 0 <= sf < ef <= numf:
        raise AnnotationError(f"{what}: frames sf={sf} .. ef={ef} (exclusive) not within 0..{numf}", ann_path)
    if raw.dtype.kind not in "uif" or raw.shape != (ef - sf, 4):
        raise AnnotationError(
            f"{what}: boxes are {raw.dtype} {raw.shape}, expected {ef - sf} numeric rows of [x, y, w, h]", ann_path
        )
    xywh = raw.astype(np.float64)  # uint8/uint16 in the file: x + w would overflow
    bad = np.flatnonzero(~np.isfinite(xywh).all(axis=1) | (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0))
    if len(bad):
        raise AnnotationError(f"{what} frame {sf + bad[0]}: box [x, y, w, h] = {raw[bad[0]].tolist()} is empty", ann_path)
    boxes = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    return np.arange(sf, ef), boxes


def _cross_check_testlist(testlist: Path, test: list[str], loaded: list[str]) -> None:
    """Warn when the pickle's train/test split disagrees with the official test list."""
    if not testlist.is_file():
        return
    official = {name.rsplit(".", 1)[0] if name.endswith(".avi") else name for name in read_split_names(testlist)}
    test_set = set(test)
    disagree = sorted(k for k in loaded if (k in official) != (k in test_set))
    if disagree:
        warnings.warn(
            f"{testlist}: {len(disagree)} loaded videos are split differently from the pickle's "
            f"'trainvideos' (e.g. {disagree[0]!r}); using the pickle",
            stacklevel=3,
        )

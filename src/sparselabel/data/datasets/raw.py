"""Raw video: a folder (or glob, or list file) of unlabeled videos, no ground truth.

This is where a labeling project usually starts. ``scan_videos`` finds every video
file or frame folder, probes each once (exact frame count, fps, size) and gives a
``Dataset`` without tubes; ``init --videos`` then writes it into the workspace as
``videos.json`` (``write_manifest``), which the ``videos`` loader reads on every
later open, so videos are probed once, not at each command.

The video-level class comes from the parent folder (the UCF101 layout
``DIR/<Class>/<video>``), from a CSV ``video,label``, or is absent: one class,
``actor``. Every video is in the pool (split ``train``); there is no test split.

videos.json::

    {"format": "sparselabel-videos/1", "name": str, "classes": [str], "source": str,
     "videos": [{"id", "path" (absolute), "num_frames", "fps", "width", "height", "label"}]}
"""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path

from sparselabel.data.dataset import Dataset, Video, register_loader
from sparselabel.data.datasets.common import VIDEO_SUFFIXES, folder_info, parallel_map
from sparselabel.data.video import VideoInfo, frame_files, probe
from sparselabel.errors import AnnotationError, SparseLabelError, VideoDecodeError
from sparselabel.jsonio import finite_number, parse_json, whole_number

FORMAT = "sparselabel-videos/1"
MANIFEST = "videos.json"
NO_CLASS = "actor"  # the one class of a project whose videos have no class
LABEL_RULES = ("auto", "folders", "none")  # or the path of a CSV
FRAME_FOLDER_FPS = 25.0


@register_loader("videos")
def load_videos(path: Path, labels: str = "auto") -> Dataset:
    """A ``videos.json`` manifest, or a folder / glob / list file scanned now (see module doc)."""
    if path.is_file() and path.suffix == ".json":
        return read_manifest(path)
    return scan_videos(str(path), labels)


def scan_videos(source: str, labels: str = "auto") -> Dataset:
    """Every video under ``source`` (a folder, a glob, or a .txt list of paths), probed.

    Every file that cannot be decoded is reported in one error, before anything is
    written. ``labels``: ``auto`` (class folders when every video sits in one, else
    none), ``folders``, ``none`` or the path of a CSV with columns ``video,label``.
    """
    root, found = find_videos(source)
    if not found:
        raise SparseLabelError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) or frame folders found", source)
    infos = parallel_map(_probe_or_error, [path for _, path in found])
    broken = [f"{path}: {info}" for (_, path), info in zip(found, infos, strict=True) if isinstance(info, str)]
    if broken:
        raise VideoDecodeError(f"{len(broken)} of {len(found)} videos cannot be used: " + "; ".join(broken[:5])
                               + ("; ..." if len(broken) > 5 else ""), source)
    classes, label_of = video_classes([vid for vid, _ in found], labels, source)
    videos = {vid: Video(vid, path.resolve(), info.num_frames, info.fps, info.width, info.height, label_of[vid])
              for (vid, path), info in zip(found, infos, strict=True)}
    return Dataset(Path(root).name or "videos", classes, videos, {vid: [] for vid in videos},
                   {"train": list(videos)}, source=Path(source))


def find_videos(source: str) -> tuple[Path, list[tuple[str, Path]]]:
    """(root, [(id, path)]) sorted by id; an id is the path below ``root`` without its suffix."""
    path = Path(source)
    if path.is_dir():
        return path, _ids(path, _walk(path), source)
    if path.is_file() and path.suffix.lower() == ".txt":
        return path.parent, _ids(path.parent, _listed(path), source)
    if glob.has_magic(source):
        matches = [Path(p) for p in sorted(glob.glob(source, recursive=True))]
        parts = Path(source).parts
        fixed = next(k for k, part in enumerate(parts) if glob.has_magic(part))
        root = Path(*parts[:fixed]) if fixed else Path(".")  # ids are relative to the glob's fixed folder
        return root, _ids(root, [p for p in matches if _is_video(p)], source)
    raise SparseLabelError("not a folder, a glob or a .txt list of videos", source)


def _walk(folder: Path) -> list[Path]:
    """Video files and frame folders under ``folder``; a frame folder is not searched further."""
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            out.extend([entry] if frame_files(entry) else _walk(entry))
        elif entry.suffix.lower() in VIDEO_SUFFIXES:
            out.append(entry)
    return out


def _listed(list_file: Path) -> list[Path]:
    try:
        lines = [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise SparseLabelError(f"a list of videos must be UTF-8 text ({exc})", list_file) from exc
    paths = [list_file.parent / line for line in lines if line and not line.startswith("#")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SparseLabelError(f"{len(missing)} listed videos do not exist: {', '.join(missing[:3])}", list_file)
    return paths


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES if path.is_file() else bool(frame_files(path))


def _ids(root: Path, paths: list[Path], source: str) -> list[tuple[str, Path]]:
    """Ids from paths below ``root``: ``Class/v_name`` for ``root/Class/v_name.avi``."""
    seen: dict[str, Path] = {}
    for path in paths:
        relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        vid = relative.with_suffix("").as_posix() if path.is_file() else relative.as_posix()
        if vid in seen:
            raise SparseLabelError(f"{seen[vid]} and {path} would both be video {vid!r}; keep one", source)
        seen[vid] = path
    return sorted(seen.items())


def _probe_or_error(path: Path) -> VideoInfo | str:
    try:
        return folder_info(path, FRAME_FOLDER_FPS) if path.is_dir() else probe(path)
    except VideoDecodeError as exc:  # collected, so every broken file is named at once
        return exc.problem


def video_classes(ids: list[str], labels: str, source: str) -> tuple[list[str], dict[str, int]]:
    """(class names, {id: class index}) by the ``labels`` rule (see ``scan_videos``)."""
    folders = {vid: vid.rsplit("/", 1)[0] if "/" in vid else None for vid in ids}
    if labels == "auto":
        one_level = all(f is not None and "/" not in f for f in folders.values())
        labels = "folders" if one_level and len(set(folders.values())) > 1 else "none"
    if labels == "none":
        return [NO_CLASS], dict.fromkeys(ids, 0)
    if labels == "folders":
        if any(f is None for f in folders.values()):
            flat = next(vid for vid, f in folders.items() if f is None)
            raise SparseLabelError(f"--labels folders: video {flat!r} is not inside a class folder", source)
        classes = sorted(set(folders.values()))
        return classes, {vid: classes.index(folders[vid]) for vid in ids}
    return csv_classes(ids, Path(labels))


def csv_classes(ids: list[str], path: Path) -> tuple[list[str], dict[str, int]]:
    """Classes from a CSV ``video,label``: ``video`` is the id, with or without its file suffix.
    A video without a row has no class (label -1); a row for no video is an error."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"cannot read the labels CSV ({exc})", path) from exc
    if not rows or not {"video", "label"} <= set(rows[0]):
        raise AnnotationError("expected a header line 'video,label' and one row per video", path)
    known = set(ids)
    given: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        vid = _known_id(str(row["video"] or "").strip(), known)
        label = str(row["label"] or "").strip()
        if vid is None or not label:
            raise AnnotationError(f"line {line}: {row['video']!r} is no video found, or its label is empty", path)
        if given.setdefault(vid, label) != label:
            raise AnnotationError(f"line {line}: video {vid!r} has two labels", path)
    classes = sorted(set(given.values()))
    return classes, {vid: classes.index(given[vid]) if vid in given else -1 for vid in ids}


def _known_id(name: str, known: set[str]) -> str | None:
    """The id ``name`` gives, as written or without its video suffix (``Jump/v_a.mp4``)."""
    if name in known:
        return name
    stem = str(Path(name).with_suffix("")) if Path(name).suffix in VIDEO_SUFFIXES else None
    return stem if stem in known else None


def write_manifest(dataset: Dataset, path: Path) -> Path:
    doc = {"format": FORMAT, "name": dataset.name, "classes": dataset.classes, "source": str(dataset.source),
           "videos": [{"id": v.id, "path": str(v.path), "num_frames": v.num_frames, "fps": v.fps,
                       "width": v.width, "height": v.height, "label": v.label} for v in dataset.videos.values()]}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def read_manifest(path: Path) -> Dataset:
    try:
        doc = parse_json(path.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc})", path) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AnnotationError(f"not a {FORMAT} manifest", path)
    try:
        videos = {}
        for entry in doc["videos"]:
            vid, what = entry["id"], f"video {entry['id']!r}"
            videos[vid] = Video(vid, Path(entry["path"]), whole_number(entry["num_frames"], what, path),
                                finite_number(entry["fps"], what, path), whole_number(entry["width"], what, path),
                                whole_number(entry["height"], what, path), whole_number(entry["label"], what, path))
    except (KeyError, TypeError) as exc:
        raise AnnotationError(f"malformed manifest ({type(exc).__name__}: {exc})", path) from exc
    return Dataset(doc["name"], list(doc["classes"]), videos, {vid: [] for vid in videos}, {"train": list(videos)},
                   source=path)

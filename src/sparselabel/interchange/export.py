"""Writing a cycle's selected frames as annotation tasks, and remembering what was offered.

Layout of the export folder (``fmt`` decides which task files are written)::

    images/<video>__<frame>.jpg          every selected frame (all formats)
    tasks.jsonl                          json:        sparselabel's own format
    annotations.xml                      cvat-images: CVAT for images 1.1, one task
    cvat/<video>/annotations.xml         cvat:        CVAT for video 1.1, one task per video
    cvat/<video>/images/frame_NNNNNN.jpg               every frame of that video
    labelstudio/image-tasks.json         labelstudio: one image task per selected frame
    labelstudio/image-config.xml                      its labeling config
    labelstudio/video-tasks.json                      one video task per video
    labelstudio/video-config.xml                      its labeling config
    videos/<video>.mp4                                the videos the video tasks play (H.264, 4:2:0)
    sparselabel-export.json              what was exported (for people)

``<video>`` is the escaped video id (``common.escape_id``). Every export also
leaves a record under ``WORKSPACE/interchange/exports/``: the frames each task
covers and the pre-annotations offered, which the importer needs (a CVAT
export does not say which frames its task was about, and a box only counts as
"corrected" if it matches a box that was offered).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from sparselabel.atomic import staged_folder
from sparselabel.data.video import write_playable_video
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.detections import frame_boxes, link_tubes, top_classes
from sparselabel.interchange import cvat, jsonl, labelstudio
from sparselabel.interchange.common import (
    Box,
    ExportBatch,
    PreBox,
    PreTrack,
    TaskFrame,
    escape_id,
    frame_file_name,
    inside,
)
from sparselabel.scoring.predict import VideoPrediction, prediction_path

FORMATS = (cvat.VIDEO, cvat.IMAGES, labelstudio.FORMAT, jsonl.FORMAT)
VIDEO_FORMATS = (cvat.VIDEO, labelstudio.FORMAT)  # formats that offer predicted tubes as tracks
RECORDS = Path("interchange") / "exports"
MANIFEST = "sparselabel-export.json"
JPEG_QUALITY = 95


def export_tasks(workspace, fmt: str, out_dir: str | Path, cycle: int | None = None,
                 with_predictions: bool = False, url_prefix: str = "", overwrite: bool = False) -> list[Path]:
    """Write the selected frames of ``cycle`` as ``fmt`` tasks under ``out_dir``; returns the task files.

    ``cycle`` defaults to the latest cycle that still has unanswered selected
    frames; its unanswered frames are exported (all of its frames when every
    one is answered already, to annotate them again). ``with_predictions``
    offers the latest prediction run's boxes as pre-annotations.
    ``url_prefix`` is put before media paths in Label Studio tasks.

    The export is written into a hidden sibling folder and renamed onto ``out_dir`` when
    complete, so a failed export leaves nothing. ``out_dir`` must be new or empty; with
    ``overwrite`` an earlier export there is replaced as a whole (never mixed with).
    """
    if fmt not in FORMATS:
        raise SparseLabelError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = check_target(out_dir, overwrite)
    cycle = choose_cycle(workspace.ledger, cycle)
    batch = ExportBatch(cycle, workspace.ledger.classes, task_frames(workspace, cycle))
    if with_predictions:
        add_predictions(workspace, batch, tracks=fmt in VIDEO_FORMATS)
    with staged_folder(out, "export") as build:
        write_frame_images(workspace, batch, build)
        files = WRITERS[fmt](workspace, batch, build, url_prefix)
        _write_manifest(build, fmt, batch, files)
        files = [out / f.relative_to(build.resolve()) for f in files]
    write_record(workspace.root, fmt, batch, out)
    return files


def check_target(out_dir: str | Path, overwrite: bool) -> Path:
    """``out_dir`` as a Path if an export may go there: new, empty, or replaced as a whole."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SparseLabelError("exists and is not a folder; give --out a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SparseLabelError("folder is not empty; choose a new folder, or --overwrite to replace "
                               "what is there with this export", out)
    return out


# --- what to export -----------------------------------------------------------------------


def choose_cycle(ledger, cycle: int | None) -> int:
    """``cycle`` if it selected frames, else the latest cycle with selected frames still unanswered."""
    rows = ledger.selections()
    if cycle is not None:
        if not any(r[0] == cycle for r in rows):
            raise SparseLabelError(f"cycle {cycle} selected no frames", ledger.path)
        return cycle
    done = {vid: set(frames.tolist()) for vid, frames in ledger.annotated_frames().items()}
    open_cycles = sorted({c for c, _, vid, frame, _ in rows if frame not in done.get(vid, ())})
    if not open_cycles:
        raise SparseLabelError("every selected frame is answered already; pass a cycle to export it again",
                               ledger.path)
    return open_cycles[-1]


def task_frames(workspace, cycle: int) -> list[TaskFrame]:
    """The cycle's selected frames not answered yet (all of them when none is left)."""
    ledger = workspace.ledger
    done = {vid: set(frames.tolist()) for vid, frames in ledger.annotated_frames().items()}
    picks = [(vid, frame) for _, _, vid, frame, _ in ledger.selections(cycle)]
    todo = [(vid, f) for vid, f in picks if f not in done.get(vid, ())] or picks
    videos = ledger.videos()
    out = []
    for vid, frame in sorted(todo):
        v = videos[vid]
        out.append(TaskFrame(vid, frame, cycle, v.width, v.height, v.fps, v.num_frames,
                             f"images/{frame_file_name(vid, frame)}"))
    return out


def prediction_runs(workspace) -> list[Path]:
    """The workspace's prediction runs (``predictions/cycle-NNN``), newest first."""
    root = workspace.root / "predictions"
    return sorted((p for p in root.glob("cycle-*") if p.is_dir()), reverse=True) if root.is_dir() else []


def latest_run(workspace, video_ids: list[str]) -> Path:
    """The newest prediction run that has maps for all of ``video_ids``."""
    for run in prediction_runs(workspace):
        if all(prediction_path(run, vid).exists() for vid in video_ids):
            return run
    raise SparseLabelError("no prediction run covers the selected videos; run `sparselabel predict` first "
                           "or export without pre-annotations", workspace.root / "predictions")


def add_predictions(workspace, batch: ExportBatch, tracks: bool) -> None:
    """Pre-annotate each frame with the model's boxes (per-frame boxes, or linked tubes as tracks)."""
    frames_of = batch.by_video()
    run = latest_run(workspace, list(frames_of))
    batch.model_version = run.name
    cfg = workspace.config.detection
    for vid, frames in frames_of.items():
        prediction = VideoPrediction.load(run, vid)
        boxes = frame_boxes(prediction.fg, prediction.size, cfg)
        label = batch.classes[int(top_classes(prediction.class_scores, 1)[0])]
        if tracks:
            batch.tracks[vid] = _tracks(vid, boxes, label, frames, cfg)
            for f in frames:
                f.boxes = [PreBox(box, label, t.score, t.track) for t in batch.tracks[vid]
                           if (box := t.box_at(f.frame)) is not None]
        else:
            for f in frames:
                f.boxes = [PreBox(_clip(row[:4], f), label, float(row[4])) for row in boxes[f.frame]]


def _tracks(vid: str, boxes: list[np.ndarray], label: str, frames: list[TaskFrame], cfg) -> list[PreTrack]:
    """Linked tubes that cover at least one selected frame, numbered from 0."""
    selected = np.array([f.frame for f in frames])
    out = []
    for tube in link_tubes(boxes, cfg):
        spans = tube[:, 0].astype(np.int64)
        if np.isin(selected, spans).any():
            clipped = np.array([_clip(row, frames[0]) for row in tube[:, 1:5]])
            out.append(PreTrack(vid, len(out), label, float(tube[:, 5].mean()), spans, clipped))
    return out


def _clip(box, frame: TaskFrame) -> Box:
    x1, y1, x2, y2 = (float(c) for c in box)
    return (max(0.0, x1), max(0.0, y1), min(float(frame.width), x2), min(float(frame.height), y2))


# --- writing ------------------------------------------------------------------------------


def write_frame_images(workspace, batch: ExportBatch, out: Path) -> None:
    """Each selected frame as a JPEG under ``out/images``."""
    for vid, frames in batch.by_video().items():
        pixels = workspace.dataset.videos[vid].frames([f.frame for f in frames])
        for f, rgb in zip(frames, pixels, strict=True):
            _save_jpeg(rgb, inside(out, f.image))


def _save_jpeg(rgb: np.ndarray, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(target, quality=JPEG_QUALITY)


def _write_json(workspace, batch: ExportBatch, out: Path, prefix: str) -> list[Path]:
    target = inside(out, "tasks.jsonl")
    target.write_text(jsonl.tasks_jsonl(batch))
    return [target]


def _write_cvat_images(workspace, batch: ExportBatch, out: Path, prefix: str) -> list[Path]:
    target = inside(out, "annotations.xml")
    target.write_bytes(cvat.images_xml(batch))
    return [target]


def _write_cvat_video(workspace, batch: ExportBatch, out: Path, prefix: str) -> list[Path]:
    """Per video: its CVAT task's XML and every frame, so CVAT frame numbers are the video's."""
    files = []
    for vid, frames in batch.by_video().items():
        folder = f"cvat/{escape_id(vid)}"
        for index, rgb in enumerate(workspace.dataset.videos[vid].iter_frames()):
            _save_jpeg(rgb, inside(out, f"{folder}/images/frame_{index:06d}.jpg"))
        target = inside(out, f"{folder}/annotations.xml")
        target.write_bytes(cvat.video_xml(vid, frames, batch.tracks.get(vid, []), batch.classes))
        files.append(target)
    return files


def _write_labelstudio(workspace, batch: ExportBatch, out: Path, prefix: str) -> list[Path]:
    version = batch.model_version
    image_tasks = [labelstudio.image_task(f, prefix, version) for fs in batch.by_video().values() for f in fs]
    video_tasks = []
    for vid, frames in batch.by_video().items():
        video_file, played = write_task_video(workspace.dataset.videos[vid], out)
        video_tasks.append(labelstudio.video_task(frames, video_file, prefix, batch.tracks.get(vid, []), version,
                                                  played))
    contents = {"labelstudio/image-tasks.json": json.dumps(image_tasks, indent=1),
                "labelstudio/image-config.xml": labelstudio.image_config(batch.classes),
                "labelstudio/video-tasks.json": json.dumps(video_tasks, indent=1),
                "labelstudio/video-config.xml": labelstudio.video_config(batch.classes)}
    files = []
    for relative, text in contents.items():
        target = inside(out, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        files.append(target)
    return files


def write_task_video(video, out: Path) -> tuple[str, tuple[int, int]]:
    """The video for Label Studio to play (relative to ``out``) and its (width, height).

    Always encoded anew, whatever the dataset holds (4:4:4 H.264, AVI, GIF, frame folders),
    as browsers play it: H.264 with 4:2:0 chroma in MP4, the same frames at the same rate, an
    odd width / height padded by one pixel on the right / bottom (``write_playable_video``).
    Label Studio's percent coordinates are relative to the played size, so tasks say it."""
    relative = f"videos/{escape_id(video.id)}.mp4"
    played = write_playable_video(inside(out, relative), video.iter_frames(), fps=video.fps)
    return relative, played


WRITERS = {jsonl.FORMAT: _write_json, cvat.IMAGES: _write_cvat_images, cvat.VIDEO: _write_cvat_video,
           labelstudio.FORMAT: _write_labelstudio}


def _write_manifest(out: Path, fmt: str, batch: ExportBatch, files: list[Path]) -> None:
    doc = {"format": fmt, "cycle": batch.cycle, "frames": len(batch.frames),
           "videos": len(batch.by_video()), "pre_annotations": batch.model_version,
           "task_files": [str(f.relative_to(out.resolve())) for f in files]}
    inside(out, MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")


# --- records: what each export offered ----------------------------------------------------


def write_record(root: Path, fmt: str, batch: ExportBatch, out: Path) -> Path:
    """Remember the frames and pre-annotations of this export (atomically, one file per export)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    frames = {vid: [f.frame for f in fs] for vid, fs in batch.by_video().items()}
    offered = {vid: {str(f.frame): [list(b.box) for b in f.boxes] for f in fs if f.boxes}
               for vid, fs in batch.by_video().items()}
    doc = {"format": fmt, "cycle": batch.cycle, "created_at": stamp, "out_dir": str(out.resolve()),
           "model_version": batch.model_version, "frames": frames, "offered": offered}
    folder = root / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    target = folder / f"{stamp}-{fmt}.json"
    os.replace(tmp, target)
    return target


@dataclass
class ExportRecords:
    """The records of one format's exports, newest first."""

    records: list[dict]

    @classmethod
    def load(cls, root: Path, fmt: str) -> ExportRecords:
        folder = root / RECORDS
        docs = []
        for path in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise SparseLabelError(f"unreadable export record ({exc})", path) from exc
            if doc.get("format") == fmt:
                docs.append(doc)
        return cls(docs)

    def task_frames(self, video_id: str) -> list[int] | None:
        """The frames of ``video_id`` in the newest export that had it."""
        for doc in self.records:
            if video_id in doc["frames"]:
                return [int(f) for f in doc["frames"][video_id]]
        return None

    def videos(self) -> set[str]:
        """Every video an export in this format held."""
        return {vid for doc in self.records for vid in doc["frames"]}

    def offered(self, video_id: str, frame: int) -> list[Box]:
        """The pre-annotations the newest export of this frame offered (none: drawn from scratch)."""
        for doc in self.records:
            if frame in doc["frames"].get(video_id, []):
                return [tuple(b) for b in doc["offered"].get(video_id, {}).get(str(frame), [])]
        return []

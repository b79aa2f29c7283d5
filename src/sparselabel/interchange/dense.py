"""Dense export: a box on every frame of every pool video, in five formats.

Answered frames carry the answers exactly; every other frame gets the boxes of the
chosen source (``evaluation.dense``: interpolation, model, fusion), each with its
source and a confidence so a reviewer can sort by it. Written video by video into
a hidden folder and renamed into place when complete, like every export::

    cvat/<video>/annotations.xml   cvat:        CVAT for video 1.1, one task per video;
                                                every box a keyframe with attributes
                                                source and confidence
    labelstudio/dense-tasks.json   labelstudio: one video task per video, the boxes as a
                                                prediction (video rectangles), each
                                                sequence item with source and confidence
    dense-GT.pkl                   act-pkl:     ACT ground-truth pickle (split 1 = the pool)
    mot/<video>/gt/gt.txt          mot:         MOTChallenge: frame, id, x, y, w, h,
    mot/<video>/gt/labels.txt                   confidence, class, visibility (1-based)
    dense.jsonl                    json:        one sparselabel-frame/1 line per frame,
                                                actors with source and confidence
    sparselabel-export.json        what was exported, and from which source
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from sparselabel.atomic import staged_folder
from sparselabel.data.dataset import Dataset, Video
from sparselabel.data.datasets.act_pkl import write_act_pkl
from sparselabel.data.tubes import Tube
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.dense import METHODS, SOURCES, DenseTrack, FusionConfig, dense_tracks
from sparselabel.evaluation.detections import frame_boxes, top_classes
from sparselabel.interchange import cvat, jsonl, labelstudio
from sparselabel.interchange.common import escape_id, inside
from sparselabel.interchange.export import check_target, latest_run, write_task_video
from sparselabel.scoring.predict import VideoPrediction

FORMATS = ("cvat", "labelstudio", "act-pkl", "mot", "json")
# Unless told, a dense export uses the source that measured best (benchmarks/dense_labels.py,
# RESULTS.md "Dense labels"): fusion, which needs the model's predictions of the pool, and
# interpolation where there are none yet.
AUTO = "auto"
# Per-box attributes of the CVAT labels: name -> the values of a select (None: free text).
CVAT_ATTRIBUTES = {"source": SOURCES, "confidence": None}


def export_dense(workspace, fmt: str, out_dir: str | Path, source: str = AUTO,
                 url_prefix: str = "", overwrite: bool = False) -> tuple[list[Path], str]:
    """Write dense labels of every pool video as ``fmt`` under ``out_dir``; returns the files
    and the source used (``auto``: fusion with the newest predictions of the pool, else
    interpolation)."""
    if fmt not in FORMATS:
        raise SparseLabelError(f"unknown dense format {fmt!r}; use one of {', '.join(FORMATS)}")
    if source not in (AUTO, *METHODS):
        raise SparseLabelError(f"unknown dense source {source!r}; use one of {AUTO}, {', '.join(METHODS)}")
    out = check_target(out_dir, overwrite)
    videos = workspace.ledger.videos("pool")
    run = None
    if source == AUTO:  # fusion where the model has predicted the pool, else interpolation
        try:
            run, source = latest_run(workspace, sorted(videos)), "fusion"
        except SparseLabelError:
            source = "interpolation"
    elif source != "interpolation":
        run = latest_run(workspace, sorted(videos))
    per_video = video_tracks(workspace, videos, source, run)
    with staged_folder(out, "export") as build:
        files = WRITERS[fmt](workspace, per_video, build, url_prefix)
        manifest = {"format": fmt, "dense": True, "source": source, "model_version": run.name if run else None,
                    "videos": len(videos), "files": [str(f.relative_to(build.resolve())) for f in files]}
        inside(build, "sparselabel-export.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return [out / f.relative_to(build.resolve()) for f in files], source


def video_tracks(workspace, videos: dict[str, Video], source: str, run: Path | None
                 ) -> Iterator[tuple[Video, list[DenseTrack]]]:
    """(video, dense tracks) for each pool video, one video in memory at a time."""
    answers: dict[str, list] = {}
    for answer in workspace.ledger.annotations():
        answers.setdefault(answer.video_id, []).append(answer)
    for vid in sorted(videos):
        boxes, label = None, 0
        if run is not None:
            prediction = VideoPrediction.load(run, vid)
            boxes = frame_boxes(prediction.fg, prediction.size, workspace.config.detection)
            known = videos[vid].label  # a pool video's class is known; the model's guess otherwise
            label = known if known >= 0 else int(top_classes(prediction.class_scores, 1)[0])
        yield videos[vid], dense_tracks(source, videos[vid].num_frames, answers.get(vid, []), boxes, label,
                                workspace.config.detection, FusionConfig())


# --- writers: each takes (workspace, iterator of (video, tracks), folder, url prefix) -----------


def _write_json(workspace, per_video, out: Path, prefix: str) -> list[Path]:
    target = inside(out, "dense.jsonl")
    classes = workspace.ledger.classes
    with target.open("w") as fh:
        for video, tracks in per_video:
            for frame in range(video.num_frames):
                actors = [_actor(t, k, classes) for t in tracks for k in np.flatnonzero(t.frames == frame)]
                line = {"format": jsonl.LINE_FORMAT, "video": video.id, "frame": frame, "answered": True,
                        "width": video.width, "height": video.height, "actors": actors}
                fh.write(json.dumps(line) + "\n")
    return [target]


def _actor(track: DenseTrack, k: int, classes: list[str]) -> dict:
    return {"actor": track.actor, "label": classes[track.label], "box": [round(float(c), 2) for c in track.boxes[k]],
            "source": SOURCES[track.source[k]], "confidence": round(float(track.confidence[k]), 4)}


def _write_mot(workspace, per_video, out: Path, prefix: str) -> list[Path]:
    """MOTChallenge ground-truth layout; ids and classes 1-based, column 7 the confidence."""
    classes = workspace.ledger.classes
    files = []
    for video, tracks in per_video:
        folder = inside(out, f"mot/{escape_id(video.id)}/gt")
        folder.mkdir(parents=True, exist_ok=True)
        rows = sorted((int(f) + 1, t.actor + 1, *_xywh(b), float(c), t.label + 1)
                      for t in tracks for f, b, c in zip(t.frames, t.boxes, t.confidence, strict=True))
        (folder / "gt.txt").write_text("".join(f"{f},{i},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{c:.4f},{k},1\n"
                                               for f, i, x, y, w, h, c, k in rows))
        (folder / "labels.txt").write_text("".join(f"{name}\n" for name in classes))
        files.append(folder / "gt.txt")
    return files


def _xywh(box: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(c) for c in box)
    return x1, y1, x2 - x1, y2 - y1


def _write_act_pkl(workspace, per_video, out: Path, prefix: str) -> list[Path]:
    """One ACT pickle: every pool video in split 1's train list (boxes only: no source there)."""
    videos, tubes = {}, {}
    for video, tracks in per_video:
        videos[video.id] = video
        tubes[video.id] = [Tube(t.label, t.frames, t.boxes) for t in tracks]
    dataset = Dataset("dense", workspace.ledger.classes, videos, tubes, {"train": list(videos), "test": []})
    return [write_act_pkl(dataset, inside(out, "dense-GT.pkl"))]


def _write_cvat(workspace, per_video, out: Path, prefix: str) -> list[Path]:
    """CVAT for video 1.1 per video: every box a keyframe; a gap or the end closes the track
    with an ``outside`` keyframe, as CVAT writes tracks."""
    classes = workspace.ledger.classes
    files = []
    for video, tracks in per_video:
        root = cvat.task_root(video.id, video.num_frames, classes, (video.width, video.height), CVAT_ATTRIBUTES)
        for t in tracks:
            element = ET.SubElement(root, "track", id=str(t.actor), label=classes[t.label], source="auto")
            for k, frame in enumerate(t.frames.tolist()):
                attributes = {"source": SOURCES[t.source[k]], "confidence": f"{t.confidence[k]:.4f}"}
                cvat.track_box(element, frame, t.boxes[k], outside=False, keyframe=True, attributes=attributes)
                ends = k + 1 == len(t.frames) or t.frames[k + 1] != frame + 1
                if ends and frame + 1 < video.num_frames:
                    cvat.track_box(element, frame + 1, t.boxes[k], outside=True, keyframe=True,
                                   attributes=attributes)
        target = inside(out, f"cvat/{escape_id(video.id)}/annotations.xml")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(cvat.answers_document(root))
        files.append(target)
    return files


def _write_labelstudio(workspace, per_video, out: Path, prefix: str) -> list[Path]:
    """Video tasks with the dense boxes as a prediction, for review in Label Studio."""
    classes = workspace.ledger.classes
    tasks = []
    for video, tracks in per_video:
        # The ledger keeps no paths; percent coordinates are of the played (even-sized) video.
        video_file, played = write_task_video(workspace.dataset.videos[video.id], out)
        regions = [labelstudio.dense_region(t, classes[t.label], video, played, SOURCES) for t in tracks]
        score = float(np.mean([r["score"] for r in regions])) if regions else 0.0
        tasks.append({"data": {"video": labelstudio.url(prefix, video_file), "video_id": video.id,
                               "fps": video.fps, "width": video.width, "height": video.height,
                               "video_width": played[0], "video_height": played[1]},
                      "predictions": [{"model_version": "sparselabel-dense", "score": score, "result": regions}]})
    target = inside(out, "labelstudio/dense-tasks.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(tasks, indent=1))
    config = inside(out, "labelstudio/video-config.xml")
    config.write_text(labelstudio.video_config(classes, ask=False))  # every frame, none asked
    return [target, config]


WRITERS = {"json": _write_json, "mot": _write_mot, "act-pkl": _write_act_pkl, "cvat": _write_cvat,
           "labelstudio": _write_labelstudio}

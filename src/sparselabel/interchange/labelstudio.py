"""Label Studio JSON tasks: image tasks with ``rectanglelabels`` and video tasks with ``videorectangle``.

A task is ``{"data": {...}, "predictions": [...]}``; Label Studio's JSON export
is a list of such tasks, each with ``annotations: [{"result": [...]}]``.

- Image results: ``type: "rectanglelabels"``, ``from_name`` / ``to_name`` naming
  the ``<RectangleLabels>`` and ``<Image>`` tags of the labeling config,
  ``original_width`` / ``original_height`` in pixels and ``value: {x, y, width,
  height, rotation, rectanglelabels: [name]}`` in percent of the image size
  (``x, y`` the top-left corner; rotation is clockwise about that corner).
- Video results: ``type: "videorectangle"``, ``value: {framesCount, duration,
  labels: [name], sequence: [{frame, enabled, x, y, width, height, rotation,
  time}]}``. Each sequence item is a keyframe; ``frame`` counts from 1 and
  ``time`` is in seconds. ``enabled: false`` ends the region's lifespan after
  that keyframe (the box is still there on the keyframe itself); frames
  between an enabled keyframe and the next are interpolated by Label Studio
  and are not anyone's statement about that frame.

Our tasks carry ``data.video_id`` and ``data.frame`` (image tasks) or
``data.frames`` (video tasks, 0-based), which Label Studio keeps and exports
back, so answers map to frames without trusting the media URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree as ET

from sparselabel.errors import AnnotationError
from sparselabel.interchange.common import (
    BoxAnswer,
    FrameAnswer,
    ParsedFile,
    PreBox,
    PreTrack,
    TaskFrame,
    VideoAnswer,
    check_relative_name,
    rotated_envelope,
    video_size,
)
from sparselabel.jsonio import finite_number, parse_json, whole_number

FORMAT = "labelstudio"
IMAGE_TAG, RECT_TAG = "image", "label"  # <Image name>, <RectangleLabels name>
VIDEO_TAG, VIDEO_RECT_TAG, VIDEO_LABELS_TAG = "video", "box", "videoLabels"
BOX_TYPES = ("rectanglelabels", "rectangle", "labels")  # a region's geometry and its label may come apart
VIDEO_TYPES = ("videorectangle", "labels")


# --- writing ------------------------------------------------------------------------------


def image_config(classes: list[str]) -> str:
    """Labeling config for the image tasks: one image, rectangles with our class names."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE_TAG, value="$image")
    labels = ET.SubElement(view, "RectangleLabels", name=RECT_TAG, toName=IMAGE_TAG)
    for name in classes:
        ET.SubElement(labels, "Label", value=name)
    return _xml(view)


def video_config(classes: list[str]) -> str:
    """Labeling config for the video tasks; ``frameRate`` comes from each task's ``data.fps``."""
    view = ET.Element("View")
    ET.SubElement(view, "Video", name=VIDEO_TAG, value="$video", frameRate="$fps")
    ET.SubElement(view, "VideoRectangle", name=VIDEO_RECT_TAG, toName=VIDEO_TAG)
    labels = ET.SubElement(view, "Labels", name=VIDEO_LABELS_TAG, toName=VIDEO_TAG)
    for name in classes:
        ET.SubElement(labels, "Label", value=name)
    return _xml(view)


def _xml(element: ET.Element) -> str:
    ET.indent(element)
    return ET.tostring(element, encoding="unicode") + "\n"


def url(prefix: str, relative: str) -> str:
    """Media URL of an exported file; escaped names are quoted again so a server decodes them back."""
    return prefix + quote(relative, safe="/")


def image_task(frame: TaskFrame, prefix: str, model_version: str | None) -> dict:
    """One image task per selected frame, with the model's boxes as a prediction when pre-annotated."""
    task = {"data": {"image": url(prefix, frame.image), "video_id": frame.video_id, "frame": frame.frame,
                     "cycle": frame.cycle, "width": frame.width, "height": frame.height}}
    if model_version is not None:
        result = [_rectangle(f"p{k}", pre, frame) for k, pre in enumerate(frame.boxes)]
        task["predictions"] = [{"model_version": model_version, "score": _mean([b.score for b in frame.boxes]),
                                "result": result}]
    return task


def _rectangle(region: str, pre: PreBox, frame: TaskFrame) -> dict:
    return {"id": region, "from_name": RECT_TAG, "to_name": IMAGE_TAG, "type": "rectanglelabels",
            "original_width": frame.width, "original_height": frame.height, "image_rotation": 0,
            "score": pre.score, "value": {**_percent(pre.box, frame.width, frame.height), "rotation": 0,
                                          "rectanglelabels": [pre.label]}}


def video_task(frames: list[TaskFrame], video_file: str, prefix: str, tracks: list[PreTrack],
               model_version: str | None) -> dict:
    """One task per video: the selected frames listed in ``data.frames``, predicted tubes as regions."""
    first = frames[0]
    task = {"data": {"video": url(prefix, video_file), "video_id": first.video_id, "fps": first.fps,
                     "frames": [f.frame for f in frames], "cycle": first.cycle,
                     "width": first.width, "height": first.height}}
    if model_version is not None:
        selected = [f.frame for f in frames]
        result = [r for r in (_video_region(t, selected, first) for t in tracks) if r is not None]
        task["predictions"] = [{"model_version": model_version, "score": _mean([t.score for t in tracks]),
                                "result": result}]
    return task


def _video_region(track: PreTrack, selected: list[int], frame: TaskFrame) -> dict | None:
    """A tube as keyframes on the selected frames it covers; the last one ends its lifespan."""
    keys = [(f, track.box_at(f)) for f in selected]
    keys = [(f, box) for f, box in keys if box is not None]
    if not keys:
        return None
    sequence = [{"frame": f + 1, "enabled": k < len(keys) - 1, "rotation": 0, "time": f / frame.fps,
                 **_percent(box, frame.width, frame.height)} for k, (f, box) in enumerate(keys)]
    return {"id": f"t{track.track}", "from_name": VIDEO_RECT_TAG, "to_name": VIDEO_TAG, "type": "videorectangle",
            "score": track.score, "value": {"framesCount": frame.num_frames, "duration": frame.num_frames / frame.fps,
                                            "sequence": sequence, "labels": [track.label]}}


def _percent(box, width: int, height: int) -> dict[str, float]:
    x1, y1, x2, y2 = (float(c) for c in box)
    return {"x": 100 * x1 / width, "y": 100 * y1 / height,
            "width": 100 * (x2 - x1) / width, "height": 100 * (y2 - y1) / height}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


# --- reading ------------------------------------------------------------------------------


def parse(data: bytes, path: Path, sizes: Mapping[str, tuple[int, int]]) -> ParsedFile:
    """The answers of a Label Studio JSON export (a list of tasks) of tasks we exported."""
    tasks = _load(data, path)
    parsed = ParsedFile(FORMAT)
    for index, task in enumerate(tasks):
        where = f"task {task.get('id', index) if isinstance(task, dict) else index}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise AnnotationError(f"{where}: not a Label Studio task (no 'data' object)", path)
        data_ = task["data"]
        video_id = data_.get("video_id")
        if not isinstance(video_id, str):
            raise AnnotationError(f"{where}: no data.video_id; import tasks that `sparselabel export` wrote", path)
        for key in ("image", "video"):
            if isinstance(data_.get(key), str):
                check_relative_name(data_[key], where, path)
        annotation = _latest_annotation(task, where, path, parsed)
        if annotation is None:
            parsed.unanswered += 1
            continue
        result = annotation.get("result")
        if not isinstance(result, list):
            raise AnnotationError(f"{where}: annotation 'result' is not a list", path)
        size = video_size(sizes, video_id, where, path)
        if "frames" in data_:
            parsed.videos.append(_video_answer(video_id, data_["frames"], result, size, where, path))
        elif "frame" in data_:
            frame = whole_number(data_["frame"], f"{where} data.frame", path)
            parsed.frames.append(FrameAnswer(video_id, frame, _image_boxes(result, size, where, path), where))
        else:
            raise AnnotationError(f"{where}: data has neither 'frame' nor 'frames'", path)
    return parsed


def _load(data: bytes, path: Path) -> list:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc})", path) from exc
    tasks = parse_json(text, path)
    if not isinstance(tasks, list):
        raise AnnotationError("expected a JSON list of tasks (Label Studio's JSON export)", path)
    return tasks


def _latest_annotation(task: dict, where: str, path: Path, parsed: ParsedFile) -> dict | None:
    """The most recent annotation that was not skipped; None when nobody answered the task."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise AnnotationError(f"{where}: 'annotations' is not a list of objects", path)
    kept = [(str(a.get("updated_at") or a.get("created_at") or ""), k, a)
            for k, a in enumerate(annotations) if not a.get("was_cancelled")]
    if len(kept) > 1:
        parsed.notes.append(f"{where}: {len(kept)} annotations, used the most recent")
    return max(kept, key=lambda item: item[:2])[2] if kept else None


def _regions(result: list, types: tuple[str, ...], where: str, path: Path) -> dict[str, list[dict]]:
    """Result items grouped by region id, in order of first appearance."""
    regions: dict[str, list[dict]] = {}
    for k, item in enumerate(result):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in types:
            raise AnnotationError(f"{where}: result type {kind!r} is not supported (expected {', '.join(types)})", path)
        if not isinstance(item.get("value"), dict):
            raise AnnotationError(f"{where}: result {k} has no 'value' object", path)
        regions.setdefault(str(item.get("id", f"#{k}")), []).append(item)
    return regions


def _label(items: list[dict], where: str, path: Path) -> str:
    names = [n for item in items for key in ("rectanglelabels", "labels") for n in item["value"].get(key) or []]
    if len(names) != 1 or not isinstance(names[0], str):
        raise AnnotationError(f"{where}: a box needs exactly one label, has {names}", path)
    return names[0]


def _pixels(value: dict, size: tuple[int, int], where: str, path: Path) -> tuple[float, float, float, float]:
    """Percent x, y, width, height (rotated about the top-left corner) -> pixel corners."""
    width, height = size
    x, y, w, h = (finite_number(value.get(k), f"{where} {k}", path) for k in ("x", "y", "width", "height"))
    rotation = finite_number(value.get("rotation", 0), f"{where} rotation", path)
    px, py, pw, ph = x * width / 100, y * height / 100, w * width / 100, h * height / 100
    return rotated_envelope(px, py, pw, ph, rotation, (px, py))


def _image_boxes(result: list, size: tuple[int, int], where: str, path: Path) -> list[BoxAnswer]:
    boxes = []
    for region, items in _regions(result, BOX_TYPES, where, path).items():
        what = f"{where} region {region!r}"
        shapes = [item for item in items if item["type"] != "labels"]
        if len(shapes) != 1:
            raise AnnotationError(f"{what}: expected one rectangle, found {len(shapes)}", path)
        boxes.append((_pixels(shapes[0]["value"], size, what, path), _label(items, what, path)))
    # Region ids are random strings: actors are numbered left to right within the frame.
    boxes.sort(key=lambda item: (item[0][0], item[0][1]))
    return [BoxAnswer(k, label, box) for k, (box, label) in enumerate(boxes)]


def _video_answer(video_id: str, frames: object, result: list, size: tuple[int, int],
                  where: str, path: Path) -> VideoAnswer:
    if not isinstance(frames, list):
        raise AnnotationError(f"{where}: data.frames is not a list", path)
    task_frames = [whole_number(f, f"{where} data.frames", path) for f in frames]
    keyframes: dict[int, list[BoxAnswer]] = {}
    for actor, (region, items) in enumerate(_regions(result, VIDEO_TYPES, where, path).items()):
        what = f"{where} region {region!r}"
        label = _label(items, what, path)
        for item in items:
            sequence = item["value"].get("sequence", [])
            if not isinstance(sequence, list):
                raise AnnotationError(f"{what}: 'sequence' is not a list", path)
            at_frame = {}
            for key in sequence:  # every item is a keyframe, enabled or not
                if not isinstance(key, dict):
                    raise AnnotationError(f"{what}: a sequence item is not an object", path)
                frame = whole_number(key.get("frame"), f"{what} sequence frame", path) - 1
                box = _pixels(key, size, f"{what} frame {frame + 1}", path)
                if frame in at_frame and at_frame[frame] != box:  # which one the annotator meant is unknown
                    raise AnnotationError(f"{what}: two keyframes on frame {frame + 1} with different boxes", path)
                at_frame[frame] = box
            for frame, box in at_frame.items():
                keyframes.setdefault(frame, []).append(BoxAnswer(actor, label, box))
    return VideoAnswer((video_id,), keyframes, task_frames, where)

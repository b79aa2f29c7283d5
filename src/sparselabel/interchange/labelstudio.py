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
  between an enabled keyframe and the next (to the end of the video after the
  last) are interpolated by Label Studio and are not anyone's statement about
  that frame: a frame asked there without a keyframe is ambiguous
  (``common.Span``). Exports with interpolated keyframes list those frames as
  items with ``auto: true``. Percent coordinates are relative to the video
  played (``data.video_width`` / ``video_height``: odd sizes are padded).

Our tasks carry ``data.video_id`` and ``data.frame`` (image tasks) or
``data.frames`` (video tasks, 0-based; ``data.ask`` says them in Label Studio's
numbering), which Label Studio keeps and exports back, so answers map to
frames without trusting the media URLs. Read: the JSON export and export
snapshots (the same list of tasks) and JSON-MIN (flat records, see below).
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
    Span,
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
ASK_FIELD = "ask"  # data field of video tasks that the config's <Header> shows
# Keys JSON-MIN adds to a task's data fields (label_studio_sdk.converter: convert_to_json_min).
JSON_MIN_KEYS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
                 "history", "was_cancelled", "completed_by")


# --- writing ------------------------------------------------------------------------------


def image_config(classes: list[str]) -> str:
    """Labeling config for the image tasks: one image, rectangles with our class names."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE_TAG, value="$image")
    labels = ET.SubElement(view, "RectangleLabels", name=RECT_TAG, toName=IMAGE_TAG)
    for name in classes:
        ET.SubElement(labels, "Label", value=name)
    return _xml(view)


def video_config(classes: list[str], ask: bool = True) -> str:
    """Labeling config for the video tasks; ``frameRate`` comes from each task's ``data.fps``, and
    (``ask``) a header shows ``data.ask``: which frames to annotate, in Label Studio's numbering."""
    view = ET.Element("View")
    if ask:
        ET.SubElement(view, "Header", value=f"${ASK_FIELD}", size="5")
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
               model_version: str | None, played: tuple[int, int] | None = None) -> dict:
    """One task per video: the selected frames listed in ``data.frames`` (0-based) and, for people,
    in ``data.ask`` (Label Studio's 1-based numbers); predicted tubes as regions.

    ``played`` is the (width, height) of the video file the task plays (frames padded to even
    sizes for H.264): Label Studio's percent coordinates are relative to it."""
    first = frames[0]
    played = played or (first.width, first.height)
    task = {"data": {"video": url(prefix, video_file), "video_id": first.video_id, "fps": first.fps,
                     "frames": [f.frame for f in frames], ASK_FIELD: ask_text([f.frame for f in frames]),
                     "cycle": first.cycle, "width": first.width, "height": first.height,
                     "video_width": played[0], "video_height": played[1]}}
    if model_version is not None:
        selected = [f.frame for f in frames]
        result = [r for r in (_video_region(t, selected, first, played) for t in tracks) if r is not None]
        task["predictions"] = [{"model_version": model_version, "score": _mean([t.score for t in tracks]),
                                "result": result}]
    return task


def ask_text(frames: list[int]) -> str:
    """What the video task's header says: the asked frames in Label Studio's numbering (from 1)."""
    numbers = ", ".join(str(f + 1) for f in frames)
    return (f"Annotate frames {numbers} (Label Studio's frame numbers): on each, a keyframe on the box of "
            "every actor in view; no box where nobody is (end the region before that frame).")


def _video_region(track: PreTrack, selected: list[int], frame: TaskFrame, played: tuple[int, int]) -> dict | None:
    """A tube as keyframes on the selected frames it covers; the last one ends its lifespan."""
    keys = [(f, track.box_at(f)) for f in selected]
    keys = [(f, box) for f, box in keys if box is not None]
    if not keys:
        return None
    sequence = [{"frame": f + 1, "enabled": k < len(keys) - 1, "rotation": 0, "time": f / frame.fps,
                 **_percent(box, *played)} for k, (f, box) in enumerate(keys)]
    return {"id": f"t{track.track}", "from_name": VIDEO_RECT_TAG, "to_name": VIDEO_TAG, "type": "videorectangle",
            "score": track.score, "value": {"framesCount": frame.num_frames, "duration": frame.num_frames / frame.fps,
                                            "sequence": sequence, "labels": [track.label]}}


def dense_region(track, label: str, video, played: tuple[int, int], sources: tuple[str, ...]) -> dict:
    """A dense track as a video rectangle with a keyframe on every frame (Label Studio counts
    frames from 1); a gap or the end of the track is closed by ``enabled: false``.
    Each item also carries the box's ``source`` and ``confidence``; percentages are of the
    ``played`` (width, height) of the task's video file."""
    frames = track.frames.tolist()
    sequence = []
    for k, frame in enumerate(frames):
        ends = k + 1 == len(frames) or frames[k + 1] != frame + 1
        sequence.append({"frame": frame + 1, "enabled": not ends, "rotation": 0, "time": frame / video.fps,
                         **_percent(track.boxes[k], *played),
                         "source": sources[track.source[k]], "confidence": round(float(track.confidence[k]), 4)})
    return {"id": f"d{track.actor}", "from_name": VIDEO_RECT_TAG, "to_name": VIDEO_TAG, "type": "videorectangle",
            "score": _mean(track.confidence.tolist()),
            "value": {"framesCount": video.num_frames, "duration": video.num_frames / video.fps,
                      "sequence": sequence, "labels": [label]}}


def _percent(box, width: int, height: int) -> dict[str, float]:
    x1, y1, x2, y2 = (float(c) for c in box)
    return {"x": 100 * x1 / width, "y": 100 * y1 / height,
            "width": 100 * (x2 - x1) / width, "height": 100 * (y2 - y1) / height}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


# --- reading ------------------------------------------------------------------------------


def parse(data: bytes, path: Path, sizes: Mapping[str, tuple[int, int]]) -> ParsedFile:
    """The answers of a Label Studio export of tasks we exported: JSON (also a snapshot export,
    which has the same shape) or JSON-MIN (one flat record per annotation)."""
    tasks = _load(data, path)
    parsed = ParsedFile(FORMAT)
    if _is_json_min(tasks):
        tasks = _from_json_min(tasks, path)
        parsed.notes.append("read as Label Studio JSON-MIN (no region ids: actors are numbered in region order)")
    drafts = 0
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
            drafts += bool(task.get("drafts"))
            continue
        result = annotation.get("result")
        if not isinstance(result, list):
            raise AnnotationError(f"{where}: annotation 'result' is not a list", path)
        size = video_size(sizes, video_id, where, path)
        if "frames" in data_:
            parsed.videos.append(_video_answer(video_id, data_, result, size, where, path))
        elif "frame" in data_:
            frame = whole_number(data_["frame"], f"{where} data.frame", path)
            parsed.frames.append(FrameAnswer(video_id, frame, _image_boxes(result, size, where, path), where))
        else:
            raise AnnotationError(f"{where}: data has neither 'frame' nor 'frames'", path)
    if drafts:
        parsed.notes.append(f"{drafts} tasks have only drafts, which are not submitted answers")
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


# --- JSON-MIN -----------------------------------------------------------------------------
# Label Studio's JSON-MIN export writes one record per submitted annotation (and one per task
# nobody annotated): the task's data fields at the top level, the task "id", then per control
# tag name (from_name) the list of its regions' "value" objects (no id, no type: a value with
# "sequence" is a video rectangle, with "rectanglelabels" a labelled box), then "annotator",
# "annotation_id" (null for a task nobody annotated), "created_at", "updated_at", "lead_time".
# Region ids are dropped, so a label chosen apart from its box cannot be matched to it.


def _is_json_min(tasks: list) -> bool:
    return bool(tasks) and all(isinstance(t, dict) and not isinstance(t.get("data"), dict) and "video_id" in t
                               for t in tasks)


def _is_output(value: object) -> bool:
    """A from_name's list of region values (data fields of our tasks are never lists of objects)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _from_json_min(records: list[dict], path: Path) -> list[dict]:
    """JSON-MIN records as JSON tasks (several records of one task: its annotations)."""
    if not any("annotation_id" in r for r in records):
        raise AnnotationError("a Label Studio JSON-MIN export without annotation_id cannot tell a task nobody "
                              "answered from one answered 'nobody there'; export as JSON instead", path)
    tasks: dict[str, dict] = {}
    for k, record in enumerate(records):
        outputs = {key: value for key, value in record.items() if _is_output(value)}
        data_ = {key: value for key, value in record.items() if key not in outputs and key not in JSON_MIN_KEYS}
        task_id = record.get("id", f"#{k}")
        task = tasks.setdefault(repr(task_id), {"id": task_id, "data": data_, "annotations": []})
        if record.get("annotation_id") is None:
            continue
        where = f"task {task_id}"
        result = [_min_result(name, j, value, where, path) for name, values in outputs.items()
                  for j, value in enumerate(values)]
        task["annotations"].append({"id": record["annotation_id"], "created_at": record.get("created_at"),
                                    "updated_at": record.get("updated_at"), "result": result})
    return list(tasks.values())


def _min_result(from_name: str, index: int, value: dict, where: str, path: Path) -> dict:
    """A JSON-MIN region value as a JSON result item, its type told by what it holds."""
    if "sequence" in value:
        kind = "videorectangle"
    elif "rectanglelabels" in value:
        kind = "rectanglelabels"
    elif "x" in value:
        kind = "rectangle"
    elif "labels" in value:
        raise AnnotationError(f"{where}: JSON-MIN keeps labels chosen apart from their boxes ({from_name!r}) "
                              "without the region ids that link them; export as JSON instead", path)
    else:
        raise AnnotationError(f"{where}: {from_name!r} holds neither boxes nor video rectangles", path)
    rest = {key: v for key, v in value.items() if key not in ("type", "original_width", "original_height")}
    return {"id": f"{from_name}#{index}", "from_name": from_name, "type": kind, "value": rest}


# --- tasks and regions --------------------------------------------------------------------


def _latest_annotation(task: dict, where: str, path: Path, parsed: ParsedFile) -> dict | None:
    """The most recent annotation that was not skipped; None when nobody answered the task."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise AnnotationError(f"{where}: 'annotations' is not a list of objects", path)
    kept = [(str(a.get("updated_at") or a.get("created_at") or ""), k, a)
            for k, a in enumerate(annotations) if not (a.get("was_cancelled") or a.get("skipped"))]
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


# --- video tasks --------------------------------------------------------------------------


def _video_answer(video_id: str, data_: dict, result: list, size: tuple[int, int],
                  where: str, path: Path) -> VideoAnswer:
    frames = data_["frames"]
    if not isinstance(frames, list):
        raise AnnotationError(f"{where}: data.frames is not a list", path)
    task_frames = [whole_number(f, f"{where} data.frames", path) for f in frames]
    played = _played_size(data_, size, where, path)
    keyframes: dict[int, list[BoxAnswer]] = {}
    spans: list[Span] = []
    names: dict[int, str] = {}
    for actor, (region, items) in enumerate(_regions(result, VIDEO_TYPES, where, path).items()):
        what = f"{where} region {region!r}"
        names[actor] = f"region {actor + 1} (id {region!r})"
        label = _label(items, what, path)
        keys, interpolated = _sequence(items, size, played, what, path)
        for frame, (box, _) in keys.items():
            keyframes.setdefault(frame, []).append(BoxAnswer(actor, label, box))
        spans.extend(_region_spans(actor, keys, interpolated))
    return VideoAnswer((video_id,), keyframes, task_frames, where, spans=spans, names=names, near_miss=True)


def _played_size(data_: dict, size: tuple[int, int], where: str, path: Path) -> tuple[int, int]:
    """The size of the video Label Studio played (our exports pad odd sizes by one pixel):
    percent coordinates are relative to it."""
    if "video_width" not in data_ and "video_height" not in data_:
        return size
    played = tuple(whole_number(data_.get(k), f"{where} data.{k}", path) for k in ("video_width", "video_height"))
    if any(p not in (s, s + 1) for p, s in zip(played, size, strict=True)):
        raise AnnotationError(f"{where}: data.video_width/video_height {played[0]}x{played[1]} do not fit the "
                              f"{size[0]}x{size[1]} video", path)
    return played


def _sequence(items: list[dict], size: tuple[int, int], played: tuple[int, int], where: str, path: Path
              ) -> tuple[dict[int, tuple[tuple, bool]], set[int]]:
    """A region's keyframes, 0-based frame -> (pixel box, enabled), and the frames of interpolated
    items (``auto: true``, written by an export with interpolated keyframes), which are not answers."""
    keys: dict[int, tuple[tuple, bool]] = {}
    interpolated: set[int] = set()
    for item in items:
        sequence = item["value"].get("sequence", [])
        if not isinstance(sequence, list):
            raise AnnotationError(f"{where}: 'sequence' is not a list", path)
        for key in sequence:
            if not isinstance(key, dict):
                raise AnnotationError(f"{where}: a sequence item is not an object", path)
            frame = whole_number(key.get("frame"), f"{where} sequence frame", path) - 1
            if key.get("auto"):
                interpolated.add(frame)
                continue
            box = _unpad(_pixels(key, played, f"{where} frame {frame + 1}", path), size, played)
            if frame in keys and keys[frame][0] != box:  # which one the annotator meant is unknown
                raise AnnotationError(f"{where}: two keyframes on frame {frame + 1} with different boxes", path)
            keys[frame] = (box, bool(key.get("enabled", True)) or keys.get(frame, (box, False))[1])
    return keys, interpolated


def _unpad(box: tuple, size: tuple[int, int], played: tuple[int, int]) -> tuple:
    """Edges in the padding column / row beyond the video's own right / bottom edge are put on that edge."""
    limits = (size[0], size[1], size[0], size[1])
    ends = (played[0], played[1], played[0], played[1])
    return tuple(min(c, m) if m < c <= end + 0.01 else c for c, m, end in zip(box, limits, ends, strict=True))


def _region_spans(actor: int, keys: dict[int, tuple[tuple, bool]], interpolated: set[int]) -> list[Span]:
    """Where Label Studio shows the region without a keyframe: after an enabled keyframe up to the
    next one (to the end of the video after the last), and on interpolated items."""
    order = sorted(keys)
    spans = []
    for k, frame in enumerate(order):
        if not keys[frame][1]:
            continue
        last = order[k + 1] - 1 if k + 1 < len(order) else None
        if last is None or last > frame:
            spans.append(Span(frame + 1, last, actor))
    spans.extend(Span(f, f, actor) for f in sorted(interpolated - set(keys)))
    return spans

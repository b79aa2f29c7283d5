"""CVAT XML annotation format 1.1: "CVAT for video" (tracks) and "CVAT for images" (images).

Both share ``<annotations><version>1.1</version><meta><task>...<labels>``.

- For images: one ``<image id name width height>`` per image, holding
  ``<box label xtl ytl xbr ybr occluded z_order>`` shapes. ``id`` is the
  image's index in the lexical order of the names, as CVAT numbers them.
- For video: ``<track id label source>`` elements holding one
  ``<box frame xtl ytl xbr ybr outside occluded keyframe z_order>`` per frame
  of the track. Only ``keyframe="1"`` shapes are a person's statement about a
  frame; ``keyframe="0"`` shapes are CVAT's interpolation between keyframes,
  and ``outside="1"`` says the object is not in the frame. A track is shown
  from an inside keyframe up to the next keyframe (to the end of the task
  after the last): there, without a keyframe of its own, it makes a frame's
  answer ambiguous (``common.Span``). Frame numbers are the whole video's
  (CVAT writes start_frame + index * frame step); ``<meta><task>`` says which
  frames the task holds (``_covered_frames``).

Coordinates are pixels of the original frame. Parsing goes through
``defusedxml`` with DTDs forbidden: CVAT never writes a DTD, so a document
with one (entity expansion, external entities) is refused outright.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree as ET  # building our own documents only; parsing is defused

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from sparselabel.errors import AnnotationError
from sparselabel.interchange.common import (
    EXPORT_MARKER,
    BoxAnswer,
    ExportBatch,
    FrameAnswer,
    ParsedFile,
    PreTrack,
    Span,
    TaskFrame,
    VideoAnswer,
    check_relative_name,
    parse_frame_file_name,
    rotated_envelope,
)
from sparselabel.jsonio import finite_number, whole_number

VIDEO, IMAGES = "cvat", "cvat-images"
VERSION = "1.1"
# Shapes CVAT can write that are not boxes: refused rather than silently dropped.
OTHER_SHAPES = ("polygon", "polyline", "points", "mask", "cuboid", "ellipse", "skeleton")


# --- writing ------------------------------------------------------------------------------


def images_xml(batch: ExportBatch) -> bytes:
    """A CVAT-for-images document: every selected frame as an image, pre-annotations as boxes."""
    frames = sorted(batch.frames, key=lambda f: Path(f.image).name)
    root = _root(f"sparselabel cycle {batch.cycle}", len(frames), "annotation", batch.classes)
    for index, frame in enumerate(frames):
        image = ET.SubElement(root, "image", id=str(index), name=Path(frame.image).name,
                              width=str(frame.width), height=str(frame.height))
        for pre in frame.boxes:
            ET.SubElement(image, "box", label=pre.label, source="auto", occluded="0", z_order="0",
                          **_corners(pre.box))
    return _document(root)


def video_xml(video_id: str, frames: list[TaskFrame], tracks: list[PreTrack], classes: list[str]) -> bytes:
    """A CVAT-for-video document for one video (one CVAT task), one track per predicted tube.

    A track's shapes on the selected frames are keyframes; its other frames are
    interpolated shapes (``keyframe="0"``), and a closing ``outside="1"``
    keyframe right after the tube ends it, as CVAT itself writes tracks.
    """
    first = frames[0]
    root = _root(video_id, first.num_frames, "interpolation", classes, (first.width, first.height))
    selected = {f.frame for f in frames}
    for track in tracks:
        element = ET.SubElement(root, "track", id=str(track.track), label=track.label, source="auto")
        for frame, box in zip(track.frames.tolist(), track.boxes.tolist(), strict=True):
            track_box(element, frame, box, outside=False, keyframe=frame in selected)
        end = int(track.frames[-1]) + 1
        if end < first.num_frames:
            track_box(element, end, track.boxes[-1].tolist(), outside=True, keyframe=True)
    return _document(root)


def task_root(name: str, size: int, classes: list[str], original_size: tuple[int, int],
              attributes: dict[str, tuple[str, ...] | None]) -> ET.Element:
    """A CVAT-for-video document's root whose labels declare per-box ``attributes``
    (a select over the given values, or free text for None)."""
    root = _root(name, size, "interpolation", classes, original_size)
    for declared in root.iter("attributes"):
        for key, values in attributes.items():
            attribute = ET.SubElement(declared, "attribute")
            for tag, text in (("name", key), ("mutable", "True"),
                              ("input_type", "text" if values is None else "select"),
                              ("default_value", "" if values is None else values[0]),
                              ("values", "" if values is None else "\n".join(values))):
                ET.SubElement(attribute, tag).text = text
    return root


def _root(name: str, size: int, mode: str, classes: list[str],
          original_size: tuple[int, int] | None = None) -> ET.Element:
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = VERSION
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for key, value in (("name", name), ("size", str(size)), ("mode", mode), ("overlap", "0"), ("flipped", "False")):
        ET.SubElement(task, key).text = value
    labels = ET.SubElement(task, "labels")
    for class_name in classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = class_name
        ET.SubElement(label, "attributes")
    if original_size is not None:
        size_element = ET.SubElement(task, "original_size")
        ET.SubElement(size_element, "width").text = str(original_size[0])
        ET.SubElement(size_element, "height").text = str(original_size[1])
    return root


def _corners(box) -> dict[str, str]:
    return {key: f"{float(value):.2f}" for key, value in zip(("xtl", "ytl", "xbr", "ybr"), box, strict=True)}


def track_box(track: ET.Element, frame: int, box, outside: bool, keyframe: bool,
              attributes: dict[str, str] | None = None) -> None:
    shape = ET.SubElement(track, "box", frame=str(frame), outside=str(int(outside)), occluded="0",
                          keyframe=str(int(keyframe)), z_order="0", **_corners(box))
    for key, value in (attributes or {}).items():
        ET.SubElement(shape, "attribute", name=key).text = value


def answers_document(root: ET.Element) -> bytes:
    """A document of labels (a dense export), without the marker of a task file: CVAT and
    sparselabel's own import read it as annotations."""
    ET.indent(root)
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n").encode()


def _document(root: ET.Element) -> bytes:
    ET.indent(root)
    marker = (f"<!-- {EXPORT_MARKER}: tasks for CVAT, not answers. Upload it to the CVAT task, "
              "annotate, then export the task as CVAT 1.1 and import that file. -->")
    head = '<?xml version="1.0" encoding="utf-8"?>\n' + marker + "\n"
    return (head + ET.tostring(root, encoding="unicode") + "\n").encode()


# --- reading ------------------------------------------------------------------------------


def read_xml(data: bytes, path: Path) -> ET.Element:
    """Parse untrusted XML: no DTD, so no entity expansion and no external entities."""
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise AnnotationError(f"refusing XML that declares a DTD or entities ({type(exc).__name__}); "
                              "CVAT never writes them", path) from exc
    except ET.ParseError as exc:
        raise AnnotationError(f"not well-formed XML ({exc}); is the file truncated?", path) from exc


def parse(data: bytes, path: Path) -> ParsedFile:
    """The answers of a CVAT 1.1 export: for-images if it has ``<image>`` elements, else for-video."""
    root = read_xml(data, path)
    if root.tag != "annotations":
        raise AnnotationError(f"root element is <{root.tag}>, CVAT XML has <annotations>", path)
    version = (root.findtext("version") or "").strip()
    if not version.startswith("1."):
        raise AnnotationError(f"CVAT XML version {version!r}; this reads 1.x (CVAT 1.1)", path)
    has_images, has_tracks = root.find("image") is not None, root.find("track") is not None
    if has_images and has_tracks:
        raise AnnotationError("holds both <image> and <track> elements; export as CVAT for images "
                              "or CVAT for video, not a mix", path)
    return _parse_images(root, path) if has_images else _parse_video(root, path)


def _parse_images(root: ET.Element, path: Path) -> ParsedFile:
    parsed = ParsedFile(IMAGES)
    for image in root.iter("image"):
        name = _attr(image, "name", "<image>", path)
        where = f"image {name!r}"
        check_relative_name(name, where, path)
        key = parse_frame_file_name(name)
        if key is None:
            raise AnnotationError(f"{where}: not a frame exported by sparselabel (expected <video>__<frame>.jpg)", path)
        boxes = []
        for shape in image:
            if shape.tag in OTHER_SHAPES:
                raise AnnotationError(f"{where}: <{shape.tag}> shapes are not supported, only <box>", path)
            if shape.tag == "box":
                label = _attr(shape, "label", f"{where} <box>", path)
                boxes.append((_box(shape, f"{where} <box>", path), label))
        # No track ids in this format: actors are numbered left to right within the frame.
        boxes.sort(key=lambda item: (item[0][0], item[0][1]))
        answers = [BoxAnswer(k, label, box) for k, (box, label) in enumerate(boxes)]
        parsed.frames.append(FrameAnswer(key[0], key[1], answers, where))
    return parsed


def _parse_video(root: ET.Element, path: Path) -> ParsedFile:
    task = root.find("meta/task")
    if task is None:
        what = next((f"a {kind}" for kind in ("job", "project") if root.find(f"meta/{kind}") is not None), "no task")
        raise AnnotationError(f"CVAT for video export of {what}: export the whole task (named after the video)", path)
    name = (task.findtext("name") or "").strip()
    source = Path((task.findtext("source") or root.findtext("meta/source") or "").strip()).stem
    parsed = ParsedFile(VIDEO)
    keyframes: dict[int, list[BoxAnswer]] = {}
    spans: list[Span] = []
    names: dict[int, str] = {}
    shape_frames: list[int] = []
    for track in root.iter("track"):
        track_id = whole_number(track.get("id"), "<track> id", path)
        if track_id < 0:
            raise AnnotationError(f"<track> id {track_id} is negative (CVAT numbers tracks from 0)", path)
        names[track_id] = f"track {track_id}"
        shapes = _track_shapes(track, f"track {track_id}", path)
        shape_frames.extend(s.frame for s in shapes)
        for shape in shapes:
            if shape.keyframe and not shape.outside:
                keyframes.setdefault(shape.frame, []).append(BoxAnswer(track_id, shape.label, shape.box))
        spans.extend(_track_spans(track_id, shapes))
    covered, covered_text, trusted = _covered_frames(task, shape_frames, path, parsed.notes)
    candidates = tuple(dict.fromkeys(c for c in (name, unquote(name), source, unquote(source)) if c))
    parsed.videos.append(VideoAnswer(
        candidates, keyframes, None, f"task {name!r}",
        num_frames=_optional_number(task, "size", path) if trusted else None,
        spans=spans, names=names, covered=covered, covered_text=covered_text,
        frame_size=_original_size(task, path), last_frame=max(shape_frames, default=None)))
    return parsed


@dataclass(frozen=True)
class _Shape:
    frame: int
    outside: bool
    keyframe: bool
    label: str
    box: tuple[float, float, float, float]


def _track_shapes(track: ET.Element, where: str, path: Path) -> list[_Shape]:
    """The track's boxes in frame order (other shapes refused)."""
    label = _attr(track, "label", where, path)
    shapes = []
    for shape in track:
        if shape.tag in OTHER_SHAPES:
            raise AnnotationError(f"{where}: <{shape.tag}> shapes are not supported, only <box>", path)
        if shape.tag != "box":
            continue
        frame = whole_number(_attr(shape, "frame", f"{where} <box>", path), f"{where} <box> frame", path)
        what = f"{where} frame {frame}"
        shapes.append(_Shape(frame, _flag(shape, "outside", what, path), _flag(shape, "keyframe", what, path),
                             label, _box(shape, what, path)))
    return sorted(shapes, key=lambda s: s.frame)


def _track_spans(actor: int, shapes: list[_Shape]) -> list[Span]:
    """Where CVAT shows this track without a keyframe: after an inside keyframe up to the next
    keyframe (to the end of the task after the last one), and on every interpolated inside shape."""
    keys = [s for s in shapes if s.keyframe]
    keyed = {s.frame for s in keys}
    spans = []
    for k, key in enumerate(keys):
        if key.outside:
            continue
        last = keys[k + 1].frame - 1 if k + 1 < len(keys) else None
        if last is None or last > key.frame:
            spans.append(Span(key.frame + 1, last, actor))
    spans.extend(Span(s.frame, s.frame, actor) for s in shapes
                 if not s.keyframe and not s.outside and s.frame not in keyed)
    return spans


def _covered_frames(task: ET.Element, shape_frames: list[int], path: Path, notes: list[str]
                    ) -> tuple[range | None, str, bool]:
    """The video frames the CVAT task holds, from ``start_frame``, ``stop_frame`` (inclusive),
    ``frame_filter`` ("step=N") and ``size``. CVAT writes shape frames as frame numbers of the
    whole video (start + index * step), so they need no mapping, only checking.

    A ``<meta>`` whose numbers contradict one another (datumaro writes stop_frame = size) says
    nothing reliable: the task is then taken to hold the frames from the first to the last shape
    in the file, and frames outside them are not answered by it. Returns (frames, what they
    are, whether <meta> was trusted)."""
    start = whole_number((task.findtext("start_frame") or "0").strip() or "0", "<start_frame>", path)
    step = _frame_step(task, path)
    size = _optional_number(task, "size", path)
    stop = _optional_number(task, "stop_frame", path)
    if stop is not None:
        declared = range(start, stop + 1, step)
    elif size is not None:
        declared = range(start, start + size * step, step)
    else:
        return None, "every frame of the video", True
    text = f"frames {start}..{declared[-1] if declared else start}" + (f" step {step}" if step > 1 else "")
    if size is None or len(declared) == size:
        outside = sorted({f for f in shape_frames if f not in declared})
        if outside:
            raise AnnotationError(f"shapes on frames {outside[:5]} lie outside the task's {text} "
                                  "(CVAT numbers frames of the whole video: is <meta> edited?)", path)
        return declared, f"the CVAT task's {text}", True
    hull = range(min(shape_frames), max(shape_frames) + 1) if shape_frames else range(0)
    notes.append(f"<meta> frame range is inconsistent (start_frame {start}, stop_frame {stop}, size {size}; "
                 f"datumaro writes such files): took the task to hold the frames its shapes are on, "
                 f"{hull.start}..{hull.stop - 1}")
    return hull, f"frames {hull.start}..{hull.stop - 1}, those with shapes in this file (its <meta> is inconsistent)", False


def _frame_step(task: ET.Element, path: Path) -> int:
    frame_filter = (task.findtext("frame_filter") or "").strip()
    if not frame_filter:
        return 1
    match = re.fullmatch(r"step\s*=\s*(\d+)", frame_filter)
    if match is None or int(match.group(1)) < 1:
        raise AnnotationError(f"frame_filter {frame_filter!r} is not understood (CVAT writes 'step=N')", path)
    return int(match.group(1))


def _optional_number(task: ET.Element, key: str, path: Path) -> int | None:
    text = (task.findtext(key) or "").strip()
    return whole_number(text, f"<meta><task><{key}>", path) if text else None


def _original_size(task: ET.Element, path: Path) -> tuple[int, int] | None:
    element = task.find("original_size")
    if element is None:
        return None
    width, height = (_optional_number(element, key, path) for key in ("width", "height"))
    return None if width is None or height is None else (width, height)


def _attr(element: ET.Element, key: str, where: str, path: Path) -> str:
    value = element.get(key)
    if value is None:
        raise AnnotationError(f"{where}: missing attribute {key!r}", path)
    return value


def _flag(element: ET.Element, key: str, where: str, path: Path) -> bool:
    value = _attr(element, key, where, path).strip().lower()
    if value not in ("0", "1", "true", "false"):
        raise AnnotationError(f"{where}: {key}={value!r}, expected 0 or 1", path)
    return value in ("1", "true")


def _box(shape: ET.Element, where: str, path: Path) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (finite_number(_attr(shape, k, where, path), f"{where} {k}", path)
                      for k in ("xtl", "ytl", "xbr", "ybr"))
    rotation = finite_number(shape.get("rotation", "0"), f"{where} rotation", path)
    if not rotation:
        return (x1, y1, x2, y2)
    # CVAT rotates a box about its centre; keep the axis-aligned box around it.
    return rotated_envelope(x1, y1, x2 - x1, y2 - y1, rotation, ((x1 + x2) / 2, (y1 + y2) / 2))

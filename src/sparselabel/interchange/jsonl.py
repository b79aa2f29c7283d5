"""sparselabel's own task format: JSON Lines, one selected frame per line (see docs/interchange.md).

    {"format": "sparselabel-frame/1", "video": str, "frame": int (0-based),
     "cycle": int, "image": "images/<name>.jpg", "width": int, "height": int,
     "answered": bool,
     "actors": [{"actor": int, "label": str, "box": [x1, y1, x2, y2], "score": float?}]}

Boxes are pixels, right/bottom edges exclusive. An exported line has
``answered: false`` (its actors, if any, are the model's pre-annotations); the
annotator's tool writes the same line back with ``answered: true`` and the
actors actually visible (``[]``: none). Lines still ``answered: false`` are not
answers and are skipped on import.
"""

from __future__ import annotations

import json
from pathlib import Path

from sparselabel.errors import AnnotationError
from sparselabel.interchange.common import (
    BoxAnswer,
    ExportBatch,
    FrameAnswer,
    ParsedFile,
    TaskFrame,
    check_relative_name,
)
from sparselabel.jsonio import finite_number, parse_json, whole_number

FORMAT = "json"
LINE_FORMAT = "sparselabel-frame/1"


def tasks_jsonl(batch: ExportBatch) -> str:
    """One line per selected frame, in video and frame order."""
    frames = [f for frames in batch.by_video().values() for f in frames]
    return "".join(json.dumps(_line(f)) + "\n" for f in frames)


def _line(frame: TaskFrame) -> dict:
    actors = [{"actor": k, "label": pre.label, "box": [round(float(c), 3) for c in pre.box],
               "score": round(pre.score, 4)} for k, pre in enumerate(frame.boxes)]
    return {"format": LINE_FORMAT, "video": frame.video_id, "frame": frame.frame, "cycle": frame.cycle,
            "image": frame.image, "width": frame.width, "height": frame.height, "answered": False,
            "actors": actors}


def parse(data: bytes, path: Path) -> ParsedFile:
    """The answered lines of a sparselabel JSONL file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"not UTF-8 text ({exc})", path) from exc
    parsed = ParsedFile(FORMAT)
    # Lines end at "\n" only: str.splitlines would also split at U+2028 and other characters
    # that JSON strings may hold raw.
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        obj = parse_json(line, path, where)
        if not isinstance(obj, dict) or obj.get("format") != LINE_FORMAT:
            hint = " (a Label Studio export is a JSON list of tasks)" if isinstance(obj, dict) and "data" in obj else ""
            raise AnnotationError(f"{where}: not a {LINE_FORMAT} object{hint}", path)
        answer = _answer(obj, where, path)
        if answer is None:
            parsed.unanswered += 1
        else:
            parsed.frames.append(answer)
    return parsed


def _answer(obj: dict, where: str, path: Path) -> FrameAnswer | None:
    answered = obj.get("answered")
    if not isinstance(answered, bool):
        raise AnnotationError(f"{where}: 'answered' must be true or false", path)
    if not answered:
        return None
    video = obj.get("video")
    if not isinstance(video, str):
        raise AnnotationError(f"{where}: 'video' must be a string", path)
    if isinstance(obj.get("image"), str):
        check_relative_name(obj["image"], where, path)
    frame = whole_number(obj.get("frame"), f"{where} frame", path)
    actors = obj.get("actors")
    if not isinstance(actors, list):
        raise AnnotationError(f"{where}: 'actors' must be a list", path)
    return FrameAnswer(video, frame, [_actor(a, f"{where} actor #{k}", path) for k, a in enumerate(actors)], where)


def _actor(actor: object, where: str, path: Path) -> BoxAnswer:
    if not isinstance(actor, dict):
        raise AnnotationError(f"{where}: not an object", path)
    actor_id = whole_number(actor.get("actor"), f"{where} actor", path)
    if actor_id < 0:
        raise AnnotationError(f"{where}: actor id {actor_id} is negative", path)
    label, box = actor.get("label"), actor.get("box")
    if not isinstance(label, str):
        raise AnnotationError(f"{where}: 'label' must be a class name", path)
    if not isinstance(box, list) or len(box) != 4:
        raise AnnotationError(f"{where}: 'box' must be [x1, y1, x2, y2]", path)
    x1, y1, x2, y2 = (finite_number(c, f"{where} box", path) for c in box)
    return BoxAnswer(actor_id, label, (x1, y1, x2, y2))

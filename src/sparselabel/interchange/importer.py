"""Reading an annotation tool's answers back into the ledger, all or nothing.

Order of business, so that a bad file never changes anything:

1. size limit (before reading), format detection from the content, parsing
   (schema errors name the file and the place in it);
2. every answer is checked: known video, frame in range, label names known,
   boxes inside the frame, no frame answered twice (``Ledger.validate``) --
   including answers that are then ignored as unselected;
3. answers for frames nobody selected are set aside (or kept with
   ``allow_unselected``), the rest are compared with the ledger (new,
   unchanged, conflicting) and written in one transaction, conflicts as new
   versions.

Which frames a file answers: an image / JSONL task answers its frame. A video
task (CVAT for video, Label Studio video) answers the frames the task asked
about -- ``data.frames`` for Label Studio, the frames of the newest CVAT export
of that video for CVAT (whose XML does not say) -- each with the boxes drawn
there as keyframes; a frame asked about without any keyframe is an answer with
no actor. Interpolated shapes are nobody's answer and are ignored.
"""

from __future__ import annotations

import io
import math
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.interchange import cvat, jsonl, labelstudio
from sparselabel.interchange.common import (
    EXPORT_MARKER,
    FrameAnswer,
    ParsedFile,
    VideoAnswer,
    count_corrected,
)
from sparselabel.interchange.export import ExportRecords
from sparselabel.labels.ledger import ActorLabel, FrameAnnotation

EDGE_TOLERANCE = 0.01  # pixels: coordinates this close outside the frame are rounding, clipped
CORRECTED_IOU = 0.5  # an answer box this close to an offered pre-annotation was corrected, not drawn
ZIP_MEMBER = "annotations.xml"  # what a CVAT export zip holds the annotations in

Key = tuple[str, int]


@dataclass
class ImportReport:
    """What an import did; ``summary()`` is what the CLI prints."""

    file: Path
    format: str
    new: list[Key] = field(default_factory=list)
    unchanged: list[Key] = field(default_factory=list)
    versions: list[Key] = field(default_factory=list)  # conflicting answers, kept as new versions
    ignored_unselected: list[Key] = field(default_factory=list)
    unanswered: int = 0  # tasks in the file nobody answered
    drawn: int = 0  # boxes drawn from scratch, in the frames written
    corrected: int = 0  # pre-annotated boxes kept or adjusted, in the frames written
    clicks: int = 0  # cost of the frames written
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[Key]:
        return self.new + self.unchanged + self.versions

    def summary(self) -> str:
        lines = [f"{self.file} ({self.format}): {len(self.accepted)} frames accepted: {len(self.new)} new, "
                 f"{len(self.unchanged)} unchanged, {len(self.versions)} new versions (conflicts)",
                 f"boxes: {self.drawn} drawn, {self.corrected} corrected pre-annotations; {self.clicks} clicks"]
        if self.versions:
            lines.append("conflicting answers kept as new versions: " + _keys(self.versions))
        if self.ignored_unselected:
            lines.append(f"ignored {len(self.ignored_unselected)} frames that were not selected "
                         f"(--allow-unselected accepts them): " + _keys(self.ignored_unselected))
        if self.unanswered:
            lines.append(f"{self.unanswered} tasks in the file have no answer yet")
        return "\n".join(lines + self.notes)


def _keys(keys: list[Key], limit: int = 10) -> str:
    shown = ", ".join(f"{vid}:{frame}" for vid, frame in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def import_answers(workspace, file: str | Path, annotator: str | None = None,
                   allow_unselected: bool = False) -> ImportReport:
    """Read a CVAT / Label Studio / sparselabel JSONL answer file into the ledger (see module doc)."""
    path = Path(file)
    labels = workspace.config.labels
    if not (math.isfinite(labels.import_max_mb) and labels.import_max_mb > 0):
        raise SparseLabelError(f"labels.import_max_mb must be a positive number of MB, got {labels.import_max_mb}",
                               workspace.root / "config.yaml")
    data = read_limited(path, int(labels.import_max_mb * 2**20))
    parsed = parse_answers(data, path, workspace.ledger)
    records = ExportRecords.load(workspace.root, parsed.format)
    answers = resolve(parsed, workspace.ledger, records, path)
    videos, classes = workspace.ledger.videos(), workspace.ledger.classes
    annotations = [to_annotation(a, videos, classes, path) for a, _ in answers]
    workspace.ledger.validate(annotations, source=path)  # everything, also what is ignored below

    report = ImportReport(path, parsed.format, unanswered=parsed.unanswered, notes=parsed.notes)
    selected = {(vid, frame): cycle for cycle, _, vid, frame, _ in workspace.ledger.selections()}
    latest = max(selected.values(), default=0)
    accepted = []
    for ann, (_, asked) in zip(annotations, answers, strict=True):
        key = (ann.video_id, ann.frame)
        if not (asked and key in selected) and not allow_unselected:
            report.ignored_unselected.append(key)
            continue
        ann.cycle = selected.get(key, latest)
        ann.corrected = count_corrected([a.box for a in ann.actors], records.offered(*key), CORRECTED_IOU)
        accepted.append(ann)
    outcome: dict[str, list[tuple[str, int]]] = {}
    workspace.ledger.record_annotations(
        accepted, source="import", cycle=None, clicks_per_actor=labels.clicks_per_box,
        clicks_per_corrected=labels.clicks_per_corrected_box, annotator=annotator,
        source_file=str(path.resolve()), on_conflict="version", outcome=outcome)
    report.new, report.versions, report.unchanged = outcome["new"], outcome["versions"], outcome["unchanged"]
    unchanged = set(report.unchanged)
    written = [a for a in accepted if (a.video_id, a.frame) not in unchanged]
    report.corrected = sum(a.corrected for a in written)
    report.drawn = sum(len(a.actors) for a in written) - report.corrected
    report.clicks = report.drawn * labels.clicks_per_box + report.corrected * labels.clicks_per_corrected_box
    return report


# --- reading and parsing ------------------------------------------------------------------


def read_limited(path: Path, limit: int) -> bytes:
    """The file's bytes, refusing (before reading) anything over ``limit``; CVAT zips give their XML."""
    try:
        status = path.stat()
    except OSError as exc:
        raise AnnotationError(f"cannot read ({exc.strerror})", path) from exc
    if stat.S_ISDIR(status.st_mode):
        raise AnnotationError("is a folder; pass the file the annotation tool exported", path)
    if not stat.S_ISREG(status.st_mode):  # a FIFO or device would block or never end
        raise AnnotationError("is not a regular file (a pipe, socket or device); pass the exported file", path)
    _check_size(status.st_size, limit, path)
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    _check_size(len(data), limit, path)
    return _unzip(data, limit, path) if data.startswith(b"PK\x03\x04") else data


def _check_size(size: int, limit: int, path: Path) -> None:
    if size > limit:
        raise AnnotationError(f"{size / 2**20:.1f} MB is over the import limit of {limit / 2**20:.0f} MB "
                              "(labels.import_max_mb)", path)


def _unzip(data: bytes, limit: int, path: Path) -> bytes:
    """Only ``annotations.xml`` of a CVAT export zip is read, within the same size limit."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo(ZIP_MEMBER)
            _check_size(info.file_size, limit, path)
            with archive.open(info) as member:
                xml = member.read(limit + 1)
    except KeyError as exc:
        raise AnnotationError(f"zip file without {ZIP_MEMBER} (is it a CVAT 1.1 export?)", path) from exc
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
        raise AnnotationError(f"unreadable zip file ({exc})", path) from exc
    _check_size(len(xml), limit, path)
    return xml


def detect_format(data: bytes, path: Path) -> str:
    """From the content: XML is CVAT, a JSON list is Label Studio, JSON objects per line are ours."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    formats = {b"<": "cvat-xml", b"[": labelstudio.FORMAT, b"{": jsonl.FORMAT}
    if head not in formats:
        raise AnnotationError("cannot tell the format: expected CVAT XML, a Label Studio JSON export "
                              "(a list of tasks) or sparselabel JSONL", path)
    return formats[head]


def parse_answers(data: bytes, path: Path, ledger) -> ParsedFile:
    fmt = detect_format(data, path)
    if fmt == "cvat-xml":
        if EXPORT_MARKER.encode() in data[:4096]:
            raise AnnotationError("this is the task file sparselabel exported, not answers: load it into "
                                  "CVAT, annotate, and import what CVAT exports", path)
        return cvat.parse(data, path)
    if fmt == labelstudio.FORMAT:
        sizes = {vid: (v.width, v.height) for vid, v in ledger.videos().items()}
        return labelstudio.parse(data, path, sizes)
    return jsonl.parse(data, path)


# --- from parsed answers to ledger answers ------------------------------------------------


def resolve(parsed: ParsedFile, ledger, records: ExportRecords, path: Path) -> list[tuple[FrameAnswer, bool]]:
    """Every frame the file answers, with whether its task asked about that frame."""
    out = [(answer, True) for answer in parsed.frames]
    for video in parsed.videos:
        out.extend(_video_frames(video, ledger, records, path))
    return out


def _video_frames(video: VideoAnswer, ledger, records: ExportRecords, path: Path) -> list[tuple[FrameAnswer, bool]]:
    known = ledger.videos()
    vid = next((c for c in video.video_ids if c in known), None)
    if vid is None:
        raise AnnotationError(f"{video.where}: no known video named {' or '.join(map(repr, video.video_ids))} "
                              "(name the CVAT task after the video id)", path)
    if video.num_frames is not None and video.num_frames != known[vid].num_frames:
        raise AnnotationError(f"{video.where}: the task has {video.num_frames} frames, video {vid!r} has "
                              f"{known[vid].num_frames}; create the task from the exported frame folder", path)
    asked = video.task_frames if video.task_frames is not None else records.task_frames(vid)
    if asked is None:  # never exported in this format: the video's frames still waiting for an answer
        done = set(ledger.annotated_frames(vid)[vid].tolist())
        asked = [f for _, _, v, f, _ in ledger.selections() if v == vid and f not in done]
    frames = sorted(set(asked) | set(video.keyframes))
    return [(FrameAnswer(vid, f, video.keyframes.get(f, []), f"{video.where} frame {f}"), f in set(asked))
            for f in frames]


def to_annotation(answer: FrameAnswer, videos: dict, classes: list[str], path: Path) -> FrameAnnotation:
    """Class names to indices; boxes a rounding error outside the frame are clipped to it."""
    video = videos.get(answer.video_id)
    if video is None:
        raise AnnotationError(f"{answer.where}: unknown video {answer.video_id!r}", path)
    actors = []
    for box in answer.boxes:
        if box.label not in classes:
            raise AnnotationError(f"{answer.where}: unknown label {box.label!r} (known: {', '.join(classes)})", path)
        actors.append(ActorLabel(box.actor, classes.index(box.label), _snap(box.box, video.width, video.height)))
    return FrameAnnotation(answer.video_id, answer.frame, actors, source="import")


def _snap(box, width: int, height: int) -> tuple[float, float, float, float]:
    limits = (width, height, width, height)
    return tuple(min(max(c, 0.0), m) if -EDGE_TOLERANCE <= c <= m + EDGE_TOLERANCE else c
                 for c, m in zip(box, limits, strict=True))

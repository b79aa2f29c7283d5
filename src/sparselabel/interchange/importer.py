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
no actor. Interpolated shapes are nobody's answer: a frame where a track shows
one (and has no keyframe), or, in Label Studio, a frame without keyframes next
to one that has them (keyframes put one frame off: it counts from 1), is
ambiguous, reported and not recorded; so is a frame the tool's task does not
hold (a CVAT task over part of the video). A file with nothing to record is
refused.
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
from sparselabel.labels.rows import answer_clicks

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
    ambiguous: list[tuple[Key, str]] = field(default_factory=list)  # asked, answer unclear: not recorded, why

    @property
    def accepted(self) -> list[Key]:
        return self.new + self.unchanged + self.versions

    def summary(self) -> str:
        lines = [f"{self.file} ({self.format}): {len(self.accepted)} frames accepted: {len(self.new)} new, "
                 f"{len(self.unchanged)} unchanged, {len(self.versions)} new versions (conflicts)",
                 f"boxes: {self.drawn} drawn, {self.corrected} corrected pre-annotations; {self.clicks} clicks"]
        if self.versions:
            lines.append("conflicting answers kept as new versions: " + _keys(self.versions))
        if self.ambiguous:
            lines.append(f"{len(self.ambiguous)} frames ambiguous, not recorded: {_reasons(self.ambiguous)}")
        if self.ignored_unselected:
            lines.append(f"ignored {len(self.ignored_unselected)} frames that were not selected "
                         f"(--allow-unselected accepts them): " + _keys(self.ignored_unselected))
        if self.unanswered:
            lines.append(f"{self.unanswered} tasks in the file have no answer yet")
        return "\n".join(lines + self.notes)


def _keys(keys: list[Key], limit: int = 10) -> str:
    shown = ", ".join(f"{vid}:{frame}" for vid, frame in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _reasons(unclear: list[tuple[Key, str]], limit: int = 10) -> str:
    shown = ", ".join(f"{vid}:{frame} ({why})" for (vid, frame), why in unclear[:limit])
    return shown + (f" and {len(unclear) - limit} more" if len(unclear) > limit else "")


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
    unclear: list[tuple[Key, str]] = []
    answers = resolve(parsed, workspace.ledger, records, path, unclear, allow_unselected)
    videos, classes = workspace.ledger.videos(), workspace.ledger.classes
    annotations = [to_annotation(a, videos, classes, path) for a, _ in answers]
    workspace.ledger.validate(annotations, source=path)  # everything, also what is ignored below

    report = ImportReport(path, parsed.format, unanswered=parsed.unanswered, notes=parsed.notes, ambiguous=unclear)
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
    if not accepted and (unclear or not answers):  # nothing to record: say so, exit non-zero
        raise AnnotationError(_nothing_usable(report), path)
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
    report.clicks = sum(answer_clicks(a, labels.clicks_per_box, labels.clicks_per_corrected_box) for a in written)
    return report


def _nothing_usable(report: ImportReport) -> str:
    parts = []
    if report.ambiguous:
        parts.append(f"{len(report.ambiguous)} frames ambiguous: {_reasons(report.ambiguous, 3)}")
    if report.ignored_unselected:
        parts.append(f"{len(report.ignored_unselected)} answers for frames not asked or not selected "
                     f"({_keys(report.ignored_unselected, 3)}; --allow-unselected accepts them)")
    if report.unanswered:
        parts.append(f"{report.unanswered} tasks without a submitted answer")
    return "nothing to import: " + ("; ".join(parts) if parts else "the file holds no answers")


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
        raise AnnotationError("cannot tell the format: expected CVAT XML, a Label Studio JSON, snapshot or "
                              "JSON-MIN export (a JSON list; not CSV, COCO, YOLO...) or sparselabel JSONL", path)
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


def resolve(parsed: ParsedFile, ledger, records: ExportRecords, path: Path,
            unclear: list[tuple[Key, str]], allow_unselected: bool = False) -> list[tuple[FrameAnswer, bool]]:
    """Every frame the file answers, with whether its task asked about that frame; frames whose
    answer is ambiguous go to ``unclear`` with the reason instead (keyframes on frames not asked
    only when ``allow_unselected`` would record them: else they are ignored anyway)."""
    out = [(answer, True) for answer in parsed.frames]
    for video in parsed.videos:
        out.extend(_video_frames(video, ledger, records, path, unclear, parsed.notes, allow_unselected))
    return out


def _video_frames(video: VideoAnswer, ledger, records: ExportRecords, path: Path,
                  unclear: list[tuple[Key, str]], notes: list[str], allow_unselected: bool
                  ) -> list[tuple[FrameAnswer, bool]]:
    known = ledger.videos()
    vid = identify(video, known, records, path, notes)
    last = video.covered[-1] if video.covered else None
    if last is not None and last >= known[vid].num_frames:
        raise AnnotationError(f"{video.where}: the task holds {video.covered_text}, video {vid!r} has "
                              f"{known[vid].num_frames} frames (0..{known[vid].num_frames - 1})", path)
    asked = video.task_frames if video.task_frames is not None else records.task_frames(vid)
    if asked is None:  # never exported in this format: the video's frames still waiting for an answer
        done = set(ledger.annotated_frames(vid)[vid].tolist())
        asked = [f for _, _, v, f, _ in ledger.selections() if v == vid and f not in done]
    out, asked = [], set(asked)
    for frame in sorted(asked | set(video.keyframes)):
        is_asked = frame in asked
        why = ambiguity(video, frame, asked) if is_asked or allow_unselected else None
        if why is not None:
            unclear.append(((vid, frame), why))
        else:
            answer = FrameAnswer(vid, frame, video.keyframes.get(frame, []), f"{video.where} frame {frame}")
            out.append((answer, is_asked))
    return out


def ambiguity(video: VideoAnswer, frame: int, asked: set[int]) -> str | None:
    """Why the video task's answer for ``frame`` cannot be told (None: it can). Keyframes put one
    frame off also leave the frame inside a span; the reason given is the likelier one: a
    keyframe next door on a frame nobody asked about, else the span, else any keyframe next door."""
    if video.covered is not None and frame not in video.covered:
        return f"not among {video.covered_text}"
    near = [(g, box) for g in (frame - 1, frame + 1) for box in video.keyframes.get(g, [])] \
        if video.near_miss and frame not in video.keyframes else []
    stray = [(g, box) for g, box in near if g not in asked]
    inside = sorted({s.actor for s in video.spans if s.covers(frame)})
    if stray or (near and not inside):
        g, box = (stray or near)[0]
        return (f"no keyframe on it, but {video.names.get(box.actor, 'a region')} has one on Label Studio "
                f"frame {g + 1}, one frame away (Label Studio counts from 1: this is its frame {frame + 1})")
    if not inside:
        return None
    who = ", ".join(video.names.get(a, f"actor {a}") for a in inside)
    if video.near_miss:
        return f"inside an enabled span of {who} with no keyframe on it"
    return f"{who} inside there with only an interpolated shape (keyframe=0), no keyframe"


def identify(video: VideoAnswer, known: dict, records: ExportRecords, path: Path, notes: list[str]) -> str:
    """The known video a video task is about: by the task's name or source file; else the one
    exported video in this format that fits it; else the one video whose frame count and size
    are the task's. Several candidates: an error naming them."""
    named = next((c for c in video.video_ids if c in known), None)
    if named is not None:
        return named
    fits = [vid for vid, info in known.items() if _fits(video, info)]
    exported = [vid for vid in fits if vid in records.videos()]
    exact = [vid for vid in fits if video.num_frames == known[vid].num_frames]
    pools = ((sorted(set(exported) & set(exact)), "the one exported video with its frame count and size"),
             (exported, "the one exported video that fits it"),
             (exact, "the one known video with its frame count and size"))
    for pool, how in pools:
        if len(pool) == 1:
            notes.append(f"{video.where}: no known video of that name; matched to {pool[0]!r}, {how}")
            return pool[0]
    names = " or ".join(map(repr, video.video_ids)) or "(no name)"
    candidates = exported or exact or fits
    if candidates:
        shown = ", ".join(map(repr, candidates[:10])) + (" ..." if len(candidates) > 10 else "")
        raise AnnotationError(f"{video.where}: no known video named {names}, and {len(candidates)} videos fit it "
                              f"({shown}); name the CVAT task after the video id", path)
    raise AnnotationError(f"{video.where}: no known video named {names}, and no video has its frames and size "
                          "(name the CVAT task after the video id)", path)


def _fits(video: VideoAnswer, info) -> bool:
    """Whether a video could be the task's: the same frame size, every frame of the task in it."""
    if video.frame_size is not None and video.frame_size != (info.width, info.height):
        return False
    top = max(video.covered[-1] if video.covered else -1, -1 if video.last_frame is None else video.last_frame)
    return top < info.num_frames


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

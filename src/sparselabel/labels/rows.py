"""Rows of the ledger: the answer and status records, and the statements that write them.

Used by ``ledger.Ledger`` and ``growth.GrowingPool`` inside their transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from sparselabel.data.dataset import Video
from sparselabel.faults import fault_point


@dataclass(frozen=True)
class ActorLabel:
    """One actor in one annotated frame: its tube/track id in the video, class, box and/or mask."""

    actor: int
    label: int
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass
class FrameAnnotation:
    """The answer for one frame: every actor visible in it."""

    video_id: str
    frame: int
    actors: list[ActorLabel] = field(default_factory=list)
    version: int = 1
    cycle: int = 0
    source: str = ""
    clicks: int = 0
    corrected: int = 0  # actors that were corrected pre-annotations, not drawn from scratch


@dataclass(frozen=True)
class CycleStatus:
    cycle: int
    new_frames: int
    frames: int  # cumulative
    percent: float  # cumulative, of the frames of the pool this cycle trains on
    new_clicks: int
    clicks: int  # cumulative
    selected: int  # frames selected in this cycle
    pool_videos: int = 0  # pool videos that joined in or before this cycle
    pool_frames: int = 0  # their frames


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def insert_videos(db: sqlite3.Connection, videos: Iterable[Video], split: str, cycle: int) -> None:
    db.executemany(
        "INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(v.id, v.num_frames, v.width, v.height, v.fps, v.label, split, cycle) for v in videos],
    )


def insert_selection(db: sqlite3.Connection, cycle: int, strategy: str, picks: Sequence[tuple[str, int]],
                      scores: Sequence[float | None] | None = None) -> None:
    """Selection rows ranked after the cycle's existing ones (callers check the frames first)."""
    scores = [None] * len(picks) if scores is None else [None if s is None else float(s) for s in scores]
    first = db.execute("SELECT COALESCE(MAX(rank) + 1, 0) FROM selections WHERE cycle = ?", (cycle,)).fetchone()[0]
    stamp = now()
    db.executemany(
        "INSERT INTO selections (cycle, strategy, video_id, frame, score, rank, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(cycle, strategy, vid, int(f), s, first + r, stamp)
         for r, ((vid, f), s) in enumerate(zip(picks, scores, strict=True))],
    )


def answer_clicks(answer: FrameAnnotation, per_actor: int, per_corrected: int) -> int:
    """What an answer cost: each drawn actor ``per_actor``, each corrected pre-annotation ``per_corrected``."""
    return (len(answer.actors) - answer.corrected) * per_actor + answer.corrected * per_corrected


def insert_answers(db: sqlite3.Connection, fresh: Sequence[tuple[FrameAnnotation, int]], *, source: str,
                    cycle: int | None, clicks: tuple[int, int], annotator: str | None = None,
                    source_file: str | None = None) -> None:
    """Annotation and actor rows of (answer, version) pairs; ``clicks``: per drawn, per corrected actor."""
    per_actor, per_corrected = clicks
    stamp = now()
    for ann, version in fresh:
        cur = db.execute(
            "INSERT INTO annotations (video_id, frame, version, cycle, source, annotator, source_file,"
            " clicks, num_actors, created_at, corrected) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ann.video_id, ann.frame, version, ann.cycle if cycle is None else cycle, source, annotator,
             source_file, answer_clicks(ann, per_actor, per_corrected), len(ann.actors), stamp, ann.corrected),
        )
        db.executemany(
            "INSERT INTO actors VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(cur.lastrowid, a.actor, a.label, *box_row(a.box), pack_mask(a.mask)) for a in ann.actors],
        )
        fault_point("ledger:annotations-half-written")


def same_answer(a: FrameAnnotation, b: FrameAnnotation, tol: float = 1e-6) -> bool:
    """True when two answers for a frame hold the same actors, labels, boxes and masks."""
    if len(a.actors) != len(b.actors):
        return False
    for x, y in zip(sorted(a.actors, key=lambda t: t.actor), sorted(b.actors, key=lambda t: t.actor), strict=True):
        if (x.actor, x.label) != (y.actor, y.label) or (x.box is None) != (y.box is None):
            return False
        if x.box is not None and not np.allclose(x.box, y.box, atol=tol):
            return False
        if (x.mask is None) != (y.mask is None) or (x.mask is not None and not np.array_equal(x.mask, y.mask)):
            return False
    return True


def box_row(box: Sequence[float] | None) -> tuple:
    return (None,) * 4 if box is None else tuple(float(c) for c in box)


def pack_mask(mask: np.ndarray | None) -> bytes | None:
    return None if mask is None else np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()


SQL_CHUNK = 500  # ids per IN (...) list: under SQLite's limit on bound parameters


def placeholders(values: Sequence) -> str:
    return ",".join("?" * len(values))


def unpack_mask(blob: bytes | None, shape: tuple[int, int]) -> np.ndarray | None:
    if blob is None:
        return None
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=shape[0] * shape[1])
    return bits.reshape(shape).astype(bool)

"""The SQLite ledger: every video, annotated frame, selection and cycle step of a workspace.

Durability rules: WAL journal with ``synchronous=FULL``, and every write is one
``BEGIN IMMEDIATE ... COMMIT`` transaction, so a process killed at any instant
leaves either all of a batch or none of it. Everything is validated before the
transaction starts, so bad input never leaves a partial write either.

An annotated frame holds *every* actor visible in it (zero actors is a valid
answer: the frame is known background). Frames are 0-based. A frame can be
answered more than once (a corrected or conflicting answer); each answer is a
new ``version`` and the latest one counts.

Schema 2 added ``annotations.corrected`` (how many of the frame's actors were
pre-annotated boxes the annotator kept or adjusted, which cost fewer clicks
than drawn ones); a schema-1 ledger gains the column, NULL for old rows, when
it is opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sparselabel.data.dataset import Video, box_problems
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.faults import fault_point

SCHEMA_VERSION = "2"
# Statements that bring a ledger of the key version up to the next one (additive only).
MIGRATIONS = {"1": ("ALTER TABLE annotations ADD COLUMN corrected INTEGER",)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    num_frames INTEGER NOT NULL CHECK (num_frames > 0),
    width INTEGER NOT NULL, height INTEGER NOT NULL, fps REAL NOT NULL,
    label INTEGER NOT NULL,
    split TEXT NOT NULL,
    added_cycle INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos(id),
    frame INTEGER NOT NULL,
    version INTEGER NOT NULL,
    cycle INTEGER NOT NULL,
    source TEXT NOT NULL,
    annotator TEXT,
    source_file TEXT,
    clicks INTEGER NOT NULL,
    num_actors INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    corrected INTEGER,
    UNIQUE (video_id, frame, version)
);
CREATE TABLE IF NOT EXISTS actors (
    annotation_id INTEGER NOT NULL REFERENCES annotations(id),
    actor INTEGER NOT NULL,
    label INTEGER NOT NULL,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    mask BLOB,
    PRIMARY KEY (annotation_id, actor)
);
CREATE TABLE IF NOT EXISTS selections (
    id INTEGER PRIMARY KEY,
    cycle INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    video_id TEXT NOT NULL REFERENCES videos(id),
    frame INTEGER NOT NULL,
    score REAL,
    rank INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (video_id, frame)
);
CREATE TABLE IF NOT EXISTS cycle_steps (
    cycle INTEGER NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    detail TEXT,
    PRIMARY KEY (cycle, step)
);
"""


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
    percent: float  # cumulative, of all pool frames
    new_clicks: int
    clicks: int  # cumulative
    selected: int  # frames selected in this cycle


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Ledger:
    """A workspace's SQLite ledger (one file; safe to reopen after a crash)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self.transaction() as db:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                _migrate(db)
        except sqlite3.DatabaseError as exc:
            raise SparseLabelError(f"not a usable ledger ({exc})", self.path) from exc
        version = self.meta("schema_version")
        if version != SCHEMA_VERSION:
            raise SparseLabelError(f"ledger schema {version}, this sparselabel reads {SCHEMA_VERSION}", self.path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- metadata -------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, **values: str) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))

    @property
    def classes(self) -> list[str]:
        names = self.meta("classes")
        return [] if not names else names.split("\n")

    # --- videos ---------------------------------------------------------------------------

    def add_videos(self, videos: Iterable[Video], split: str, cycle: int = 0) -> int:
        """Register videos (skipping ids already known with the same shape); returns how many were new."""
        videos = list(videos)
        known = self.videos()
        for v in videos:
            old = known.get(v.id)
            if old is not None and (old.num_frames, old.width, old.height) != (v.num_frames, v.width, v.height):
                raise AnnotationError(f"video {v.id!r} is already registered with a different size or length", self.path)
        new = [v for v in videos if v.id not in known]
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(v.id, v.num_frames, v.width, v.height, v.fps, v.label, split, cycle) for v in new],
            )
        return len(new)

    def videos(self, split: str | None = None) -> dict[str, Video]:
        """Registered videos (``path`` is not stored in the ledger and comes back empty)."""
        query = "SELECT id, num_frames, fps, width, height, label FROM videos"
        rows = self.db.execute(query + (" WHERE split = ?" if split else "") + " ORDER BY id",
                               (split,) if split else ()).fetchall()
        return {r[0]: Video(r[0], Path(), r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def split_of(self, video_id: str) -> str | None:
        row = self.db.execute("SELECT split FROM videos WHERE id = ?", (video_id,)).fetchone()
        return None if row is None else row[0]

    # --- annotations ----------------------------------------------------------------------

    def validate(self, annotations: Sequence[FrameAnnotation], source: str | Path | None = None) -> None:
        """Raise AnnotationError (naming ``source``) for the first annotation that cannot be stored."""
        where = source if source is not None else self.path
        videos = self.videos()
        num_classes = len(self.classes)
        seen: set[tuple[str, int]] = set()
        for ann in annotations:
            what = f"video {ann.video_id!r} frame {ann.frame}"
            video = videos.get(ann.video_id)
            if video is None:
                raise AnnotationError(f"{what}: unknown video", where)
            if not 0 <= ann.frame < video.num_frames:
                raise AnnotationError(f"{what}: frame outside 0..{video.num_frames - 1}", where)
            if (ann.video_id, ann.frame) in seen:
                raise AnnotationError(f"{what}: answered twice in one batch", where)
            seen.add((ann.video_id, ann.frame))
            actor_ids = [a.actor for a in ann.actors]
            if len(set(actor_ids)) != len(actor_ids):
                raise AnnotationError(f"{what}: actor ids repeat ({actor_ids})", where)
            for a in ann.actors:
                self._validate_actor(a, video, num_classes, f"{what} actor {a.actor}", where)

    @staticmethod
    def _validate_actor(a: ActorLabel, video: Video, num_classes: int, what: str, where: str | Path) -> None:
        if num_classes and not 0 <= a.label < num_classes:
            raise AnnotationError(f"{what}: label {a.label} outside 0..{num_classes - 1}", where)
        if a.box is None and a.mask is None:
            raise AnnotationError(f"{what}: neither box nor mask", where)
        if a.box is not None:
            bad = box_problems(np.asarray(a.box), video.width, video.height)
            if bad is not None:
                raise AnnotationError(f"{what}: {bad[1]}", where)
        if a.mask is not None and np.shape(a.mask) != (video.height, video.width):
            raise AnnotationError(f"{what}: mask is {np.shape(a.mask)}, frame is {(video.height, video.width)}", where)

    def record_annotations(
        self,
        annotations: Sequence[FrameAnnotation],
        *,
        source: str,
        cycle: int | None,
        clicks_per_actor: int = 2,
        clicks_per_corrected: int | None = None,
        annotator: str | None = None,
        source_file: str | None = None,
        on_conflict: str = "error",
    ) -> int:
        """Store answers in one transaction; returns the number of new rows.

        An answer identical to the frame's current one is skipped (re-importing
        changes nothing). A different answer for an annotated frame raises, or with
        ``on_conflict="version"`` is kept as a new version. ``cycle=None`` stores
        each answer's own ``cycle`` (one import can answer frames selected in
        different cycles). An answer's ``corrected`` actors cost
        ``clicks_per_corrected`` each (default: ``clicks_per_actor``), the rest
        ``clicks_per_actor``.
        """
        per_corrected = clicks_per_actor if clicks_per_corrected is None else clicks_per_corrected
        self.validate(annotations, source_file)
        current = self.annotations_at([(a.video_id, a.frame) for a in annotations])
        fresh = []
        for ann in annotations:
            old = current.get((ann.video_id, ann.frame))
            if old is None:
                fresh.append((ann, 1))
            elif not same_answer(old, ann):
                if on_conflict != "version":
                    raise AnnotationError(
                        f"video {ann.video_id!r} frame {ann.frame}: already annotated (version {old.version}) "
                        "with a different answer", source_file or self.path)
                fresh.append((ann, old.version + 1))
        stamp = now()
        with self.transaction() as db:
            for ann, version in fresh:
                cur = db.execute(
                    "INSERT INTO annotations (video_id, frame, version, cycle, source, annotator, source_file,"
                    " clicks, num_actors, created_at, corrected) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ann.video_id, ann.frame, version, ann.cycle if cycle is None else cycle, source, annotator,
                     source_file, (len(ann.actors) - ann.corrected) * clicks_per_actor + ann.corrected * per_corrected,
                     len(ann.actors), stamp, ann.corrected),
                )
                db.executemany(
                    "INSERT INTO actors VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(cur.lastrowid, a.actor, a.label, *_box_row(a.box), _pack_mask(a.mask)) for a in ann.actors],
                )
                fault_point("ledger:annotations-half-written")
        return len(fresh)

    def annotated_frames(self, video_id: str | None = None) -> dict[str, np.ndarray]:
        """Sorted annotated frame indices per pool video (videos without any get an empty array)."""
        out = {vid: [] for vid in (self.videos() if video_id is None else [video_id])}
        query = "SELECT DISTINCT video_id, frame FROM annotations"
        args: tuple = ()
        if video_id is not None:
            query, args = query + " WHERE video_id = ?", (video_id,)
        for vid, frame in self.db.execute(query + " ORDER BY video_id, frame", args):
            out[vid].append(frame)
        return {vid: np.asarray(frames, dtype=np.int64) for vid, frames in out.items()}

    def annotations(self, video_id: str | None = None) -> list[FrameAnnotation]:
        """The current (latest-version) answer of every annotated frame, ordered by video and frame."""
        where, args = ("WHERE a.video_id = ?", (video_id,)) if video_id else ("", ())
        rows = self.db.execute(
            "SELECT a.id, a.video_id, a.frame, a.version, a.cycle, a.source, a.clicks, COALESCE(a.corrected, 0)"
            " FROM annotations a "
            "JOIN (SELECT video_id, frame, MAX(version) AS v FROM annotations GROUP BY video_id, frame) m "
            f"ON a.video_id = m.video_id AND a.frame = m.frame AND a.version = m.v {where} "
            "ORDER BY a.video_id, a.frame", args).fetchall()
        return self._with_actors(rows)

    def annotations_at(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FrameAnnotation]:
        keys = set(keys)
        by_video = {vid for vid, _ in keys}
        found = [a for vid in sorted(by_video) for a in self.annotations(vid)]
        return {(a.video_id, a.frame): a for a in found if (a.video_id, a.frame) in keys}

    def _with_actors(self, rows: list[tuple]) -> list[FrameAnnotation]:
        shapes = {vid: (v.height, v.width) for vid, v in self.videos().items()}
        out = []
        for ann_id, vid, frame, version, cycle, source, clicks, corrected in rows:
            actors = [
                ActorLabel(actor, label, None if x1 is None else (x1, y1, x2, y2), _unpack_mask(mask, shapes[vid]))
                for actor, label, x1, y1, x2, y2, mask in self.db.execute(
                    "SELECT actor, label, x1, y1, x2, y2, mask FROM actors WHERE annotation_id = ? ORDER BY actor",
                    (ann_id,))
            ]
            out.append(FrameAnnotation(vid, frame, actors, version, cycle, source, clicks, corrected))
        return out

    # --- selections -----------------------------------------------------------------------

    def record_selection(
        self, cycle: int, strategy: str, picks: Sequence[tuple[str, int]], scores: Sequence[float] | None = None
    ) -> None:
        """Record frames chosen for annotation; a frame already annotated or selected is refused."""
        videos = self.videos()
        annotated = {v: set(frames.tolist()) for v, frames in self.annotated_frames().items()}
        for vid, frame in picks:
            if vid not in videos or not 0 <= frame < videos[vid].num_frames:
                raise AnnotationError(f"selection of unknown frame {vid!r}:{frame}", self.path)
            if frame in annotated[vid]:
                raise AnnotationError(f"selection of already annotated frame {vid!r}:{frame}", self.path)
        scores = [None] * len(picks) if scores is None else [float(s) for s in scores]
        stamp = now()
        try:
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO selections (cycle, strategy, video_id, frame, score, rank, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(cycle, strategy, vid, int(f), s, r, stamp) for r, ((vid, f), s) in enumerate(zip(picks, scores, strict=True))],
                )
                fault_point("ledger:selection-half-written")
        except sqlite3.IntegrityError as exc:
            raise AnnotationError(f"a frame was selected twice ({exc})", self.path) from exc

    def selections(self, cycle: int | None = None) -> list[tuple[int, str, str, int, float | None]]:
        """(cycle, strategy, video, frame, score) in the order they were picked."""
        query = "SELECT cycle, strategy, video_id, frame, score FROM selections"
        args: tuple = ()
        if cycle is not None:
            query, args = query + " WHERE cycle = ?", (cycle,)
        return [tuple(r) for r in self.db.execute(query + " ORDER BY cycle, rank", args)]

    # --- cycle steps ----------------------------------------------------------------------

    def start_step(self, cycle: int, step: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO cycle_steps VALUES (?, ?, 'started', ?, NULL, NULL)", (cycle, step, now())
            )

    def finish_step(self, cycle: int, step: str, detail: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE cycle_steps SET status = 'done', finished_at = ?, detail = ? WHERE cycle = ? AND step = ?",
                (now(), detail, cycle, step),
            )

    def step_done(self, cycle: int, step: str) -> bool:
        row = self.db.execute("SELECT status FROM cycle_steps WHERE cycle = ? AND step = ?", (cycle, step)).fetchone()
        return row is not None and row[0] == "done"

    # --- summaries ------------------------------------------------------------------------

    def status(self, split: str | None = "pool") -> list[CycleStatus]:
        """Annotated frames, percent of all pool frames and clicks, per cycle (first answers only)."""
        total = self.db.execute(
            "SELECT COALESCE(SUM(num_frames), 0) FROM videos" + (" WHERE split = ?" if split else ""),
            (split,) if split else (),
        ).fetchone()[0]
        per_cycle = dict.fromkeys(
            [r[0] for r in self.db.execute("SELECT DISTINCT cycle FROM selections")], (0, 0)
        )
        for cycle, frames, clicks in self.db.execute(
            "SELECT cycle, COUNT(*), SUM(clicks) FROM annotations WHERE version = 1 GROUP BY cycle"
        ):
            per_cycle[cycle] = (frames, clicks)
        selected = dict(self.db.execute("SELECT cycle, COUNT(*) FROM selections GROUP BY cycle").fetchall())
        rows, frames_sum, clicks_sum = [], 0, 0
        for cycle in sorted(per_cycle):
            frames, clicks = per_cycle[cycle]
            frames_sum, clicks_sum = frames_sum + frames, clicks_sum + clicks
            rows.append(CycleStatus(cycle, frames, frames_sum, 100.0 * frames_sum / max(total, 1),
                                    clicks, clicks_sum, selected.get(cycle, 0)))
        return rows

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older ledger up to SCHEMA_VERSION in place, inside the opening transaction."""
    version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    while version in MIGRATIONS:
        for statement in MIGRATIONS[version]:
            db.execute(statement)
        version = str(int(version) + 1)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))


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


def _box_row(box: Sequence[float] | None) -> tuple:
    return (None,) * 4 if box is None else tuple(float(c) for c in box)


def _pack_mask(mask: np.ndarray | None) -> bytes | None:
    return None if mask is None else np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()


def _unpack_mask(blob: bytes | None, shape: tuple[int, int]) -> np.ndarray | None:
    if blob is None:
        return None
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=shape[0] * shape[1])
    return bits.reshape(shape).astype(bool)

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

Schema 3 added ``sources``: datasets whose videos joined the pool after the
workspace was created (``sparselabel add-videos``, ``loop.add_videos``), each
with the cycle its videos' initial labels belong to. A source is ``added``
(videos registered with ``videos.added_cycle``, initial labels written, in the
transaction that records it) or ``pending`` (the loop registers its videos
right before it trains that cycle). See ``growth_cycle`` for the cycle rule.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sparselabel.data.dataset import Video, box_problems
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.faults import fault_point

SCHEMA_VERSION = "3"
ADDED, PENDING = "added", "pending"
SOURCES_TABLE = """CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    split TEXT NOT NULL,
    options TEXT NOT NULL,
    video_ids TEXT NOT NULL,
    cycle INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('added', 'pending')),
    requested_at TEXT NOT NULL,
    added_at TEXT,
    UNIQUE (kind, path, split, options)
)"""
# Statements that bring a ledger of the key version up to the next one (additive only).
MIGRATIONS = {"1": ("ALTER TABLE annotations ADD COLUMN corrected INTEGER",), "2": (SOURCES_TABLE,)}

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
""" + SOURCES_TABLE + ";\n"


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


@dataclass(frozen=True)
class Source:
    """A dataset whose videos join the pool after creation: where it is and which of its videos."""

    kind: str
    path: str
    split: str
    options: dict
    video_ids: tuple[str, ...]
    cycle: int = -1  # the cycle its videos' initial labels belong to
    status: str = ""  # added | pending
    id: int = 0

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two sources the same (a re-added identical source is a no-op)."""
        return self.kind, self.path, self.split, _options_json(self.options)


@dataclass
class Joining:
    """Everything written when a source's videos join the pool: validated before the transaction."""

    source: Source
    videos: list[Video]
    picks: list[tuple[str, int]]  # their initial random frames
    answers: list[FrameAnnotation]  # the oracle's answers to those picks (none without an oracle)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Ledger:
    """A workspace's SQLite ledger (one file; safe to reopen after a crash)."""

    def __init__(self, path: str | Path, create: bool = False):
        """Open the ledger at ``path``; ``create`` makes a new one there. Without it, a
        missing file, an empty one or any SQLite file without a ledger's schema is an error:
        a ledger is never silently re-initialised (a zero-byte file would otherwise become
        an empty workspace)."""
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise SparseLabelError("no ledger here (missing, or not a regular file)", self.path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            if not create and not self.db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
                self.db.close()
                raise SparseLabelError("not a sparselabel ledger: it has no schema (empty, or another "
                                       "SQLite file); restore it from a backup", self.path)
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
        """All statements inside commit together or not at all. Another process's write
        transaction is waited for (30 s, the connection's busy timeout), then it is an error."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise SparseLabelError("the ledger is busy: another sparselabel process has been writing to it for "
                                   "30 s; try again when it is done", self.path) from exc
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
        """Class names, stored as a JSON list (ledgers before it joined them with newlines)."""
        names = self.meta("classes")
        if not names:
            return []
        if names.startswith("["):
            try:
                parsed = json.loads(names)
                if isinstance(parsed, list):
                    return parsed
            except ValueError:
                pass  # an old ledger whose first class name starts with "["
        return names.split("\n")

    def set_classes(self, names: Sequence[str]) -> None:
        self.set_meta(classes=json.dumps(list(names)))

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
            _insert_videos(db, new, split, cycle)
        return len(new)

    def videos(self, split: str | None = None) -> dict[str, Video]:
        """Registered videos (``path`` is not stored in the ledger and comes back empty)."""
        query = "SELECT id, num_frames, fps, width, height, label FROM videos"
        rows = self.db.execute(query + (" WHERE split = ?" if split else "") + " ORDER BY id",
                               (split,) if split else ()).fetchall()
        return {r[0]: Video(r[0], Path(), r[1], r[2], r[3], r[4], r[5]) for r in rows}

    # --- annotations ----------------------------------------------------------------------

    def validate(self, annotations: Sequence[FrameAnnotation], source: str | Path | None = None,
                 joining: Iterable[Video] = ()) -> None:
        """Raise AnnotationError (naming ``source``) for the first annotation that cannot be stored.

        ``joining``: videos not registered yet that are written in the same transaction.
        """
        where = source if source is not None else self.path
        videos = {**self.videos(), **{v.id: v for v in joining}}
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
        outcome: dict[str, list[tuple[str, int]]] | None = None,
    ) -> int:
        """Store answers in one transaction; returns the number of new rows.

        An answer identical to the frame's current one is skipped (re-importing
        changes nothing). A different answer for an annotated frame raises, or with
        ``on_conflict="version"`` is kept as a new version. ``cycle=None`` stores
        each answer's own ``cycle`` (one import can answer frames selected in
        different cycles). An answer's ``corrected`` actors cost
        ``clicks_per_corrected`` each (default: ``clicks_per_actor``), the rest
        ``clicks_per_actor``.

        What to write (new, unchanged, new version) is decided inside the write
        transaction (``BEGIN IMMEDIATE``), so concurrent writers (two imports, webhooks)
        serialise and end exactly as if run one after the other. ``outcome``, when given,
        receives the frames of each kind: ``new``, ``versions``, ``unchanged``.
        """
        per_corrected = clicks_per_actor if clicks_per_corrected is None else clicks_per_corrected
        self.validate(annotations, source_file)
        plan: dict[str, list[tuple[str, int]]] = {"new": [], "versions": [], "unchanged": []}
        with self.transaction() as db:
            current = self.annotations_at([(a.video_id, a.frame) for a in annotations])
            fresh = []
            for ann in annotations:
                key, old = (ann.video_id, ann.frame), current.get((ann.video_id, ann.frame))
                if old is None:
                    fresh.append((ann, 1))
                    plan["new"].append(key)
                elif same_answer(old, ann):
                    plan["unchanged"].append(key)
                else:
                    if on_conflict != "version":
                        raise AnnotationError(
                            f"video {ann.video_id!r} frame {ann.frame}: already annotated (version {old.version}) "
                            "with a different answer", source_file or self.path)
                    fresh.append((ann, old.version + 1))
                    plan["versions"].append(key)
            _insert_answers(db, fresh, source=source, cycle=cycle, clicks=(clicks_per_actor, per_corrected),
                            annotator=annotator, source_file=source_file)
        if outcome is not None:
            outcome.update(plan)
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
        return self._latest(None if video_id is None else [video_id])

    def annotations_at(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FrameAnnotation]:
        keys = set(keys)
        found = self._latest(sorted({vid for vid, _ in keys}))
        return {(a.video_id, a.frame): a for a in found if (a.video_id, a.frame) in keys}

    def _latest(self, video_ids: list[str] | None) -> list[FrameAnnotation]:
        """Latest-version answers of ``video_ids`` (all videos for None), with their actors:
        a few queries per ``SQL_CHUNK`` videos or answers, never one per row."""
        chunks = [None] if video_ids is None else [video_ids[i : i + SQL_CHUNK]
                                                    for i in range(0, len(video_ids), SQL_CHUNK)]
        rows = []
        for chunk in chunks:
            where, args = ("", ()) if chunk is None else (f"WHERE video_id IN ({_marks(chunk)})", tuple(chunk))
            rows += self.db.execute(
                "SELECT a.id, a.video_id, a.frame, a.version, a.cycle, a.source, a.clicks, COALESCE(a.corrected, 0)"
                " FROM annotations a "
                f"JOIN (SELECT video_id, frame, MAX(version) AS v FROM annotations {where} GROUP BY video_id, frame) m "
                "ON a.video_id = m.video_id AND a.frame = m.frame AND a.version = m.v "
                "ORDER BY a.video_id, a.frame", args).fetchall()
        return self._with_actors(rows)

    def _with_actors(self, rows: list[tuple]) -> list[FrameAnnotation]:
        shapes = {vid: (h, w) for vid, h, w in self.db.execute("SELECT id, height, width FROM videos")}
        actors: dict[int, list[ActorLabel]] = defaultdict(list)
        ids = [r[0] for r in rows]
        for i in range(0, len(ids), SQL_CHUNK):
            chunk = ids[i : i + SQL_CHUNK]
            for ann_id, vid, actor, label, x1, y1, x2, y2, mask in self.db.execute(
                    "SELECT x.annotation_id, a.video_id, x.actor, x.label, x.x1, x.y1, x.x2, x.y2, x.mask "
                    f"FROM actors x JOIN annotations a ON a.id = x.annotation_id "
                    f"WHERE x.annotation_id IN ({_marks(chunk)}) ORDER BY x.annotation_id, x.actor", chunk):
                actors[ann_id].append(ActorLabel(actor, label, None if x1 is None else (x1, y1, x2, y2),
                                                 _unpack_mask(mask, shapes[vid])))
        return [FrameAnnotation(vid, frame, actors.get(ann_id, []), version, cycle, source, clicks, corrected)
                for ann_id, vid, frame, version, cycle, source, clicks, corrected in rows]

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
        try:
            with self.transaction() as db:
                _insert_selection(db, cycle, strategy, picks, scores)
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
        return self.step_status(cycle, step) == "done"

    def step_status(self, cycle: int, step: str) -> str | None:
        """'started' or 'done' for a recorded step, None for one never started."""
        row = self.db.execute("SELECT status FROM cycle_steps WHERE cycle = ? AND step = ?", (cycle, step)).fetchone()
        return None if row is None else row[0]

    def step_detail(self, cycle: int, step: str) -> str | None:
        """The result a finished step recorded (JSON text), or None."""
        row = self.db.execute("SELECT detail FROM cycle_steps WHERE cycle = ? AND step = ?", (cycle, step)).fetchone()
        return None if row is None else row[0]

    def done_steps(self, step: str) -> list[tuple[int, str | None]]:
        """(cycle, detail) of every finished ``step``, by cycle."""
        return self.db.execute("SELECT cycle, detail FROM cycle_steps WHERE step = ? AND status = 'done' "
                               "ORDER BY cycle", (step,)).fetchall()

    def loop_started(self) -> bool:
        """Whether any step other than ``init`` was ever recorded."""
        return self.db.execute("SELECT 1 FROM cycle_steps WHERE step != 'init' LIMIT 1").fetchone() is not None

    def latest_answered_cycle(self) -> int | None:
        """The highest cycle among the current answers (None before any): the cycle to train."""
        row = self.db.execute(
            "SELECT MAX(a.cycle) FROM annotations a "
            "JOIN (SELECT video_id, frame, MAX(version) AS v FROM annotations GROUP BY video_id, frame) m "
            "ON a.video_id = m.video_id AND a.frame = m.frame AND a.version = m.v").fetchone()
        return row[0]

    # --- summaries ------------------------------------------------------------------------

    def status(self, split: str | None = "pool") -> list[CycleStatus]:
        """Annotated frames, percent of the pool and clicks, per cycle (first answers only).

        A growing pool: each cycle's percent is of the pool that cycle trains on (the
        videos that joined in or before it), so a row never changes when videos join later.
        """
        sizes = self.db.execute(
            "SELECT added_cycle, COUNT(*), SUM(num_frames) FROM videos" + (" WHERE split = ?" if split else "")
            + " GROUP BY added_cycle", (split,) if split else ()).fetchall()
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
            pool_videos = sum(n for added, n, _ in sizes if added <= cycle)
            pool_frames = sum(f for added, _, f in sizes if added <= cycle)
            rows.append(CycleStatus(cycle, frames, frames_sum, 100.0 * frames_sum / max(pool_frames, 1),
                                    clicks, clicks_sum, selected.get(cycle, 0), pool_videos, pool_frames))
        return rows

    # --- a growing pool -------------------------------------------------------------------

    def growth_cycle(self) -> tuple[int, bool]:
        """(cycle, now): the next cycle to be trained, and whether videos can join it right away.

        No loop step ``train`` recorded yet (a fresh workspace, or steps run by hand): the
        latest cycle with a selection or an answer, now. Otherwise, with c the latest
        cycle whose training the loop started: cycle c + 1, now if cycle c's ``annotate``
        step is done (the loop stands between cycles), else later: the loop is inside
        cycle c, or stopped after evaluating it with cycle c + 1's frames still to
        select, and the videos join right before it trains cycle c + 1. Labels of a cycle
        are never written before that cycle's selection exists, which is what the step
        commands read the current cycle from.
        """
        trained = self.db.execute("SELECT MAX(cycle) FROM cycle_steps WHERE step = 'train'").fetchone()[0]
        if trained is None:
            latest = self.db.execute(
                "SELECT MAX(c) FROM (SELECT MAX(cycle) AS c FROM selections UNION ALL "
                "SELECT MAX(cycle) FROM annotations)").fetchone()[0]
            return latest or 0, True
        return trained + 1, self.step_done(trained, "annotate")

    def sources(self, status: str | None = None) -> list[Source]:
        """Datasets that joined (``added``) or will join (``pending``) the pool, in order."""
        query = "SELECT id, kind, path, split, options, video_ids, cycle, status FROM sources"
        rows = self.db.execute(query + (" WHERE status = ?" if status else "") + " ORDER BY id",
                               (status,) if status else ()).fetchall()
        return [Source(kind, path, split, json.loads(options), tuple(json.loads(ids)), cycle, state, sid)
                for sid, kind, path, split, options, ids, cycle, state in rows]

    def add_sources(self, batch: Sequence[Joining], *, split: str, strategy: str, clicks_per_actor: int,
                    expect: tuple[int, bool] | None = None) -> tuple[int, bool]:
        """Record new sources in one transaction; returns the ``growth_cycle`` they got.

        Now: their videos, initial selection and answers are written too. Later: only
        the source, as pending (``activate_sources`` writes the rest). The cycle is read
        inside the transaction, so a loop writing steps meanwhile cannot slip between.
        ``expect``: refuse unless the cycle rule gives exactly this.
        """
        self._check_joining(batch, new_sources=True)
        with self._joining_transaction() as db:
            cycle, joins_now = self.growth_cycle()
            if expect is not None and (cycle, joins_now) != expect:
                raise SparseLabelError(f"videos can join the pool at cycle {cycle} "
                                       f"{'now' if joins_now else 'later'}, not at cycle {expect[0]}", self.path)
            for item in batch:
                _insert_source(db, item.source, cycle, joins_now)
                if joins_now:
                    _join(db, item, cycle, split, strategy, clicks_per_actor)
                fault_point("ledger:sources-half-written")
        return cycle, joins_now

    def activate_sources(self, batch: Sequence[Joining], *, cycle: int, split: str, strategy: str,
                         clicks_per_actor: int) -> None:
        """Write the videos, initial selection and answers of pending sources of ``cycle``, in one transaction."""
        self._check_joining(batch, new_sources=False)
        with self._joining_transaction() as db:
            if self.growth_cycle() != (cycle, True):
                raise SparseLabelError(f"pending videos can join only right before cycle {cycle} trains", self.path)
            for item in batch:
                updated = db.execute("UPDATE sources SET status = ?, added_at = ? WHERE id = ? AND status = ? "
                                     "AND cycle = ?", (ADDED, now(), item.source.id, PENDING, cycle)).rowcount
                if updated != 1:
                    raise SparseLabelError(f"source {item.source.path} is not pending for cycle {cycle}", self.path)
                _join(db, item, cycle, split, strategy, clicks_per_actor)
                fault_point("ledger:sources-half-written")

    @contextmanager
    def _joining_transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction whose constraint failures (another process added the same ids meanwhile) read clearly."""
        try:
            with self.transaction() as db:
                yield db
        except sqlite3.IntegrityError as exc:
            raise AnnotationError(f"a video id or source is already in the workspace ({exc})", self.path) from exc

    def _check_joining(self, batch: Sequence[Joining], new_sources: bool) -> None:
        """Everything about a batch of joining videos that can be checked before writing."""
        known = set(self.videos())
        recorded = {s.key: s for s in self.sources()}
        seen: set[str] = set()
        for item in batch:
            where = item.source.path
            if new_sources and item.source.key in recorded:
                raise SparseLabelError("this dataset split is already a source of the pool", where)
            for v in item.videos:
                if v.id in known or v.id in seen:
                    raise AnnotationError(f"video id {v.id!r} is already in the workspace", where)
                seen.add(v.id)
            self.validate(item.answers, where, joining=item.videos)


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


def _insert_videos(db: sqlite3.Connection, videos: Iterable[Video], split: str, cycle: int) -> None:
    db.executemany(
        "INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(v.id, v.num_frames, v.width, v.height, v.fps, v.label, split, cycle) for v in videos],
    )


def _insert_selection(db: sqlite3.Connection, cycle: int, strategy: str, picks: Sequence[tuple[str, int]],
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


def _insert_answers(db: sqlite3.Connection, fresh: Sequence[tuple[FrameAnnotation, int]], *, source: str,
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
             source_file, (len(ann.actors) - ann.corrected) * per_actor + ann.corrected * per_corrected,
             len(ann.actors), stamp, ann.corrected),
        )
        db.executemany(
            "INSERT INTO actors VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(cur.lastrowid, a.actor, a.label, *_box_row(a.box), _pack_mask(a.mask)) for a in ann.actors],
        )
        fault_point("ledger:annotations-half-written")


def _insert_source(db: sqlite3.Connection, s: Source, cycle: int, joins_now: bool) -> None:
    stamp = now()
    db.execute(
        "INSERT INTO sources (kind, path, split, options, video_ids, cycle, status, requested_at, added_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (s.kind, s.path, s.split, _options_json(s.options), json.dumps(list(s.video_ids)), cycle,
         ADDED if joins_now else PENDING, stamp, stamp if joins_now else None))


def _join(db: sqlite3.Connection, item: Joining, cycle: int, split: str, strategy: str, clicks_per_actor: int) -> None:
    """A source's videos enter the pool at ``cycle`` with their initial selection and answers (as at init)."""
    _insert_videos(db, item.videos, split, cycle)
    _insert_selection(db, cycle, strategy, item.picks)
    _insert_answers(db, [(a, 1) for a in item.answers], source="initial", cycle=cycle,
                    clicks=(clicks_per_actor, clicks_per_actor))


def _options_json(options: dict) -> str:
    return json.dumps(options, sort_keys=True)


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


SQL_CHUNK = 500  # ids per IN (...) list: under SQLite's limit on bound parameters


def _marks(values: Sequence) -> str:
    return ",".join("?" * len(values))


def _unpack_mask(blob: bytes | None, shape: tuple[int, int]) -> np.ndarray | None:
    if blob is None:
        return None
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=shape[0] * shape[1])
    return bits.reshape(shape).astype(bool)

"""The SQLite ledger: every video, annotated frame, selection and cycle step of a workspace.

Durability rules: WAL journal with ``synchronous=FULL``, and every write is one
``BEGIN IMMEDIATE ... COMMIT`` transaction, so a process killed at any instant
leaves either all of a batch or none of it. Everything is validated before the
transaction starts, so bad input never leaves a partial write either.

An annotated frame holds *every* actor visible in it (zero actors is a valid
answer: the frame is known background). Frames are 0-based. A frame can be
answered more than once (a corrected or conflicting answer); each answer is a
new ``version`` and the latest one counts.

"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sparselabel.data.dataset import Video, box_problems
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.labels.growth import GrowingPool, Joining, Source
from sparselabel.labels.rows import (
    SQL_CHUNK,
    ActorLabel,
    CycleStatus,
    FrameAnnotation,
    insert_answers,
    insert_selection,
    insert_videos,
    now,
    placeholders,
    same_answer,
    unpack_mask,
)
from sparselabel.labels.schema import (
    ADDED,
    MIGRATIONS,
    PENDING,
    SCHEMA,
    SCHEMA_VERSION,
    SOURCES_TABLE,
    migrate,
)

# The row types and schema constants are part of the ledger's interface: importable from here.
__all__ = ["ADDED", "MIGRATIONS", "PENDING", "SCHEMA", "SCHEMA_VERSION", "SOURCES_TABLE", "ActorLabel", "CycleStatus",
           "FrameAnnotation", "Joining", "Ledger", "Source", "same_answer"]

class Ledger(GrowingPool):
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
            if create:
                with self.transaction() as db:
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        db.execute(statement)
                    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif self.meta("schema_version") in MIGRATIONS:  # opening writes nothing unless it must migrate
                with self.transaction() as db:
                    migrate(db)
        except sqlite3.OperationalError as exc:  # the file may well be fine: the disk, the folder, a lock
            raise SparseLabelError(f"cannot open the ledger ({exc}): is the disk full, the folder read-only, or "
                                   "another process holding it? Nothing was written", self.path) from exc
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
            insert_videos(db, new, split, cycle)
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
            insert_answers(db, fresh, source=source, cycle=cycle, clicks=(clicks_per_actor, per_corrected),
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
            where, args = ("", ()) if chunk is None else (f"WHERE video_id IN ({placeholders(chunk)})", tuple(chunk))
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
                    f"WHERE x.annotation_id IN ({placeholders(chunk)}) ORDER BY x.annotation_id, x.actor", chunk):
                actors[ann_id].append(ActorLabel(actor, label, None if x1 is None else (x1, y1, x2, y2),
                                                 unpack_mask(mask, shapes[vid])))
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
                insert_selection(db, cycle, strategy, picks, scores)
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

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]



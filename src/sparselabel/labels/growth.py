"""A growing pool: datasets whose videos join after the workspace was created.

``GrowingPool`` is the part of the ``Ledger`` that records them (``sparselabel
add-videos``, ``loop.add_videos``); see ``growth_cycle`` for the cycle rule.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sparselabel.data.dataset import Video
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.labels.rows import (
    FrameAnnotation,
    insert_answers,
    insert_selection,
    insert_videos,
    now,
)
from sparselabel.labels.schema import ADDED, PENDING


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
        return self.kind, self.path, self.split, options_json(self.options)


@dataclass
class Joining:
    """Everything written when a source's videos join the pool: validated before the transaction."""

    source: Source
    videos: list[Video]
    picks: list[tuple[str, int]]  # their initial random frames
    answers: list[FrameAnnotation]  # the oracle's answers to those picks (none without an oracle)


class GrowingPool:
    """The sources of a ``Ledger``, mixed into it (uses its ``db``, ``transaction``,
    ``videos``, ``validate`` and ``step_done``)."""

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
                insert_source(db, item.source, cycle, joins_now)
                if joins_now:
                    join(db, item, cycle, split, strategy, clicks_per_actor)
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
                join(db, item, cycle, split, strategy, clicks_per_actor)
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


def insert_source(db: sqlite3.Connection, s: Source, cycle: int, joins_now: bool) -> None:
    stamp = now()
    db.execute(
        "INSERT INTO sources (kind, path, split, options, video_ids, cycle, status, requested_at, added_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (s.kind, s.path, s.split, options_json(s.options), json.dumps(list(s.video_ids)), cycle,
         ADDED if joins_now else PENDING, stamp, stamp if joins_now else None))


def join(db: sqlite3.Connection, item: Joining, cycle: int, split: str, strategy: str, clicks_per_actor: int) -> None:
    """A source's videos enter the pool at ``cycle`` with their initial selection and answers (as at init)."""
    insert_videos(db, item.videos, split, cycle)
    insert_selection(db, cycle, strategy, item.picks)
    insert_answers(db, [(a, 1) for a in item.answers], source="initial", cycle=cycle,
                    clicks=(clicks_per_actor, clicks_per_actor))


def options_json(options: dict) -> str:
    return json.dumps(options, sort_keys=True)

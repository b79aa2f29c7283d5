"""The ledger's SQLite schema and its migrations.

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

import sqlite3

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


def migrate(db: sqlite3.Connection) -> None:
    """Bring an older ledger up to SCHEMA_VERSION in place, inside the opening transaction."""
    version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    while version in MIGRATIONS:
        for statement in MIGRATIONS[version]:
            db.execute(statement)
        version = str(int(version) + 1)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sparselabel.data.dataset import Video
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.labels.ledger import ActorLabel, FrameAnnotation, Ledger


def make_ledger(path: Path) -> Ledger:
    ledger = Ledger(path, create=True)
    ledger.set_meta(classes="run\njump")
    ledger.add_videos([Video("a", Path(), 30, 25.0, 64, 48, 0), Video("b", Path(), 10, 25.0, 64, 48, 1)], "pool")
    return ledger


def box_answer(video="a", frame=3, box=(1, 2, 30, 40), label=0):
    return FrameAnnotation(video, frame, [ActorLabel(0, label, box)])


def snapshot(ledger: Ledger):
    return [(a.video_id, a.frame, a.version, [(x.actor, x.label, x.box) for x in a.actors]) for a in ledger.annotations()]


def test_round_trip_with_masks_and_clicks(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    mask = np.zeros((48, 64), dtype=bool)
    mask[5:9, 10:20] = True
    two = FrameAnnotation("a", 4, [ActorLabel(0, 0, (1, 2, 3, 4)), ActorLabel(1, 1, (10, 5, 20, 9), mask)])
    empty = FrameAnnotation("b", 0, [])
    assert ledger.record_annotations([two, empty], source="oracle", cycle=1, clicks_per_actor=2) == 2
    got = {(a.video_id, a.frame): a for a in ledger.annotations()}
    assert got[("a", 4)].clicks == 4 and got[("b", 0)].clicks == 0
    np.testing.assert_array_equal(got[("a", 4)].actors[1].mask, mask)
    assert got[("a", 4)].actors[0].mask is None
    assert ledger.annotated_frames()["a"].tolist() == [4]
    assert ledger.annotated_frames()["b"].tolist() == [0]


@pytest.mark.parametrize(
    "answer, problem",
    [
        (box_answer(video="zzz"), "unknown video"),
        (box_answer(frame=30), "frame outside 0..29"),
        (box_answer(frame=-1), "frame outside"),
        (box_answer(box=(10, 2, 5, 40)), "x2 <= x1"),
        (box_answer(box=(1, 2, 65, 40)), "outside the 64x48 frame"),
        (box_answer(label=7), "label 7 outside"),
        (FrameAnnotation("a", 1, [ActorLabel(0, 0, None, np.zeros((10, 10), bool))]), r"mask is \(10, 10\)"),
    ],
)
def test_bad_annotations_are_refused_and_change_nothing(tmp_path, answer, problem):
    ledger = make_ledger(tmp_path / "l.sqlite")
    ledger.record_annotations([box_answer(frame=0)], source="oracle", cycle=0)
    before = snapshot(ledger)
    good = box_answer(frame=5)
    with pytest.raises(AnnotationError, match=problem) as info:
        ledger.record_annotations([good, answer], source="import", cycle=1, source_file="answers.json")
    assert "answers.json" in str(info.value)
    assert snapshot(ledger) == before  # the good answer in the same batch was not written either


def test_same_answer_twice_changes_nothing_and_conflicts_become_versions(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    assert ledger.record_annotations([box_answer()], source="import", cycle=1) == 1
    assert ledger.record_annotations([box_answer()], source="import", cycle=1) == 0
    with pytest.raises(AnnotationError, match="already annotated"):
        ledger.record_annotations([box_answer(box=(2, 2, 30, 40))], source="import", cycle=1)
    assert ledger.record_annotations([box_answer(box=(2, 2, 30, 40))], source="import", cycle=1,
                                     on_conflict="version") == 1
    (current,) = ledger.annotations()
    assert current.version == 2 and current.actors[0].box == (2, 2, 30, 40)
    assert ledger.db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0] == 2  # nothing overwritten


def test_selection_never_repeats_a_frame(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    ledger.record_annotations([box_answer(frame=1)], source="oracle", cycle=0)
    ledger.record_selection(1, "random", [("a", 2), ("b", 3)], [0.5, 0.4])
    with pytest.raises(AnnotationError, match="already annotated"):
        ledger.record_selection(2, "random", [("a", 1)])
    with pytest.raises(AnnotationError, match="selected twice"):
        ledger.record_selection(2, "random", [("b", 3)])
    assert ledger.selections() == [(1, "random", "a", 2, 0.5), (1, "random", "b", 3, 0.4)]


def test_status_counts_frames_percent_and_clicks_per_cycle(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    ledger.record_selection(0, "initial-random", [("a", 0), ("b", 0)])
    ledger.record_annotations([box_answer(frame=0), FrameAnnotation("b", 0, [])], source="initial", cycle=0)
    ledger.record_annotations([box_answer(frame=9)], source="oracle", cycle=1)
    rows = ledger.status("pool")
    assert [(r.cycle, r.new_frames, r.frames, r.clicks, r.selected) for r in rows] == [(0, 2, 2, 2, 2), (1, 1, 3, 4, 0)]
    assert rows[1].percent == pytest.approx(100 * 3 / 40)


def test_not_a_ledger_is_a_clear_error(tmp_path):
    bad = tmp_path / "ledger.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SparseLabelError, match="not a usable ledger"):
        Ledger(bad)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from sparselabel.data.dataset import Video
    from sparselabel.labels.ledger import ActorLabel, FrameAnnotation, Ledger

    ledger = Ledger(sys.argv[1], create=True)
    ledger.set_meta(classes="a")
    ledger.add_videos([Video(f"v{i}", Path(), 100000, 25.0, 160, 120, 0) for i in range(4)], "pool")
    mask = np.ones((120, 160), dtype=bool)
    batch, size = 0, 40
    while True:
        answers = [
            FrameAnnotation(f"v{i % 4}", batch * size + i,
                            [ActorLabel(k, 0, (1, 1, 50, 60), mask) for k in range(3)])
            for i in range(size)
        ]
        ledger.record_annotations(answers, source="oracle", cycle=batch)
        print(batch, flush=True)
        batch += 1
    """
)


@pytest.mark.parametrize("kill_after", [3, 7])
def test_sigkill_while_writing_keeps_committed_batches_whole(tmp_path, kill_after):
    path = tmp_path / "ledger.sqlite"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    committed = -1
    while committed < kill_after:
        committed = int(child.stdout.readline())
    time.sleep(0.013 * kill_after)  # land somewhere inside a later transaction
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    ledger = Ledger(path)  # opens cleanly: WAL recovery
    assert ledger.integrity_check() == "ok"
    db = ledger.db
    batches = [c for (c,) in db.execute("SELECT DISTINCT cycle FROM annotations ORDER BY cycle")]
    assert batches == list(range(len(batches))) and len(batches) >= kill_after + 1
    per_batch = db.execute("SELECT cycle, COUNT(*) FROM annotations GROUP BY cycle").fetchall()
    assert all(n == 40 for _, n in per_batch)  # no half-written batch
    orphans = db.execute(
        "SELECT COUNT(*) FROM annotations a WHERE a.num_actors != "
        "(SELECT COUNT(*) FROM actors WHERE annotation_id = a.id)").fetchone()[0]
    assert orphans == 0
    # the workspace still takes writes after the crash
    ledger.record_annotations([FrameAnnotation("v0", 99999, [])], source="oracle", cycle=999)


@pytest.mark.parametrize("content", [b"", None], ids=["zero-byte file", "SQLite file without the schema"])
def test_a_ledger_without_its_schema_is_an_error_never_a_new_ledger(tmp_path, content):
    path = tmp_path / "ledger.sqlite"
    if content is None:
        import sqlite3

        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE other (x)")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(SparseLabelError, match="no schema"):
        Ledger(path)
    assert path.read_bytes() == before  # untouched
    with pytest.raises(SparseLabelError, match="no ledger here"):
        Ledger(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()

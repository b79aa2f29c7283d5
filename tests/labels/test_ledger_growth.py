"""The ledger of a growing pool: the cycle rule, sources, per-cycle pool sizes, and the schema-2 migration."""

import sqlite3
from pathlib import Path

import pytest

import sparselabel.labels.ledger as ledger_module
from sparselabel.data.dataset import Video
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.labels.ledger import ActorLabel, FrameAnnotation, Joining, Ledger, Source


def make_ledger(path: Path) -> Ledger:
    ledger = Ledger(path, create=True)
    ledger.set_meta(classes="run\njump")
    ledger.add_videos([Video("a", Path(), 30, 25.0, 64, 48, 0), Video("b", Path(), 10, 25.0, 64, 48, 1)], "pool")
    ledger.record_selection(0, "initial-random", [("a", 3), ("b", 0)])
    ledger.record_annotations([FrameAnnotation("a", 3, [ActorLabel(0, 0, (1, 2, 30, 40))]),
                               FrameAnnotation("b", 0, [])], source="initial", cycle=0)
    return ledger


def joining(path: str = "/data/more", ids: tuple[str, ...] = ("c",)) -> Joining:
    videos = [Video(v, Path(), 20, 25.0, 64, 48, 1) for v in ids]
    answers = [FrameAnnotation(v, 5, [ActorLabel(0, 1, (2, 2, 9, 9))]) for v in ids]
    return Joining(Source("native", path, "train", {}, ids), videos, [(v, 5) for v in ids], answers)


def add(ledger: Ledger, *batch: Joining, **kw) -> tuple[int, bool]:
    return ledger.add_sources(list(batch), split="pool", strategy="initial-random", clicks_per_actor=2, **kw)


def steps(ledger: Ledger, cycle: int, *names: str) -> None:
    for name in names:
        ledger.start_step(cycle, name)
        ledger.finish_step(cycle, name)


def test_the_cycle_rule_reads_the_loop_steps(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    assert ledger.growth_cycle() == (0, True)  # nothing trained: the open cycle, at once
    ledger.start_step(0, "train")
    assert ledger.growth_cycle() == (1, False)  # training cycle 0: wait for cycle 1
    steps(ledger, 0, "train", "predict", "evaluate")
    assert ledger.growth_cycle() == (1, False)  # stopped after evaluating: cycle 1's frames still to select
    steps(ledger, 0, "score", "select")
    ledger.start_step(0, "annotate")
    assert ledger.growth_cycle() == (1, False)
    ledger.finish_step(0, "annotate")
    assert ledger.growth_cycle() == (1, True)  # between cycles
    ledger.start_step(1, "train")
    assert ledger.growth_cycle() == (2, False)


def test_steps_run_by_hand_put_new_videos_in_the_latest_labelled_cycle(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    ledger.record_selection(2, "apu", [("a", 9)])
    assert ledger.growth_cycle() == (2, True)


def test_joining_now_writes_videos_selection_and_answers_in_one_go(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    steps(ledger, 0, "train", "predict", "evaluate", "score", "select", "annotate")
    ledger.record_selection(1, "apu", [("a", 7)])
    assert add(ledger, joining()) == (1, True)
    (source,) = ledger.sources()
    assert (source.cycle, source.status, source.video_ids) == (1, "added", ("c",))
    assert ledger.selections(1) == [(1, "apu", "a", 7, None), (1, "initial-random", "c", 5, None)]  # after the cycle's
    (answer,) = ledger.annotations("c")
    assert (answer.cycle, answer.source, answer.clicks) == (1, "initial", 2)
    rows = ledger.status()
    assert [(r.cycle, r.pool_videos, r.pool_frames) for r in rows] == [(0, 2, 40), (1, 3, 60)]
    assert rows[0].percent == pytest.approx(100 * 2 / 40)  # a row never changes as the pool grows
    assert rows[1].percent == pytest.approx(100 * 3 / 60)


def test_bad_batches_write_nothing(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    before = list(ledger.db.iterdump())
    with pytest.raises(AnnotationError, match="'a' is already in the workspace"):
        add(ledger, joining(ids=("c", "a")))
    with pytest.raises(AnnotationError, match="'c' is already in the workspace"):
        add(ledger, joining(), joining("/data/other"))
    bad = joining()
    bad.answers[0].actors[0] = ActorLabel(0, 7, (2, 2, 9, 9))
    with pytest.raises(AnnotationError, match="label 7 outside"):
        add(ledger, bad)
    with pytest.raises(SparseLabelError, match="not at cycle 3"):
        add(ledger, joining(), expect=(3, True))
    assert list(ledger.db.iterdump()) == before
    add(ledger, joining())
    with pytest.raises(SparseLabelError, match="already a source"):
        add(ledger, joining(ids=("d",)))


def test_pending_sources_join_only_right_before_their_cycle_trains(tmp_path):
    ledger = make_ledger(tmp_path / "l.sqlite")
    steps(ledger, 0, "train", "predict", "evaluate")
    assert add(ledger, joining()) == (1, False)
    (pending,) = ledger.sources("pending")
    assert "c" not in ledger.videos() and ledger.annotations("c") == []
    item = joining()
    item.source = pending
    with pytest.raises(SparseLabelError, match="right before cycle 1"):
        ledger.activate_sources([item], cycle=1, split="pool", strategy="initial-random", clicks_per_actor=2)
    steps(ledger, 0, "score", "select", "annotate")
    ledger.activate_sources([item], cycle=1, split="pool", strategy="initial-random", clicks_per_actor=2)
    assert [s.status for s in ledger.sources()] == ["added"] and ledger.annotations("c")[0].cycle == 1
    with pytest.raises(SparseLabelError, match="not pending"):
        ledger.activate_sources([joining(ids=("e",))], cycle=1, split="pool", strategy="initial-random",
                                clicks_per_actor=2)


def test_a_schema_2_ledger_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v2.sqlite"
    db = sqlite3.connect(path)
    db.executescript(ledger_module.SCHEMA.replace(ledger_module.SOURCES_TABLE + ";\n", ""))
    db.execute("INSERT INTO meta VALUES ('schema_version', '2'), ('classes', 'run\njump')")
    db.execute("INSERT INTO videos VALUES ('a', 30, 64, 48, 25.0, 0, 'pool', 0)")
    db.execute("INSERT INTO annotations (video_id, frame, version, cycle, source, clicks, num_actors, created_at,"
               " corrected) VALUES ('a', 3, 1, 0, 'initial', 2, 1, 'then', 0)")
    db.execute("INSERT INTO actors VALUES (1, 0, 1, 1, 2, 30, 40, NULL)")
    db.execute("INSERT INTO cycle_steps VALUES (0, 'init', 'done', 'then', 'then', NULL)")
    db.commit()
    assert "sources" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    old = [line for line in db.iterdump() if line.startswith("INSERT") and "schema_version" not in line]
    db.close()

    ledger = Ledger(path)
    assert ledger.meta("schema_version") == ledger_module.SCHEMA_VERSION == "3"
    assert ledger.sources() == [] and ledger.growth_cycle() == (0, True)
    assert set(old) <= set(ledger.db.iterdump())
    assert add(ledger, joining()) == (0, True)
    ledger.close()
    with Ledger(path) as again:  # reopening a migrated ledger is a no-op
        assert [s.video_ids for s in again.sources()] == [("c",)]

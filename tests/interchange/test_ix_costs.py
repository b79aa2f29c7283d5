"""Click costs of corrected vs drawn boxes, the ledger's schema-2 migration, and which Label Studio
annotation of a task counts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ix_tools import ADDED, MOVED, PREDICTED, answers, load_json, ls_percent, ls_submit

from sparselabel.data.dataset import Video
from sparselabel.interchange import export_tasks, import_answers
from sparselabel.labels import ledger as ledger_module
from sparselabel.labels.ledger import ActorLabel, FrameAnnotation, Ledger


def _jsonl_answer(path: Path, frames: dict[tuple[str, int], list[dict]]) -> Path:
    lines = [{"format": "sparselabel-frame/1", "video": v, "frame": f, "answered": True, "actors": actors}
             for (v, f), actors in frames.items()]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_a_box_matching_an_offered_pre_annotation_costs_the_corrected_price(predicted_ws, tmp_path):
    ws = predicted_ws
    ws.config.labels.clicks_per_box, ws.config.labels.clicks_per_corrected_box = 4, 1
    export_tasks(ws, "json", tmp_path / "out", with_predictions=True)
    far = (40.0, 30.0, 60.0, 46.0)  # IoU 0 with the prediction: drawn, although a prediction was offered
    path = _jsonl_answer(tmp_path / "a.jsonl", {
        ("vid0", 2): [{"actor": 0, "label": "right", "box": list(MOVED)}, {"actor": 1, "label": "left",
                                                                          "box": list(ADDED)}],
        ("vid0", 7): [{"actor": 0, "label": "left", "box": list(far)}],
    })
    report = import_answers(ws, path)
    assert (report.corrected, report.drawn, report.clicks) == (1, 2, 1 + 2 * 4)
    got = {(a.video_id, a.frame): (a.corrected, a.clicks) for a in ws.ledger.annotations()}
    assert got == {("vid0", 2): (1, 1 + 4), ("vid0", 7): (0, 4)}


def test_frames_exported_without_predictions_cost_drawn_boxes(predicted_ws, tmp_path):
    ws = predicted_ws
    export_tasks(ws, "json", tmp_path / "pre", with_predictions=True)
    export_tasks(ws, "json", tmp_path / "plain")  # the newest export of these frames offered nothing
    path = _jsonl_answer(tmp_path / "a.jsonl", {("vid0", 2): [{"actor": 0, "label": "right", "box": list(PREDICTED)}]})
    report = import_answers(ws, path)
    assert (report.corrected, report.drawn, report.clicks) == (0, 1, 2)


def test_a_schema_1_ledger_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    old_schema = ledger_module.SCHEMA.replace("    corrected INTEGER,\n", "")
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('classes', 'run\njump')")
    db.execute("INSERT INTO videos VALUES ('a', 30, 64, 48, 25.0, 0, 'pool', 0)")
    db.execute("INSERT INTO annotations (video_id, frame, version, cycle, source, clicks, num_actors, created_at)"
               " VALUES ('a', 3, 1, 0, 'oracle', 2, 1, 'then')")
    db.execute("INSERT INTO actors VALUES (1, 0, 1, 1, 2, 30, 40, NULL)")
    db.commit()
    db.close()

    ledger = Ledger(path)
    assert ledger.meta("schema_version") == ledger_module.SCHEMA_VERSION == "3"
    (old,) = ledger.annotations()
    assert (old.frame, old.clicks, old.corrected, old.actors[0].box) == (3, 2, 0, (1, 2, 30, 40))
    new = FrameAnnotation("a", 5, [ActorLabel(0, 0, (1, 2, 3, 4)), ActorLabel(1, 1, (5, 5, 9, 9))], cycle=2,
                          corrected=1)
    ledger.record_annotations([new], source="import", cycle=None, clicks_per_actor=3, clicks_per_corrected=1)
    assert ledger.db.execute("SELECT cycle, clicks, corrected FROM annotations WHERE frame = 5").fetchone() == (2, 4, 1)
    assert ledger.db.execute("SELECT corrected FROM annotations WHERE frame = 3").fetchone() == (None,)
    ledger.close()
    Ledger(path).close()  # reopening a migrated ledger is a no-op


def test_record_annotations_keeps_its_old_behaviour(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", create=True)
    ledger.set_meta(classes="run")
    ledger.add_videos([Video("a", Path(), 10, 25.0, 64, 48, 0)], "pool")
    ledger.record_annotations([FrameAnnotation("a", 1, [ActorLabel(0, 0, (1, 1, 5, 5))], cycle=9)],
                              source="oracle", cycle=3)
    assert ledger.db.execute("SELECT cycle, clicks, corrected FROM annotations").fetchone() == (3, 2, 0)


def test_labelstudio_uses_the_latest_submitted_annotation_and_counts_open_tasks(ws, tmp_path):
    export_tasks(ws, "labelstudio", tmp_path / "out")
    tasks = load_json(tmp_path / "out" / "labelstudio" / "image-tasks.json")
    region = {"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
              "value": {**ls_percent(ADDED), "rotation": 0, "rectanglelabels": ["left"]}}
    exported = ls_submit(tasks[:2], [[region], None])
    older = {**exported[0]["annotations"][0], "result": [], "updated_at": "2023-01-01T00:00:00Z"}
    skipped = {**older, "was_cancelled": True, "updated_at": "2025-01-01T00:00:00Z"}
    exported[0]["annotations"] += [older, skipped]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(exported))
    report = import_answers(ws, path)
    key = (tasks[0]["data"]["video_id"], tasks[0]["data"]["frame"])
    assert report.new == [key] and report.unanswered == 1
    assert answers(ws.ledger)[key] == [("left", ADDED)]
    assert "2 annotations, used the most recent" in report.summary()
    assert "1 tasks in the file have no answer yet" in report.summary()


def test_labelstudio_rotated_rectangles_become_their_axis_aligned_envelope(ws, tmp_path):
    value = {"x": 50.0, "y": 50.0, "width": 12.5, "height": 25.0, "rotation": 90, "rectanglelabels": ["left"]}
    task = {"id": 1, "data": {"video_id": "vid0", "frame": 2}, "annotations": [{"result": [
        {"id": "r", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "value": value}]}]}
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([task]))
    import_answers(ws, path)
    # 8 x 12 px at (32, 24), turned 90 degrees clockwise about its top-left corner
    ((_, box),) = answers(ws.ledger)[("vid0", 2)]
    assert box == (20.0, 24.0, 32.0, 32.0)

"""Conformance with datumaro's CVAT format: our CVAT export read back by datumaro, and answers
written by datumaro (a dataset built from our export, then edited) imported box by box.

datumaro writes CVAT for video files that CVAT itself would not: the task is named after the
dataset subset, ``size`` counts the frames with shapes, ``start_frame`` is 0 and ``stop_frame``
equals ``size`` whatever the frames are. Each of these used to refuse the file.

datumaro is no dependency of sparselabel (installed beside it, it downgrades pillow and pulls
pandas, pyarrow and OpenCV), so it runs in a process of its own: the Python named by
$SPARSELABEL_DATUMARO_PYTHON, else this one if it can import datumaro; else these tests skip.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ix_tools import (
    ADDED,
    MOVED,
    PREDICTED,
    PREDICTED_LABEL,
    SELECTED,
    answers,
    expected_after_edits,
)

from sparselabel.interchange import export_tasks, import_answers
from sparselabel.labels.ledger import FrameAnnotation

HELPER = Path(__file__).with_name("dm_cvat.py")


def run(python: str, *args: str) -> str:
    done = subprocess.run([python, str(HELPER), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def read_back(python: str, folder: Path) -> list[dict]:
    return json.loads(run(python, "read", str(folder)))


def write_cvat(python: str, items: list[dict], subset: str, tmp: Path) -> Path:
    spec = tmp / f"{subset}-spec.json"
    spec.write_text(json.dumps({"subset": subset, "labels": ["left", "right"], "width": 64, "height": 48,
                                "items": items}))
    run(python, "write", str(spec), str(tmp / f"dm-{subset}"))
    return tmp / f"dm-{subset}" / f"{subset}.xml"


def test_datumaro_reads_our_cvat_export_with_its_keyframes(predicted_ws, tmp_path, datumaro):
    export_tasks(predicted_ws, "cvat", tmp_path / "out", with_predictions=True)
    for vid, selected in SELECTED.items():
        items = read_back(datumaro, tmp_path / "out" / "cvat" / vid)
        assert [i["frame"] for i in items] == list(range(20))
        boxes = [b for i in items for b in i["boxes"]]
        assert {(b["track"], b["label"], tuple(b["box"]), b["outside"]) for b in boxes} == {(0, PREDICTED_LABEL,
                                                                                              PREDICTED, False)}
        assert [i["frame"] for i in items if i["boxes"][0]["keyframe"]] == selected


def edit(vid: str, items: list[dict]) -> list[dict]:
    """The round trip's edits: vid0 frame 2 moved, nobody on vid0 frame 7, vid1 frame 1 one more box."""
    at = {i["frame"]: i for i in items}
    if vid == "vid0":
        at[2]["boxes"][0]["box"] = list(MOVED)
        at[7]["boxes"][0].update(outside=True, keyframe=True)
    elif vid == "vid1":
        at[1]["boxes"].append({"track": 7, "label": "left", "box": list(ADDED), "keyframe": True, "outside": False})
        at[2]["boxes"].append({"track": 7, "label": "left", "box": list(ADDED), "keyframe": True, "outside": True})
    return items


def test_answers_written_by_datumaro_import_box_by_box(predicted_ws, tmp_path, datumaro):
    ws = predicted_ws
    export_tasks(ws, "cvat", tmp_path / "out", with_predictions=True)
    reports = []
    for vid in SELECTED:
        items = edit(vid, read_back(datumaro, tmp_path / "out" / "cvat" / vid))
        reports.append(import_answers(ws, write_cvat(datumaro, items, vid, tmp_path)))  # task named after subset
    assert answers(ws.ledger) == expected_after_edits()
    assert all(not r.ambiguous and not r.ignored_unselected for r in reports)
    assert sum(r.corrected for r in reports) == 8 and sum(r.drawn for r in reports) == 1
    assert any("datumaro writes such files" in note for note in reports[0].notes)


def test_part_of_a_video_under_datumaro_s_default_name_maps_to_its_frames(predicted_ws, tmp_path, datumaro):
    ws = predicted_ws
    others = [FrameAnnotation(vid, f, []) for vid in ("vid1", "vid2") for f in SELECTED[vid]]
    ws.ledger.record_annotations(others, source="import", cycle=0)  # so the export holds vid0 alone
    export_tasks(ws, "cvat", tmp_path / "out", with_predictions=True)
    items = [i for i in read_back(datumaro, tmp_path / "out" / "cvat" / "vid0") if 5 <= i["frame"] <= 16]
    items[7 - 5]["boxes"][0].update(outside=True, keyframe=True)  # nobody on frame 7
    report = import_answers(ws, write_cvat(datumaro, items, "default", tmp_path))
    assert report.new == [("vid0", 7), ("vid0", 15)]
    got = answers(ws.ledger)
    assert got[("vid0", 7)] == [] and got[("vid0", 15)] == [(PREDICTED_LABEL, PREDICTED)]
    assert [key for key, _ in report.ambiguous] == [("vid0", 2)] and ("vid0", 2) not in got  # not in the file
    assert "not among frames 5..16" in report.summary()
    assert any("matched to 'vid0', the one exported video" in note for note in report.notes)

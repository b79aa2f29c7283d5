"""Video answers that cannot be told apart from "nobody there" are reported, never recorded as it.

Two ordinary annotator mistakes in Label Studio used to import as frames with no actor:
keyframes one frame off (data.frames counts from 0, Label Studio from 1) and a region left
enabled across an asked frame (Label Studio shows an interpolated box there). CVAT has the
second one too: a track inside on an asked frame with only an interpolated shape.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from ix_tools import (
    ADDED,
    PREDICTED,
    PREDICTED_LABEL,
    SELECTED,
    answers,
    corners,
    cvat_reexport,
    load_json,
    ls_submit,
    snapshot,
    write_xml,
)

from sparselabel.errors import AnnotationError
from sparselabel.interchange import export_tasks, import_answers

EVERY_FRAME = {(vid, f): [(PREDICTED_LABEL, PREDICTED)] for vid, frames in SELECTED.items() for f in frames}


def sparselabel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparselabel", *args], capture_output=True, text=True)


def ls_answers(ws, tmp_path: Path, edit, only: str | None = None) -> Path:
    """Label Studio's JSON export after the annotator accepted the predictions and ``edit``ed
    each video's regions (``only``: the other videos' tasks left unanswered)."""
    out = tmp_path / "out"
    if not out.exists():
        export_tasks(ws, "labelstudio", out, with_predictions=True)
    tasks = load_json(out / "labelstudio" / "video-tasks.json")
    results = []
    for task in tasks:
        vid = task["data"]["video_id"]
        result = copy.deepcopy(task["predictions"][0]["result"])
        results.append(None if only not in (None, vid) else edit(vid, result))
    path = tmp_path / "ls-video-export.json"
    path.write_text(json.dumps(ls_submit(tasks, results)))
    return path


def one_frame_off(vid: str, result: list[dict]) -> list[dict]:
    """The annotator took data.frames (0-based) for Label Studio's frame numbers."""
    for region in result:
        for key in region["value"]["sequence"]:
            key["frame"] -= 1
            key["time"] = (key["frame"] - 1) / 25.0
    return result


def test_keyframes_one_frame_off_are_reported_and_nothing_is_recorded(predicted_ws, tmp_path):
    path = ls_answers(predicted_ws, tmp_path, one_frame_off, only="vid0")
    before = snapshot(predicted_ws.ledger)
    done = sparselabel("import", str(predicted_ws.root), str(path))
    assert done.returncode == 1, done.stdout
    (line,) = done.stderr.strip().splitlines()  # one line, the CLI's error
    assert line.startswith("error: ") and str(path) in line and "nothing to import: 3 frames ambiguous" in line
    assert "vid0:2 (no keyframe on it, but region 1 (id 't0') has one on Label Studio frame 2, one frame away" in line
    assert "Label Studio counts from 1: this is its frame 3" in line
    assert snapshot(predicted_ws.ledger) == before


def test_a_region_left_enabled_across_an_asked_frame_makes_only_that_frame_ambiguous(predicted_ws, tmp_path):
    def forget_a_keyframe(vid: str, result: list[dict]) -> list[dict]:
        if vid == "vid1":  # keyframes on 2 (enabled), 14, 15 (1-based): the one on 14 deleted
            del result[0]["value"]["sequence"][1]
        return result

    report = import_answers(predicted_ws, ls_answers(predicted_ws, tmp_path, forget_a_keyframe))
    why = "inside an enabled span of region 1 (id 't0') with no keyframe on it"
    assert report.ambiguous == [(("vid1", 13), why)]
    assert f"1 frames ambiguous, not recorded: vid1:13 ({why})" in report.summary()
    expected = {k: v for k, v in EVERY_FRAME.items() if k != ("vid1", 13)}
    assert answers(predicted_ws.ledger) == expected and len(report.new) == 8  # the clear frames are recorded


def test_a_region_enabled_on_its_last_keyframe_lasts_to_the_end_of_the_video(predicted_ws, tmp_path):
    def keep_going(vid: str, result: list[dict]) -> list[dict]:
        if vid == "vid0":  # the keyframe on frame 16 (1-based) deleted, the region still on after 8
            del result[0]["value"]["sequence"][2]
        return result

    report = import_answers(predicted_ws, ls_answers(predicted_ws, tmp_path, keep_going))
    assert [key for key, _ in report.ambiguous] == [("vid0", 15)]
    assert ("vid0", 15) not in answers(predicted_ws.ledger)


def test_a_region_switched_off_before_the_asked_frame_is_a_clear_no_actor(predicted_ws, tmp_path):
    def actor_leaves(vid: str, result: list[dict]) -> list[dict]:
        if vid == "vid0":  # region off after frame 8 (1-based), keyframe on 16 deleted: nobody on frame 16
            sequence = result[0]["value"]["sequence"]
            sequence[1]["enabled"] = False
            del sequence[2]
        return result

    report = import_answers(predicted_ws, ls_answers(predicted_ws, tmp_path, actor_leaves))
    assert report.ambiguous == [] and answers(predicted_ws.ledger)[("vid0", 15)] == []


def interpolate(result: list[dict], frames_count: int = 20) -> list[dict]:
    """What an export with interpolated keyframes adds (Label Studio's INTERPOLATE_KEY_FRAMES, or
    the snapshot option): an ``auto`` item on every frame a region shows between keyframes."""
    for region in result:
        keys = sorted(region["value"]["sequence"], key=lambda k: k["frame"])
        added = []
        for k, key in enumerate(keys):
            end = keys[k + 1]["frame"] if k + 1 < len(keys) else frames_count + 1
            if key["enabled"]:
                added += [{**key, "frame": f, "time": (f - 1) / 25.0, "auto": True} for f in range(key["frame"] + 1, end)]
        region["value"]["sequence"] = sorted(keys + added, key=lambda k: k["frame"])
    return result


def test_interpolated_items_of_an_export_are_not_keyframes(predicted_ws, tmp_path):
    report = import_answers(predicted_ws, ls_answers(predicted_ws, tmp_path, lambda vid, r: interpolate(r)))
    assert answers(predicted_ws.ledger) == EVERY_FRAME
    assert report.ignored_unselected == [] and report.ambiguous == []  # no answers on the interpolated frames


def test_an_asked_frame_with_only_an_interpolated_item_is_ambiguous(predicted_ws, tmp_path):
    def interpolated_only(vid: str, result: list[dict]) -> list[dict]:
        result = interpolate(result)
        if vid == "vid1":  # the keyframe on 14 (1-based) is now an interpolated item
            sequence = result[0]["value"]["sequence"]
            next(k for k in sequence if k["frame"] == 14)["auto"] = True
        return result

    report = import_answers(predicted_ws, ls_answers(predicted_ws, tmp_path, interpolated_only))
    assert [key for key, _ in report.ambiguous] == [("vid1", 13)]


def test_a_task_answered_by_nobody_is_not_an_import(ws, tmp_path):
    export_tasks(ws, "labelstudio", tmp_path / "out")
    tasks = load_json(tmp_path / "out" / "labelstudio" / "video-tasks.json")
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(ls_submit(tasks, [None] * len(tasks))))
    with pytest.raises(AnnotationError, match="nothing to import: 3 tasks without a submitted answer"):
        import_answers(ws, path)


def test_the_video_task_says_which_frames_to_annotate_in_label_studio_numbers(predicted_ws, tmp_path):
    out = tmp_path / "out"
    export_tasks(predicted_ws, "labelstudio", out, with_predictions=True)
    view = ET.fromstring((out / "labelstudio" / "video-config.xml").read_text())
    assert view[0].tag == "Header" and view[0].get("value") == "$ask"
    tasks = {t["data"]["video_id"]: t for t in load_json(out / "labelstudio" / "video-tasks.json")}
    assert tasks["vid0"]["data"]["ask"].startswith("Annotate frames 3, 8, 16 (Label Studio's frame numbers)")
    assert tasks["vid0"]["data"]["frames"] == [2, 7, 15]
    for vid, task in tasks.items():  # the pre-annotated keyframes sit on the asked frames
        keys = [k["frame"] for r in task["predictions"][0]["result"] for k in r["value"]["sequence"]]
        assert keys == [f + 1 for f in SELECTED[vid]]


# --- CVAT for video ------------------------------------------------------------------------


def cvat_answers(ws, tmp_path: Path, vid: str, edit) -> Path:
    out = tmp_path / "out"
    if not out.exists():
        export_tasks(ws, "cvat", out, with_predictions=True)
    root = cvat_reexport(out / "cvat" / vid / "annotations.xml")
    edit(root)
    return write_xml(root, tmp_path / f"cvat-{vid}.xml")


def shapes_of(root: ET.Element, track: int = 0) -> dict[int, ET.Element]:
    element = next(t for t in root.findall("track") if t.get("id") == str(track))
    return {int(b.get("frame")): b for b in element.findall("box")}


def test_a_cvat_track_with_only_an_interpolated_shape_on_an_asked_frame_is_ambiguous(predicted_ws, tmp_path):
    def never_visited(root: ET.Element) -> None:
        shapes_of(root)[7].set("keyframe", "0")

    report = import_answers(predicted_ws, cvat_answers(predicted_ws, tmp_path, "vid0", never_visited))
    assert report.ambiguous == [(("vid0", 7), "track 0 inside there with only an interpolated shape (keyframe=0), "
                                              "no keyframe")]
    got = answers(predicted_ws.ledger)
    assert ("vid0", 7) not in got and got[("vid0", 2)] == got[("vid0", 15)] == [(PREDICTED_LABEL, PREDICTED)]


def test_a_cvat_track_drawn_once_lasts_to_the_end_of_the_task(predicted_ws, tmp_path):
    def drawn_on_frame_2(root: ET.Element) -> None:
        track = ET.SubElement(root, "track", id="5", label="left", source="manual")
        ET.SubElement(track, "box", frame="2", outside="0", occluded="0", keyframe="1", z_order="0", **corners(ADDED))

    report = import_answers(predicted_ws, cvat_answers(predicted_ws, tmp_path, "vid0", drawn_on_frame_2))
    assert [key for key, _ in report.ambiguous] == [("vid0", 7), ("vid0", 15)]
    assert all(why.startswith("track 5 inside there") for _, why in report.ambiguous)
    assert answers(predicted_ws.ledger)[("vid0", 2)] == sorted([("left", ADDED), (PREDICTED_LABEL, PREDICTED)])


def test_a_cvat_file_with_nothing_clear_is_one_error_line(predicted_ws, tmp_path):
    def interpolated_everywhere(root: ET.Element) -> None:
        for shape in shapes_of(root).values():
            shape.set("keyframe", "0")
        shapes_of(root)[0].set("keyframe", "1")  # CVAT keeps the track's first shape a keyframe

    path = cvat_answers(predicted_ws, tmp_path, "vid0", interpolated_everywhere)
    done = sparselabel("import", str(predicted_ws.root), str(path))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "nothing to import: 3 frames ambiguous: vid0:2 (track 0 inside" in line

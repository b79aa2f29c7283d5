"""Round trips: export with pre-annotations -> the annotator moves one box, deletes one, adds one in
the tool -> import -> the ledger holds exactly those boxes; importing again changes nothing.

In every format the same edits are made: vid0 frame 2's predicted box is moved (corrected),
vid0 frame 7's is deleted (no actor there), vid1 frame 1 gets a second, drawn box; the other six
selected frames keep the predicted box (confirmed = corrected).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from ix_tools import (
    ADDED,
    MOVED,
    SELECTED,
    answers,
    corners,
    cvat_reexport,
    expected_after_edits,
    load_json,
    ls_percent,
    ls_submit,
    snapshot,
    write_xml,
)

from sparselabel.interchange import export_tasks, import_answers
from sparselabel.interchange.common import parse_frame_file_name


def answer_cvat_images(out: Path, tmp: Path) -> list[Path]:
    root = cvat_reexport(out / "annotations.xml")
    for image in root.findall("image"):
        key, box = parse_frame_file_name(image.get("name")), image.find("box")
        if key == ("vid0", 2):
            box.attrib.update(corners(MOVED))
        elif key == ("vid0", 7):
            image.remove(box)
        elif key == ("vid1", 1):
            ET.SubElement(image, "box", label="left", source="manual", occluded="0", z_order="0", **corners(ADDED))
    return [write_xml(root, tmp / "cvat-images-export.xml")]


def _shape(track: ET.Element, frame: int, box, keyframe: int = 1, outside: int = 0) -> None:
    ET.SubElement(track, "box", frame=str(frame), outside=str(outside), occluded="0", keyframe=str(keyframe),
                  z_order="0", **corners(box))


def answer_cvat_video(out: Path, tmp: Path) -> list[Path]:
    files = []
    for vid in SELECTED:
        root = cvat_reexport(out / "cvat" / vid / "annotations.xml")
        (track,) = root.findall("track")
        shapes = {int(b.get("frame")): b for b in track.findall("box")}
        if vid == "vid0":
            shapes[2].attrib.update(corners(MOVED))
            shapes[7].set("outside", "1")  # a keyframe saying the actor is gone at frame 7
        elif vid == "vid1":
            drawn = ET.SubElement(root, "track", id="7", label="left", source="manual")
            _shape(drawn, 1, ADDED)
            _shape(drawn, 2, ADDED, outside=1)
        else:  # interpolated onto frame 9 (not an answer), keyframed on frame 10 (not selected)
            drawn = ET.SubElement(root, "track", id="3", label="left", source="manual")
            _shape(drawn, 9, ADDED, keyframe=0)
            _shape(drawn, 10, ADDED)
            _shape(drawn, 11, ADDED, outside=1)
        files.append(write_xml(root, tmp / f"cvat-video-{vid}.xml"))
    return files


def answer_labelstudio_images(out: Path, tmp: Path) -> list[Path]:
    tasks = load_json(out / "labelstudio" / "image-tasks.json")
    results = []
    for task in tasks:
        key = (task["data"]["video_id"], task["data"]["frame"])
        result = copy.deepcopy(task["predictions"][0]["result"])  # accepting the prediction copies it
        if key == ("vid0", 2):
            result[0]["value"].update(ls_percent(MOVED))
        elif key == ("vid0", 7):
            result = []
        elif key == ("vid1", 1):
            result.append({"id": "Xy12", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                           "original_width": 64, "original_height": 48, "origin": "manual",
                           "value": {**ls_percent(ADDED), "rotation": 0, "rectanglelabels": ["left"]}})
        results.append(result)
    path = tmp / "ls-image-export.json"
    path.write_text(json.dumps(ls_submit(tasks, results)))
    return [path]


def answer_labelstudio_video(out: Path, tmp: Path) -> list[Path]:
    tasks = load_json(out / "labelstudio" / "video-tasks.json")
    results = []
    for task in tasks:
        vid = task["data"]["video_id"]
        result = copy.deepcopy(task["predictions"][0]["result"])
        sequence = result[0]["value"]["sequence"]
        if vid == "vid0":
            sequence[0].update(ls_percent(MOVED))
            sequence[0]["enabled"] = False  # the region stops after frame 3 (1-based) ...
            del sequence[1]  # ... so nothing is on frame 8 (1-based): no actor on frame 7
        elif vid == "vid1":
            result.append({"id": "Ab34", "from_name": "box", "to_name": "video", "type": "videorectangle",
                           "value": {"framesCount": 20, "duration": 0.8, "labels": ["left"], "sequence": [
                               {"frame": 2, "enabled": False, "rotation": 0, "time": 0.04, **ls_percent(ADDED)}]}})
        else:  # a keyframe on frame 11 (1-based), which the task did not ask about
            sequence.append({**sequence[-1], "frame": 11, "time": 0.4})
        results.append(result)
    path = tmp / "ls-video-export.json"
    path.write_text(json.dumps(ls_submit(tasks, results)))
    return [path]


def answer_jsonl(out: Path, tmp: Path) -> list[Path]:
    lines = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    for line in lines:
        line["answered"] = True
        key = (line["video"], line["frame"])
        if key == ("vid0", 2):
            line["actors"][0]["box"] = list(MOVED)
        elif key == ("vid0", 7):
            line["actors"] = []
        elif key == ("vid1", 1):
            line["actors"].append({"actor": 1, "label": "left", "box": list(ADDED)})
    path = tmp / "answers.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return [path]


CASES = {
    "cvat": ("cvat", answer_cvat_video, [("vid2", 10)]),
    "cvat-images": ("cvat-images", answer_cvat_images, []),
    "labelstudio-image": ("labelstudio", answer_labelstudio_images, []),
    "labelstudio-video": ("labelstudio", answer_labelstudio_video, [("vid2", 10)]),
    "json": ("json", answer_jsonl, []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_holds_exactly_the_edited_boxes_and_reimport_is_a_no_op(predicted_ws, tmp_path, case):
    fmt, annotate, ignored = CASES[case]
    ws = predicted_ws
    out = tmp_path / "out"
    export_tasks(ws, fmt, out, with_predictions=True)
    files = annotate(out, tmp_path)
    reports = [import_answers(ws, f, annotator="alice") for f in files]

    assert answers(ws.ledger) == expected_after_edits()
    assert sorted(k for r in reports for k in r.new) == sorted(expected_after_edits())
    assert sorted(k for r in reports for k in r.ignored_unselected) == ignored
    assert sum(r.corrected for r in reports) == 8 and sum(r.drawn for r in reports) == 1
    rows = ws.ledger.db.execute("SELECT source, annotator, source_file, cycle, clicks, corrected, version "
                                "FROM annotations").fetchall()
    assert {r[:2] for r in rows} == {("import", "alice")} and {r[3] for r in rows} == {0}
    assert {Path(r[2]).name for r in rows} == {f.name for f in files}
    assert sum(r[4] for r in rows) == 8 * 1 + 1 * 2  # corrected boxes 1 click, the drawn one 2
    assert sum(r[5] for r in rows) == 8 and {r[6] for r in rows} == {1}

    before = snapshot(ws.ledger)
    again = [import_answers(ws, f, annotator="alice") for f in files]
    assert snapshot(ws.ledger) == before
    assert sum(len(r.unchanged) for r in again) == 9 and not any(r.new or r.versions for r in again)
    assert "0 new, 9 unchanged" in again[0].summary() or len(files) > 1


@pytest.mark.parametrize("case", ["cvat", "labelstudio-video"])
def test_video_formats_keep_actor_ids_of_tracks(predicted_ws, tmp_path, case):
    fmt, annotate, _ = CASES[case]
    export_tasks(predicted_ws, fmt, tmp_path / "out", with_predictions=True)
    for f in annotate(tmp_path / "out", tmp_path):
        import_answers(predicted_ws, f)
    got = {(a.video_id, a.frame): sorted(x.actor for x in a.actors) for a in predicted_ws.ledger.annotations()}
    assert got[("vid1", 1)] == ([0, 7] if fmt == "cvat" else [0, 1])  # track id / region order
    assert {got[("vid1", f)][0] for f in (1, 13, 14)} == {0}  # the predicted track is one actor throughout


def test_without_pre_annotations_every_box_is_drawn_and_empty_frames_mean_no_actor(ws, tmp_path):
    out = tmp_path / "out"
    export_tasks(ws, "cvat-images", out)
    root = cvat_reexport(out / "annotations.xml")
    for image in root.findall("image"):
        if parse_frame_file_name(image.get("name")) == ("vid2", 4):
            ET.SubElement(image, "box", label="left", occluded="0", **corners(ADDED))
    report = import_answers(ws, write_xml(root, tmp_path / "export.xml"))
    got = answers(ws.ledger)
    assert got.pop(("vid2", 4)) == [("left", ADDED)]
    assert len(got) == 8 and all(v == [] for v in got.values())  # shown, and nobody there
    assert (report.drawn, report.corrected, report.clicks) == (1, 0, 2)


def test_a_conflicting_second_answer_is_kept_as_a_new_version_and_reported(predicted_ws, tmp_path):
    export_tasks(predicted_ws, "json", tmp_path / "out", with_predictions=True)
    (first,) = answer_jsonl(tmp_path / "out", tmp_path)
    import_answers(predicted_ws, first, annotator="alice")
    lines = [json.loads(x) for x in first.read_text().splitlines()]
    lines[0]["actors"][0]["box"] = [1.0, 1.0, 20.0, 20.0]  # vid0 frame 2, answered differently
    second = tmp_path / "second.jsonl"
    second.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = import_answers(predicted_ws, second, annotator="bob")
    assert report.versions == [("vid0", 2)] and len(report.unchanged) == 8 and not report.new
    assert "1 new versions (conflicts)" in report.summary() and "vid0:2" in report.summary()
    rows = predicted_ws.ledger.db.execute("SELECT version, annotator FROM annotations WHERE video_id = 'vid0' "
                                          "AND frame = 2 ORDER BY version").fetchall()
    assert rows == [(1, "alice"), (2, "bob")]  # nothing overwritten
    assert answers(predicted_ws.ledger)[("vid0", 2)] == [("right", (1.0, 1.0, 20.0, 20.0))]


def test_unselected_frames_are_ignored_and_reported_or_accepted_on_request(ws, tmp_path):
    line = {"format": "sparselabel-frame/1", "video": "vid0", "frame": 10, "answered": True,
            "actors": [{"actor": 0, "label": "left", "box": list(ADDED)}]}
    selected = {**line, "frame": 2, "actors": []}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(selected) + "\n")
    report = import_answers(ws, path)
    assert report.ignored_unselected == [("vid0", 10)] and report.new == [("vid0", 2)]
    assert "ignored 1 frames that were not selected" in report.summary()
    assert ("vid0", 10) not in answers(ws.ledger)
    report = import_answers(ws, path, allow_unselected=True)
    assert report.new == [("vid0", 10)] and report.unchanged == [("vid0", 2)]
    assert answers(ws.ledger)[("vid0", 10)] == [("left", ADDED)]


def test_training_picks_up_the_imported_answers(predicted_ws, tmp_path):
    from sparselabel.config import load_config
    from sparselabel.train.trainer import train_workspace, training_labels

    ws = predicted_ws
    export_tasks(ws, "json", tmp_path / "out", with_predictions=True)
    import_answers(ws, answer_jsonl(tmp_path / "out", tmp_path)[0])
    pool = {vid: ws.dataset.videos[vid] for vid in ws.ledger.videos("pool")}
    labels = training_labels(pool, ws.ledger.annotations(), "mgw", 1.3)
    assert {lab.video.id: lab.annotated.tolist() for lab in labels} == SELECTED
    assert labels[0].target([2])[0, 10, 20] == 1 and labels[0].target([7]).sum() == 0  # moved box; nobody at 7
    tiny = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=2", "train.steps=1",
            "train.device=cpu", "train.bf16=false"]
    result = train_workspace(ws, config=load_config(ws.root / "config.yaml", tiny))
    assert result.steps == 1 and (result.run_dir / "model.pt").exists()

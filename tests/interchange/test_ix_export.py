"""Exported task files follow the tools' documented structure and name only files inside the export.

Structure checked against the published documentation:
- CVAT XML annotation format 1.1 (docs.cvat.ai, "XML annotation format"): <annotations>, <version>,
  <meta><task>..<labels><label><name>; for video <track id label source> with
  <box frame xtl ytl xbr ybr outside occluded keyframe z_order>; for images
  <image id name width height> with <box label xtl ytl xbr ybr occluded>, ids in lexical name order.
- Label Studio (labelstud.io "Import pre-annotated data", "Label Studio Task Format",
  VideoRectangle / Video tags): data + predictions[{model_version, score, result[{id, from_name,
  to_name, type, original_width, original_height, value{x, y, width, height, rotation,
  rectanglelabels}}]}]; video results `videorectangle` with value{framesCount, duration, labels,
  sequence[{frame (1-based), enabled, x, y, width, height, rotation, time}]}.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ix_tools import OVERRIDES, PREDICTED, PREDICTED_LABEL, SELECTED, load_json, make_dataset

from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.interchange import export_tasks
from sparselabel.interchange.common import frame_file_name, inside, parse_frame_file_name
from sparselabel.labels.ledger import FrameAnnotation
from sparselabel.loop.workspace import Workspace

ALL_SELECTED = sorted((vid, f) for vid, frames in SELECTED.items() for f in frames)
TRACK_BOX_ATTRS = {"frame", "xtl", "ytl", "xbr", "ybr", "outside", "occluded", "keyframe", "z_order"}


def test_cvat_video_tracks_have_keyframes_on_the_selected_frames_only(predicted_ws, tmp_path):
    out = tmp_path / "out"
    files = export_tasks(predicted_ws, "cvat", out, with_predictions=True)
    assert sorted(f.parent.name for f in files) == ["vid0", "vid1", "vid2"]
    for file in files:
        vid = file.parent.name
        root = ET.fromstring(file.read_bytes())
        assert root.tag == "annotations" and root.findtext("version") == "1.1"
        task = root.find("meta/task")
        assert task.findtext("name") == vid and task.findtext("mode") == "interpolation"
        assert task.findtext("size") == "20"
        assert [x.text for x in task.findall("labels/label/name")] == ["left", "right"]
        assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == ("64", "48")
        # every frame of the video is there to create the CVAT task from, named in frame order
        frames = sorted((file.parent / "images").iterdir())
        assert [p.name for p in frames] == [f"frame_{i:06d}.jpg" for i in range(20)]
        (track,) = root.findall("track")
        assert set(track.attrib) == {"id", "label", "source"} and track.get("label") == PREDICTED_LABEL
        boxes = track.findall("box")
        assert all(set(b.attrib) == TRACK_BOX_ATTRS for b in boxes)
        keyframes = [int(b.get("frame")) for b in boxes if b.get("keyframe") == "1" and b.get("outside") == "0"]
        assert keyframes == SELECTED[vid]
        assert [int(b.get("frame")) for b in boxes] == list(range(20))  # the rest interpolated
        key = next(b for b in boxes if b.get("keyframe") == "1")
        assert tuple(float(key.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")) == PREDICTED


def test_cvat_images_lists_every_selected_frame_by_its_exported_file(predicted_ws, tmp_path):
    out = tmp_path / "out"
    (file,) = export_tasks(predicted_ws, "cvat-images", out, with_predictions=True)
    root = ET.fromstring(file.read_bytes())
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    assert root.findtext("meta/task/mode") == "annotation"
    images = root.findall("image")
    assert {"id", "name", "width", "height"} <= set(images[0].attrib)
    names = [i.get("name") for i in images]
    assert [int(i.get("id")) for i in images] == list(range(9)) and names == sorted(names)
    assert sorted(parse_frame_file_name(n) for n in names) == ALL_SELECTED
    for image in images:
        assert (out / "images" / image.get("name")).is_file()
        (box,) = image.findall("box")
        assert {"label", "xtl", "ytl", "xbr", "ybr", "occluded"} <= set(box.attrib)
        assert box.get("label") == PREDICTED_LABEL
        assert tuple(float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")) == PREDICTED


def _config_names(path: Path) -> dict[str, dict[str, str]]:
    view = ET.fromstring(path.read_text())
    assert view.tag == "View"
    return {child.tag: dict(child.attrib) for child in view}


def test_labelstudio_image_tasks_carry_percent_rectangles_matching_the_config(predicted_ws, tmp_path):
    out = tmp_path / "out"
    export_tasks(predicted_ws, "labelstudio", out, with_predictions=True)
    config = _config_names(out / "labelstudio" / "image-config.xml")
    image_tag, rect_tag = config["Image"], config["RectangleLabels"]
    assert image_tag["value"] == "$image" and rect_tag["toName"] == image_tag["name"]
    labels = [x.get("value") for x in ET.fromstring((out / "labelstudio" / "image-config.xml").read_text())
              .iter("Label")]
    assert labels == ["left", "right"]
    tasks = load_json(out / "labelstudio" / "image-tasks.json")
    assert sorted((t["data"]["video_id"], t["data"]["frame"]) for t in tasks) == ALL_SELECTED
    for task in tasks:
        assert (out / unquote(task["data"]["image"])).is_file()
        (prediction,) = task["predictions"]
        assert {"model_version", "score", "result"} <= set(prediction) and prediction["model_version"] == "cycle-000"
        (result,) = prediction["result"]
        assert {"id", "from_name", "to_name", "type", "original_width", "original_height", "value"} <= set(result)
        assert (result["from_name"], result["to_name"], result["type"]) == (rect_tag["name"], image_tag["name"],
                                                                           "rectanglelabels")
        assert (result["original_width"], result["original_height"]) == (64, 48)
        value = result["value"]
        assert set(value) == {"x", "y", "width", "height", "rotation", "rectanglelabels"}
        assert value["rectanglelabels"] == [PREDICTED_LABEL] and value["rotation"] == 0
        assert (value["x"], value["width"]) == (100 * 12 / 64, 100 * 24 / 64)  # percent of the image
        assert value["y"] == pytest.approx(100 * 8 / 48) and value["height"] == pytest.approx(100 * 24 / 48)


def test_labelstudio_video_task_marks_the_selected_frames_as_keyframes(predicted_ws, tmp_path):
    out = tmp_path / "out"
    export_tasks(predicted_ws, "labelstudio", out, with_predictions=True)
    config = _config_names(out / "labelstudio" / "video-config.xml")
    assert config["Video"]["value"] == "$video" and config["Video"]["frameRate"] == "$fps"
    assert config["VideoRectangle"]["toName"] == config["Video"]["name"] == config["Labels"]["toName"]
    tasks = load_json(out / "labelstudio" / "video-tasks.json")
    assert sorted(t["data"]["video_id"] for t in tasks) == ["vid0", "vid1", "vid2"]
    for task in tasks:
        data = task["data"]
        assert (out / unquote(data["video"])).is_file() and data["fps"] == 25.0
        assert data["frames"] == SELECTED[data["video_id"]]
        (region,) = task["predictions"][0]["result"]
        assert region["type"] == "videorectangle"
        assert (region["from_name"], region["to_name"]) == (config["VideoRectangle"]["name"], config["Video"]["name"])
        value = region["value"]
        assert value["framesCount"] == 20 and value["duration"] == pytest.approx(20 / 25.0)
        assert value["labels"] == [PREDICTED_LABEL]
        sequence = value["sequence"]
        assert all(set(k) == {"frame", "enabled", "x", "y", "width", "height", "rotation", "time"} for k in sequence)
        assert [k["frame"] for k in sequence] == [f + 1 for f in data["frames"]]  # Label Studio counts from 1
        assert [k["enabled"] for k in sequence] == [True, True, False]  # the region ends at the last one
        assert [k["time"] for k in sequence] == pytest.approx([f / 25.0 for f in data["frames"]])


def test_jsonl_lines_are_unanswered_tasks_with_the_documented_fields(predicted_ws, tmp_path):
    out = tmp_path / "out"
    (file,) = export_tasks(predicted_ws, "json", out, with_predictions=True)
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    assert sorted((x["video"], x["frame"]) for x in lines) == ALL_SELECTED
    for line in lines:
        assert set(line) == {"format", "video", "frame", "cycle", "image", "width", "height", "answered", "actors"}
        assert line["format"] == "sparselabel-frame/1" and line["answered"] is False and line["cycle"] == 0
        assert (out / line["image"]).is_file()
        (actor,) = line["actors"]
        assert actor["label"] == PREDICTED_LABEL and tuple(actor["box"]) == PREDICTED


@pytest.mark.parametrize("fmt", ["cvat", "cvat-images", "labelstudio", "json"])
def test_without_predictions_tasks_carry_no_boxes(ws, tmp_path, fmt):
    out = tmp_path / "out"
    files = export_tasks(ws, fmt, out)
    text = "".join(f.read_text() for f in files)
    assert "<track" not in text and "<box" not in text and '"predictions"' not in text
    assert '"box": [' not in text
    assert len(list((out / "images").iterdir())) == 9


def test_default_cycle_is_the_latest_with_unanswered_frames(ws, tmp_path):
    picks = [FrameAnnotation(vid, f, []) for vid, frames in SELECTED.items() for f in frames]
    ws.ledger.record_annotations(picks[:8], source="import", cycle=0)
    (file,) = export_tasks(ws, "json", tmp_path / "a")
    assert [json.loads(x)["frame"] for x in file.read_text().splitlines()] == [6]  # only what is left
    ws.ledger.record_annotations(picks[8:], source="import", cycle=0)
    with pytest.raises(SparseLabelError, match="every selected frame is answered"):
        export_tasks(ws, "json", tmp_path / "b")
    (file,) = export_tasks(ws, "json", tmp_path / "c", cycle=0)  # again, on purpose: all of them
    assert len(file.read_text().splitlines()) == 9
    with pytest.raises(SparseLabelError, match="cycle 3 selected no frames"):
        export_tasks(ws, "json", tmp_path / "d", cycle=3)


def test_pre_annotations_need_a_prediction_run(ws, tmp_path):
    with pytest.raises(SparseLabelError, match="sparselabel predict"):
        export_tasks(ws, "json", tmp_path / "out", with_predictions=True)


def test_video_ids_never_become_paths(tmp_path):
    """A video id like '../../evil/x.y' is escaped into one file-name component inside the export."""
    dataset = make_dataset(tmp_path / "tiny")
    doc = json.loads((dataset / "dataset.json").read_text())
    evil = "../../evil/x.y"
    for item in doc["videos"] + doc["tubes"]:
        key = "id" if "id" in item else "video"
        if item[key] == "vid0":
            item[key] = evil
    (dataset / "dataset.json").write_text(json.dumps(doc))
    ws = Workspace.create(tmp_path / "ws", load_config(None, [f"dataset.path={dataset}", *OVERRIDES]))
    out = tmp_path / "deep" / "out"
    for fmt in ("cvat", "cvat-images", "labelstudio", "json"):
        export_tasks(ws, fmt, out / fmt)
    for path in out.rglob("*"):
        assert path.resolve().is_relative_to(out.resolve())
    assert not list(tmp_path.rglob("evil*"))
    names = [p.name for p in (out / "json" / "images").iterdir() if "evil" in p.name]
    assert names and all("/" not in n and ".." not in n for n in names)
    assert parse_frame_file_name(names[0])[0] == evil
    assert frame_file_name(evil, 3) == "%2E%2E%2F%2E%2E%2Fevil%2Fx%2Ey__000003.jpg"
    ws.close()


def test_writing_through_a_symlink_out_of_the_export_never_happens(ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SparseLabelError, match="not empty"):
        export_tasks(ws, "json", out)
    export_tasks(ws, "json", out, overwrite=True)  # replaces the folder as a whole: no write through the link
    assert not list(elsewhere.iterdir()) and not (out / "images").is_symlink() and list((out / "images").iterdir())
    with pytest.raises(SparseLabelError, match="outside"):
        inside(out, "../../etc/passwd")


@settings(max_examples=200, deadline=None)
@given(video_id=st.text(max_size=20), frame=st.integers(0, 10**6))
def test_any_video_id_becomes_one_reversible_file_name(video_id, frame):
    name = frame_file_name(video_id, frame)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name.count(".") == 1 and name.endswith(".jpg")  # no "..", no hidden files
    assert parse_frame_file_name(name) == (video_id, frame)
    assert parse_frame_file_name(f"some/folder/{name}") == (video_id, frame)
    with pytest.raises(SparseLabelError, match="too long"):
        frame_file_name("x" * 250, frame)


def test_export_into_a_folder_with_files_is_refused_and_overwrite_replaces_it_whole(ws, tmp_path):
    out = tmp_path / "out"
    export_tasks(ws, "cvat-images", out)
    first = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / "images" / "stale.jpg").write_bytes(b"from an earlier export")
    (out / "annotations.xml").write_text("the user's own edits")
    with pytest.raises(SparseLabelError, match="not empty"):
        export_tasks(ws, "cvat-images", out)
    assert (out / "annotations.xml").read_text() == "the user's own edits"  # untouched
    export_tasks(ws, "cvat-images", out, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == first  # no stale image mixed in
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_a_failed_export_leaves_nothing_behind(ws, tmp_path, monkeypatch):
    import sparselabel.interchange.export as export_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "_write_manifest", broken)
    with pytest.raises(OSError):
        export_tasks(ws, "json", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == []

"""Imports that must change nothing: hostile XML, names escaping the export, oversized, truncated,
mis-labelled or out-of-range files. Each is one AnnotationError naming the file."""

from __future__ import annotations

import json
import zipfile

import pytest
from ix_tools import ADDED, snapshot

from sparselabel.errors import AnnotationError
from sparselabel.interchange import export_tasks, import_answers

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE annotations [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotations><version>1.1</version><image id="0" name="vid0__000002.jpg" width="64" height="48">
<box label="&lol9;" xtl="1" ytl="1" xbr="5" ybr="5" occluded="0"/></image></annotations>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotations [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotations><version>1.1</version><image id="0" name="vid0__000002.jpg" width="64" height="48">
<box label="&secret;" xtl="1" ytl="1" xbr="5" ybr="5" occluded="0"/></image></annotations>
"""


def cvat_images(*images: str) -> str:
    return "<annotations><version>1.1</version><meta><task><name>t</name></task></meta>" + "".join(images) + \
        "</annotations>"


def image(name: str, *boxes: str) -> str:
    return f'<image id="0" name="{name}" width="64" height="48">' + "".join(boxes) + "</image>"


def box(label: str = "left", xtl=1, ytl=1, xbr=20, ybr=20) -> str:
    return f'<box label="{label}" xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" ybr="{ybr}" occluded="0"/>'


def refused(ws, path, *fragments: str) -> AnnotationError:
    before = snapshot(ws.ledger)
    with pytest.raises(AnnotationError) as info:
        import_answers(ws, path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert snapshot(ws.ledger) == before
    return info.value


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_xml_with_entities_is_refused(ws, tmp_path, document):
    path = tmp_path / "bomb.xml"
    path.write_text(document)
    refused(ws, path, "refusing XML that declares a DTD or entities")


@pytest.mark.parametrize("name", ["../../etc/passwd", "images/../../etc/passwd", "..%2F..%2Fetc%2Fpasswd"])
def test_cvat_image_names_may_not_leave_the_export_folder(ws, tmp_path, name):
    path = tmp_path / "a.xml"
    path.write_text(cvat_images(image(name, box())))
    refused(ws, path, "points outside the export folder")


def test_labelstudio_and_jsonl_names_may_not_leave_the_export_folder(ws, tmp_path):
    task = {"id": 1, "data": {"image": "../../etc/passwd", "video_id": "vid0", "frame": 2},
            "annotations": [{"result": []}]}
    ls = tmp_path / "ls.json"
    ls.write_text(json.dumps([task]))
    refused(ws, ls, "task 1", "points outside")
    line = {"format": "sparselabel-frame/1", "video": "vid0", "frame": 2, "image": "../../etc/passwd",
            "answered": True, "actors": []}
    jl = tmp_path / "a.jsonl"
    jl.write_text(json.dumps(line) + "\n")
    refused(ws, jl, "line 1", "points outside")


def test_a_file_over_the_size_limit_is_refused_before_reading(ws, tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b" " * 3000)
    ws.config.labels.import_max_mb = 0.002  # 2097 bytes
    opened = []
    monkeypatch.setattr(type(path), "open", lambda *a, **k: opened.append(a) or pytest.fail("file was read"))
    refused(ws, path, "over the import limit", "labels.import_max_mb")
    assert not opened


def test_cvat_zip_export_gives_its_xml_and_nothing_else(ws, tmp_path):
    path = tmp_path / "task.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("annotations.xml", cvat_images(image("vid0__000002.jpg", box())))
        archive.writestr("images/vid0__000002.jpg", b"not read")
    report = import_answers(ws, path)
    assert report.new == [("vid0", 2)] and report.format == "cvat-images"
    empty = tmp_path / "other.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("data.pkl", b"\x80\x04N.")
    refused(ws, empty, "without annotations.xml")


def test_truncated_files_change_nothing_and_say_so(ws, tmp_path):
    good = cvat_images(image("vid0__000002.jpg", box()), image("vid0__000007.jpg"))
    xml = tmp_path / "cut.xml"
    xml.write_text(good[: len(good) // 2])
    refused(ws, xml, "not well-formed XML", "truncated")
    task = [{"id": 1, "data": {"video_id": "vid0", "frame": 2}, "annotations": [{"result": []}]}]
    js = tmp_path / "cut.json"
    js.write_text(json.dumps(task)[:-9])
    refused(ws, js, "not valid JSON")
    line = json.dumps({"format": "sparselabel-frame/1", "video": "vid0", "frame": 2, "answered": True,
                       "actors": []})
    jl = tmp_path / "cut.jsonl"
    jl.write_text(line + "\n" + line.replace('"frame": 2', '"frame": 7')[:30])
    refused(ws, jl, "line 2", "not valid JSON")


@pytest.mark.parametrize("bad, fragments", [
    (image("vid0__000007.jpg", box(label="jump")), ("unknown label 'jump'", "known: left, right")),
    (image("vidX__000002.jpg", box()), ("unknown video 'vidX'",)),
    (image("vid0__000020.jpg", box()), ("frame outside 0..19",)),
    (image("vid0__000007.jpg", box(xbr=70)), ("outside the 64x48 frame",)),
    (image("vid0__000007.jpg", box(xtl=30, xbr=10)), ("x2 <= x1",)),
    (image("vid0__000007.jpg", box(xtl="nan")), ("not a finite number",)),
    (image("vid0__000007.jpg", '<polygon label="left" points="1,1;5,5;1,5" occluded="0"/>'), ("<polygon>",)),
    (image("frame_000007.jpg", box()), ("not a frame exported by sparselabel",)),
    (image("vid0__000002.jpg"), ("answered twice",)),
])
def test_one_bad_answer_refuses_the_whole_file(ws, tmp_path, bad, fragments):
    path = tmp_path / "answers.xml"
    path.write_text(cvat_images(image("vid0__000002.jpg", box()), bad))  # the good one is not written either
    refused(ws, path, *fragments)


def test_bad_answers_for_unselected_frames_are_refused_too(ws, tmp_path):
    path = tmp_path / "answers.xml"
    path.write_text(cvat_images(image("vid0__000010.jpg", box(label="jump"))))
    refused(ws, path, "unknown label")


def test_schema_problems_name_the_place_in_the_file(ws, tmp_path):
    cases = {
        "a.json": (json.dumps({"data": {}}), "a Label Studio export is a JSON list of tasks"),
        "a2.json": ("[1, 2]", "task 0: not a Label Studio task"),
        "b.json": (json.dumps([{"id": 4, "data": {"image": "x.jpg"}}]), "task 4: no data.video_id"),
        "c.json": (json.dumps([{"id": 5, "data": {"video_id": "vid0", "frame": 2}, "annotations": [{"result": [
            {"id": "r", "type": "polygonlabels", "value": {}}]}]}]), "result type 'polygonlabels'"),
        "d.json": (json.dumps([{"id": 6, "data": {"video_id": "vid0", "frame": 2}, "annotations": [{"result": [
            {"id": "r", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5,
                                                              "rectanglelabels": []}}]}]}]), "exactly one label"),
        "e.jsonl": ('{"format": "sparselabel-frame/1", "video": "vid0", "frame": 2, "actors": []}\n',
                    "line 1: 'answered' must be true or false"),
        "f.jsonl": ('{"format": "sparselabel-frame/1", "video": "vid0", "frame": 2.5, "answered": true, '
                    '"actors": []}\n', "line 1 frame: 2.5 is not a whole number"),
        "g.xml": ("<annotations><version>2.0</version></annotations>", "version '2.0'"),
        "h.xml": ("<dataset/>", "root element is <dataset>"),
        "i.txt": ("\x80\x04N.", "cannot tell the format"),
    }
    for name, (text, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        refused(ws, path, fragment)


def test_our_own_cvat_task_file_is_not_taken_for_answers(predicted_ws, tmp_path):
    (file,) = export_tasks(predicted_ws, "cvat-images", tmp_path / "out", with_predictions=True)
    refused(predicted_ws, file, "task file sparselabel exported, not answers")


def test_cvat_video_task_must_be_one_known_video_and_frames_it_holds(ws, tmp_path):
    track = f'<track id="0" label="left"><box frame="2" outside="0" occluded="0" keyframe="1" ' \
            f'xtl="{ADDED[0]}" ytl="{ADDED[1]}" xbr="{ADDED[2]}" ybr="{ADDED[3]}"/></track>'
    size = "<original_size><width>64</width><height>48</height></original_size>"
    cases = {  # vid0..vid3 are all 20 frames of 64 x 48: a task named otherwise could be any of them
        f"<name>holiday</name><size>20</size>{size}": "no known video named 'holiday', and 4 videos fit it "
                                                      "('vid0', 'vid1', 'vid2', 'vid3')",
        "<name>holiday</name><size>20</size><original_size><width>32</width><height>48</height></original_size>":
            "no video has its frames and size",
        "<name>vid0</name><size>30</size>": "the task holds the CVAT task's frames 0..29, video 'vid0' has 20",
        "<name>vid0</name><size>8</size><start_frame>5</start_frame><stop_frame>12</stop_frame>":
            "shapes on frames [2] lie outside the task's frames 5..12",
        "<name>vid0</name><size>5</size><frame_filter>every other</frame_filter>": "frame_filter 'every other'",
    }
    for k, (meta, fragment) in enumerate(cases.items()):
        path = tmp_path / f"{k}.xml"
        path.write_text(f"<annotations><version>1.1</version><meta><task>{meta}</task></meta>{track}</annotations>")
        refused(ws, path, fragment)
    path = tmp_path / "job.xml"
    path.write_text(f"<annotations><version>1.1</version><meta><job><id>3</id></job></meta>{track}</annotations>")
    refused(ws, path, "export the whole task")


def test_two_keyframes_on_one_frame_with_different_boxes_are_refused(predicted_ws, tmp_path):
    from ix_tools import load_json, ls_percent, ls_submit

    out = tmp_path / "out"
    export_tasks(predicted_ws, "labelstudio", out, with_predictions=True)
    tasks = load_json(out / "labelstudio" / "video-tasks.json")
    results = [json.loads(json.dumps(t["predictions"][0]["result"])) for t in tasks]
    sequence = results[0][0]["value"]["sequence"]
    sequence.append({**sequence[0], **ls_percent(ADDED)})  # the same frame again, another box: which one?
    path = tmp_path / "ls-video-export.json"
    path.write_text(json.dumps(ls_submit(tasks, results)))
    refused(predicted_ws, path, f"two keyframes on frame {sequence[0]['frame']}")


def test_a_negative_cvat_track_id_is_refused(ws, tmp_path):
    track = f'<track id="-3" label="left"><box frame="2" outside="0" occluded="0" keyframe="1" ' \
            f'xtl="{ADDED[0]}" ytl="{ADDED[1]}" xbr="{ADDED[2]}" ybr="{ADDED[3]}"/></track>'
    path = tmp_path / "negative.xml"
    path.write_text("<annotations><version>1.1</version><meta><task><name>vid0</name><size>20</size></task></meta>"
                    f"{track}</annotations>")
    refused(ws, path, "id -3 is negative")

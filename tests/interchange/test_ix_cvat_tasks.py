"""CVAT for video tasks that are not "the whole video, named after it": a task over part of the
video (start frame, stop frame, frame step), named otherwise, found by its source file or by
being the one video of its frame count and size.

CVAT writes frame numbers of the whole video in its XML (start_frame + index * step), and
``stop_frame`` is the last frame, inclusive (cvat/apps/dataset_manager/bindings.py:
abs_frame_id, meta_for_task).
"""

from __future__ import annotations

import numpy as np
from ix_tools import MOVED, OVERRIDES, PREDICTED, answers, corners

from sparselabel.config import load_config
from sparselabel.data.datasets.native import write_native
from sparselabel.data.tubes import Tube
from sparselabel.interchange import import_answers
from sparselabel.loop.workspace import Workspace


def cvat_video(meta: str, *tracks: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task>'
            f'{meta}<labels><label><name>left</name></label><label><name>right</name></label></labels>'
            f'</task></meta>{"".join(tracks)}</annotations>')


def track(track_id: int, label: str, *shapes: tuple[int, tuple, int, int]) -> str:
    boxes = "".join(f'<box frame="{f}" outside="{outside}" occluded="0" keyframe="{key}" z_order="0" '
                    + " ".join(f'{k}="{v}"' for k, v in corners(box).items()) + "/>"
                    for f, box, key, outside in shapes)
    return f'<track id="{track_id}" label="{label}" source="manual">{boxes}</track>'


def test_a_task_over_every_other_frame_of_part_of_the_video_found_by_its_source(ws, tmp_path):
    meta = ("<name>my clip</name><size>6</size><mode>interpolation</mode><start_frame>5</start_frame>"
            "<stop_frame>15</stop_frame><frame_filter>step=2</frame_filter>"
            "<original_size><width>64</width><height>48</height></original_size><source>vid0.mp4</source>")
    shapes = [(7, MOVED, 1, 0), (9, MOVED, 0, 0), (11, PREDICTED, 0, 0), (13, PREDICTED, 0, 0), (15, PREDICTED, 1, 0)]
    path = tmp_path / "annotations.xml"
    path.write_text(cvat_video(meta, track(0, "right", *shapes)))
    report = import_answers(ws, path)  # vid0 asks 2, 7, 15: frame 2 is not in the task
    assert report.new == [("vid0", 7), ("vid0", 15)]
    assert report.ambiguous == [(("vid0", 2), "not among the CVAT task's frames 5..15 step 2")]
    got = answers(ws.ledger)
    assert got[("vid0", 7)] == [("right", MOVED)] and got[("vid0", 15)] == [("right", PREDICTED)]
    assert ("vid0", 2) not in got  # not "nobody there": nobody looked


def test_a_task_named_otherwise_is_the_one_video_of_its_frame_count_and_size(tmp_path):
    rng = np.random.default_rng(0)
    videos = [{"id": vid, "frames": rng.integers(0, 255, (n, 48, 64, 3), dtype=np.uint8), "fps": 25.0,
               "label": 0, "split": "train"} for vid, n in (("short", 20), ("long", 24))]
    tubes = {v["id"]: [Tube(0, np.arange(2, 10), np.tile([1.0, 1.0, 20.0, 20.0], (8, 1)))] for v in videos}
    data = write_native(tmp_path / "data", "two", ["left", "right"], videos, tubes)
    ws = Workspace.create(tmp_path / "ws", load_config(None, [f"dataset.path={data}", *OVERRIDES]))
    asked = [f for _, _, vid, f, _ in ws.ledger.selections() if vid == "long"]
    meta = "<name>holiday</name><size>24</size><original_size><width>64</width><height>48</height></original_size>"
    path = tmp_path / "annotations.xml"
    path.write_text(cvat_video(meta, track(0, "left", (asked[0], MOVED, 1, 0), (asked[0] + 1, MOVED, 1, 1))))
    report = import_answers(ws, path)
    assert sorted(report.new) == [("long", f) for f in asked]
    assert answers(ws.ledger)[("long", asked[0])] == [("left", MOVED)]
    assert any("matched to 'long', the one known video with its frame count and size" in n for n in report.notes)
    ws.close()

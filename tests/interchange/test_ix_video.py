"""The videos Label Studio tasks play: H.264 with 4:2:0 chroma in MP4 (what browsers play), the
same frames at the same rate, odd sizes padded by one pixel on the right / bottom; percent
coordinates relative to the played (padded) size come back as pixels of the original frame.

Datasets keep 4:4:4 chroma (High 4:4:4 Predictive), which browsers do not decode, so the video
is always encoded anew, never copied.
"""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from ix_tools import OVERRIDES, answers, load_json, ls_submit

from sparselabel.config import load_config
from sparselabel.data.datasets.native import write_native
from sparselabel.data.tubes import Tube
from sparselabel.interchange import export_tasks, import_answers
from sparselabel.loop.workspace import Workspace

NUM_FRAMES = 25


def stamped_frames(height: int, width: int) -> np.ndarray:
    """Frame i: brightness 20 + 8 i and a white square whose position counts i (frame stamp)."""
    frames = np.zeros((NUM_FRAMES, height, width, 3), np.uint8)
    for i in range(NUM_FRAMES):
        frames[i] = 20 + 8 * i
        row, col = divmod(i, 5)
        frames[i, 2 + 8 * row: 8 + 8 * row, 2 + 8 * col: 8 + 8 * col] = 255
    return frames


@pytest.fixture(params=[(47, 63), (48, 64)], ids=["odd-63x47", "even-64x48"])
def stamped_ws(request, tmp_path):
    height, width = request.param
    frames = stamped_frames(height, width)
    tube = Tube(0, np.arange(2, 20), np.tile([1.0, 1.0, 20.0, 20.0], (18, 1)))
    data = write_native(tmp_path / "data", "stamped", ["left", "right"],
                        [{"id": "clip", "frames": frames, "fps": 25.0, "label": 0, "split": "train"}], {"clip": [tube]})
    ws = Workspace.create(tmp_path / "ws", load_config(None, [f"dataset.path={data}", *OVERRIDES]))
    yield ws, frames
    ws.close()


def decode(path) -> tuple[np.ndarray, dict]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "rate": stream.average_rate, "profile": stream.codec_context.profile}
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return frames, info


def test_the_task_video_is_4_2_0_h264_with_the_same_frames_rate_and_pixels(stamped_ws, tmp_path):
    ws, source = stamped_ws
    height, width = source.shape[1:3]
    out = tmp_path / "out"
    export_tasks(ws, "labelstudio", out)
    (task,) = load_json(out / "labelstudio" / "video-tasks.json")
    assert task["data"]["video"] == "videos/clip.mp4"
    played, info = decode(out / task["data"]["video"])
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["rate"] == 25
    assert played.shape == (NUM_FRAMES, height + height % 2, width + width % 2, 3)  # even sizes
    assert (task["data"]["video_width"], task["data"]["video_height"]) == (played.shape[2], played.shape[1])
    assert (task["data"]["width"], task["data"]["height"]) == (width, height)
    # Frame i is frame i: the brightness ramp and the stamp's place, within 4:2:0's loss.
    mine = played[:, :height, :width].astype(float)
    assert np.abs(mine.mean(axis=(1, 2, 3)) - source.mean(axis=(1, 2, 3))).max() < 2
    nearest = [int(np.argmin(np.abs(mine[i] - source.astype(float)).mean(axis=(1, 2, 3)))) for i in range(NUM_FRAMES)]
    assert nearest == list(range(NUM_FRAMES))
    if width % 2:  # the padding column repeats the edge
        assert np.abs(played[:, :, -1].astype(int) - played[:, :, -2].astype(int)).mean() < 3


def test_percent_boxes_on_a_padded_video_come_back_in_original_pixels(stamped_ws, tmp_path):
    ws, source = stamped_ws
    height, width = source.shape[1:3]
    out = tmp_path / "out"
    export_tasks(ws, "labelstudio", out)
    (task,) = load_json(out / "labelstudio" / "video-tasks.json")
    played_w, played_h = task["data"]["video_width"], task["data"]["video_height"]
    asked = task["data"]["frames"]
    # Two boxes drawn on the played video: one to the frame's right / bottom edge, one dragged
    # over it into the padding (Label Studio lets a box reach the edge of what it plays).
    boxes = {"a": (10.0, 6.0, float(width), float(height)), "b": (30.0, 20.0, float(played_w), float(played_h))}
    result = [{"id": name, "from_name": "box", "to_name": "video", "type": "videorectangle", "value": {
        "framesCount": NUM_FRAMES, "duration": NUM_FRAMES / 25.0, "labels": ["left"], "sequence": [
            {"frame": f + 1, "enabled": False, "rotation": 0, "time": f / 25.0,
             "x": 100 * x1 / played_w, "y": 100 * y1 / played_h,
             "width": 100 * (x2 - x1) / played_w, "height": 100 * (y2 - y1) / played_h} for f in asked]}}
              for name, (x1, y1, x2, y2) in boxes.items()]
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(ls_submit([task], [result])))
    import_answers(ws, path)
    expected = sorted([("left", (10.0, 6.0, width, height)), ("left", (30.0, 20.0, width, height))])
    got = answers(ws.ledger)
    assert {key: [(label, tuple(round(c, 3) for c in box)) for label, box in v] for key, v in got.items()} == \
        {("clip", f): expected for f in asked}

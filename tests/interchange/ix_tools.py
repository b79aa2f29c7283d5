"""Shared pieces of the interchange tests: a workspace waiting for answers, known predictions,
and small stand-ins for what CVAT and Label Studio do to a task file.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from sparselabel.config import load_config
from sparselabel.loop.workspace import Workspace
from sparselabel.scoring.predict import VideoPrediction

# labels.oracle=none: cycle 0's random frames are selected but nobody answers them.
# 15% of 20 frames -> 3 selected frames in each pool video (vid0, vid1, vid2).
OVERRIDES = ["labels.oracle=none", "labels.initial_percent=15"]
SELECTED = {"vid0": [2, 7, 15], "vid1": [1, 13, 14], "vid2": [4, 5, 6]}
# The fake model sees one actor at the same place in every frame: map rows 2..7, cols 3..8
# of a 12 x 16 map is this box in the 64 x 48 video (4x scale), class "right".
PREDICTED = (12.0, 8.0, 36.0, 32.0)
PREDICTED_LABEL = "right"
MOVED = (10.0, 6.0, 34.0, 30.0)  # IoU 0.72 with PREDICTED: a corrected box
ADDED = (40.0, 10.0, 60.0, 40.0)  # a box drawn from scratch


def make_dataset(root: Path) -> Path:
    """tests/conftest.py's tiny dataset (that module's name clashes with ours, so load it by path)."""
    spec = importlib.util.spec_from_file_location("ix_root_conftest", Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_tiny_dataset(root)


def create_workspace(root: Path, dataset: Path, *extra: str) -> Workspace:
    ws = Workspace.create(root, load_config(None, [f"dataset.path={dataset}", *OVERRIDES, *extra]))
    assert {v: [f for _, _, vid, f, _ in ws.ledger.selections() if vid == v] for v in SELECTED} == SELECTED
    return ws


def copy_workspace(template: Path, root: Path) -> Workspace:
    shutil.copytree(template, root)
    return Workspace.open(root)


def write_predictions(ws: Workspace, run: str = "cycle-000") -> Path:
    """Prediction maps as `sparselabel predict` writes them, with one known blob per frame."""
    folder = ws.root / "predictions" / run
    folder.mkdir(parents=True, exist_ok=True)
    for vid, video in ws.ledger.videos().items():
        fg = np.zeros((video.num_frames, 12, 16), dtype=np.float32)
        fg[:, 2:8, 3:9] = 0.9
        VideoPrediction(vid, fg, np.array([0.2, 0.8], dtype=np.float32), (video.height, video.width)).save(folder)
    return folder


def snapshot(ledger) -> list:
    rows = ledger.db.execute("SELECT video_id, frame, version, cycle, clicks, corrected FROM annotations "
                             "ORDER BY video_id, frame, version").fetchall()
    actors = ledger.db.execute("SELECT * FROM actors ORDER BY annotation_id, actor").fetchall()
    return rows + actors


def answers(ledger) -> dict[tuple[str, int], list[tuple[str, tuple]]]:
    """The current answer of every annotated frame as sorted (label name, rounded box) pairs."""
    names = ledger.classes
    return {(a.video_id, a.frame): sorted((names[x.label], tuple(round(c, 3) for c in x.box)) for x in a.actors)
            for a in ledger.annotations()}


def expected_after_edits() -> dict[tuple[str, int], list[tuple[str, tuple]]]:
    """What every round trip below leads to: vid0:2 moved, vid0:7 deleted, vid1:1 one box added."""
    out = {(vid, f): [(PREDICTED_LABEL, PREDICTED)] for vid, frames in SELECTED.items() for f in frames}
    out[("vid0", 2)] = [(PREDICTED_LABEL, MOVED)]
    out[("vid0", 7)] = []
    out[("vid1", 1)] = sorted([("left", ADDED), (PREDICTED_LABEL, PREDICTED)])
    return out


# --- what the tools do with a task file --------------------------------------------------


def cvat_reexport(xml_file: Path) -> ET.Element:
    """CVAT loads the uploaded XML and writes its own: parsed and re-serialised, comments gone."""
    return ET.fromstring(xml_file.read_bytes())


def write_xml(root: ET.Element, path: Path) -> Path:
    path.write_bytes(b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root))
    return path


def corners(box) -> dict[str, str]:
    return {k: f"{v:.2f}" for k, v in zip(("xtl", "ytl", "xbr", "ybr"), box, strict=True)}


def ls_percent(box, width: int = 64, height: int = 48) -> dict[str, float]:
    x1, y1, x2, y2 = box
    return {"x": 100 * x1 / width, "y": 100 * y1 / height,
            "width": 100 * (x2 - x1) / width, "height": 100 * (y2 - y1) / height}


def ls_submit(tasks: list[dict], results: list[list[dict] | None]) -> list[dict]:
    """Label Studio's JSON export after annotators submitted ``results`` (None: task not annotated)."""
    out = []
    for k, (task, result) in enumerate(zip(tasks, results, strict=True)):
        exported = {"id": k + 1, "data": task["data"], "predictions": task.get("predictions", [])}
        exported["annotations"] = [] if result is None else [
            {"id": 100 + k, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
             "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "lead_time": 3.0,
             "result": result}]
        out.append(exported)
    return out


def load_json(path: Path):
    return json.loads(path.read_text())

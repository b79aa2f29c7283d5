"""The whole labeling project on raw video: a folder of videos in, boxes on every frame out.

init --videos (no ground-truth file used by the workspace), export to Label Studio, answers
drawn in a real Label Studio server and exported by it (written as it writes them where it is
not installed), import, two cycles of the loop with people answering,
then `export --dense` in every format, each file read back by its own reader.
"""

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from ls_server import http, label_studio_executable, start_label_studio, status_of

from sparselabel.data.dataset import load_dataset
from sparselabel.errors import SparseLabelError
from sparselabel.interchange import cvat, export_dense, jsonl
from sparselabel.loop.workspace import Workspace

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=3",
        "selection.passes=2", "labels.initial_percent=10"]
DENSE_FORMATS = ("json", "cvat", "labelstudio", "act-pkl", "mot")


def sparselabel(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "sparselabel", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path, dict]:
    """Raw videos in class folders, and (for the stand-in annotator only) their true boxes."""
    root = tmp_path_factory.mktemp("raw")
    sparselabel("synth", "--out", root / "synth", "--videos", 4, "--difficulty", "easy", "--frames", 24, 32)
    truth = json.loads((root / "synth" / "dataset.json").read_text())
    for video in truth["videos"]:
        target = root / "raw" / truth["classes"][video["label"]] / Path(video["path"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "synth" / video["path"], target)
    shutil.rmtree(root / "synth" / "videos")  # the workspace can only see the raw folder
    return root, root / "raw", truth


def true_boxes(truth: dict, video_id: str, frame: int) -> list[tuple[str, list[float]]]:
    stem = video_id.split("/")[-1]
    return [(truth["classes"][t["label"]], t["boxes"][t["frames"].index(frame)])
            for t in truth["tubes"] if t["video"] == stem and frame in t["frames"]]


def drawn(data: dict, truth: dict) -> list[dict]:
    """The true boxes of a task's frame, as Label Studio rectangle results."""
    width, height = data["width"], data["height"]
    return [{"id": f"r{j}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
             "original_width": width, "original_height": height, "image_rotation": 0,
             "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                       "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]}}
            for j, (label, (x1, y1, x2, y2)) in enumerate(true_boxes(truth, data["video_id"], data["frame"]))]


def answer_in_label_studio(export: Path, truth: dict, studio) -> Path:
    """Label Studio's JSON export of the image tasks, an annotator having drawn the true boxes:
    from a real Label Studio server where one is installed (`make labelstudio`), else written
    as it writes them."""
    tasks = json.loads((export / "labelstudio" / "image-tasks.json").read_text())
    answers = export / "answers.json"
    if studio is None:
        out = [{"id": k + 1, "data": task["data"], "annotations": [
            {"id": 100 + k, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
             "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
             "result": drawn(task["data"], truth)}]} for k, task in enumerate(tasks)]
        answers.write_text(json.dumps(out))
        return answers
    url = studio[1]()
    config = (export / "labelstudio" / "image-config.xml").read_text()
    project = http("POST", f"{url}/api/projects", {"title": export.name, "label_config": config})["id"]
    http("POST", f"{url}/api/projects/{project}/import", tasks)
    for task in http("GET", f"{url}/api/tasks?project={project}&page_size=1000")["tasks"]:
        http("POST", f"{url}/api/tasks/{task['id']}/annotations", {"result": drawn(task["data"], truth)})
    answers.write_bytes(http("GET", f"{url}/api/projects/{project}/export?exportType=JSON", raw=True))
    return answers


def annotate_round(ws: Path, tmp: Path, truth: dict, name: str, studio) -> str:
    export = tmp / f"tasks-{name}"
    sparselabel("export", ws, "--format", "labelstudio", "--out", export)
    return sparselabel("import", ws, answer_in_label_studio(export, truth, studio), "--annotator", "ann").stdout


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A real Label Studio server, or None where it is not installed (answers are then written
    as Label Studio writes them)."""
    try:
        label_studio_executable()
    except pytest.skip.Exception:
        yield None
        return
    # Local file serving on, as docs/annotating.md sets it up (the document root: pytest's temp folder).
    yield from start_label_studio(tmp_path_factory, LOCAL_FILES_SERVING_ENABLED="true",
                                  LOCAL_FILES_DOCUMENT_ROOT=str(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def labeled(project, studio) -> Path:
    root, raw, truth = project
    ws = root / "ws"
    sparselabel("init", ws, "--videos", raw, *TINY)
    assert "frames accepted" in annotate_round(ws, root, truth, "c0", studio)
    paused = sparselabel("loop", ws, "--cycles", 2, "--strategy", "random", "--step", "10%")
    assert "waiting for answers" in paused.stdout
    annotate_round(ws, root, truth, "c1", studio)
    paused = sparselabel("loop", ws, "--resume")
    assert "waiting for answers" in paused.stdout
    annotate_round(ws, root, truth, "c2", studio)
    assert "stopped: ran 2 cycles" in sparselabel("loop", ws, "--resume").stdout
    sparselabel("predict", ws, "--split", "pool")
    return ws


def test_two_cycles_of_answers_reach_the_ledger(labeled):
    with Workspace.open(labeled) as ws:
        cycles = {a.cycle for a in ws.ledger.annotations()}
        assert cycles == {0, 1, 2} and {a.source for a in ws.ledger.annotations()} == {"import"}
        assert not any(ws.dataset.tubes.values())  # no ground truth anywhere in the workspace


@pytest.mark.parametrize("source", ["interpolation", "fusion"])
def test_dense_export_in_every_format_reads_back_with_a_box_source_on_every_frame(labeled, project, source):
    root, raw, _ = project
    out = {fmt: root / f"dense-{source}-{fmt}" for fmt in DENSE_FORMATS}
    for fmt, folder in out.items():
        sparselabel("export", labeled, "--dense", "--format", fmt, "--source", source, "--out", folder)
    with Workspace.open(labeled) as ws:
        videos = ws.ledger.videos("pool")
        answers = {(a.video_id, a.frame): sorted(tuple(round(c, 2) for c in x.box) for x in a.actors)
                   for a in ws.ledger.annotations()}
        classes = ws.ledger.classes

    # json: one line per frame of every video, answers exact, every box with a source and confidence
    lines = [json.loads(line) for line in (out["json"] / "dense.jsonl").read_text().splitlines()]
    assert len(lines) == sum(v.num_frames for v in videos.values())
    parsed = jsonl.parse((out["json"] / "dense.jsonl").read_bytes(), out["json"] / "dense.jsonl")
    assert len(parsed.frames) == len(lines)  # our own importer reads it
    boxes_of = {(line["video"], line["frame"]): line["actors"] for line in lines}
    for key, boxes in answers.items():
        assert sorted(tuple(a["box"]) for a in boxes_of[key]) == boxes
        assert {a["source"] for a in boxes_of[key]} <= {"answer"}
    sources = {a["source"] for actors in boxes_of.values() for a in actors}
    assert "interpolated" in sources and all(0 <= a["confidence"] <= 1 for v in boxes_of.values() for a in v)
    total = sum(len(actors) for actors in boxes_of.values())
    covered = sum(bool(actors) for actors in boxes_of.values())
    assert covered > len(answers)  # boxes well beyond the answered frames

    # cvat: one task per video, read by our importer's CVAT reader; every box a keyframe
    cvat_boxes = 0
    for vid in videos:
        xml = next((out["cvat"] / "cvat").glob(f"*{vid.split('/')[-1]}/annotations.xml"))
        (answer,) = cvat.parse(xml.read_bytes(), xml).videos
        cvat_boxes += sum(len(b) for b in answer.keyframes.values())
    assert cvat_boxes == total

    # labelstudio: accepting the prediction copies it into an annotation, which our importer reads
    tasks = json.loads((out["labelstudio"] / "labelstudio" / "dense-tasks.json").read_text())
    assert {t["data"]["video_id"] for t in tasks} == set(videos)
    ls_items = [item for t in tasks for r in t["predictions"][0]["result"] for item in r["value"]["sequence"]]
    assert len(ls_items) == total and {"source", "confidence"} <= set(ls_items[0])
    assert all((out["labelstudio"] / unquote(t["data"]["video"])).exists() for t in tasks)  # served: decoded once

    # act-pkl: our ACT loader reads it against the raw videos
    dataset = load_dataset("act-pkl", out["act-pkl"] / "dense-GT.pkl", frames_root=raw)
    assert sum(len(t.frames) for tubes in dataset.tubes.values() for t in tubes) == total
    assert dataset.classes == classes

    # mot: MOTChallenge gt.txt rows, 1-based frames, confidence in column 7
    rows = np.concatenate([np.loadtxt(f, delimiter=",", ndmin=2) for f in (out["mot"] / "mot").glob("*/gt/gt.txt")])
    assert len(rows) == total and rows[:, 0].min() >= 1 and np.all((rows[:, 6] > 0) & (rows[:, 6] <= 1))
    with open(out["act-pkl"] / "dense-GT.pkl", "rb") as fh:
        assert set(pickle.load(fh)["nframes"]) == set(videos)


def test_auto_source_is_fusion_with_predictions_and_interpolation_without(labeled, project, ws):
    root = project[0]
    done = sparselabel("export", labeled, "--dense", "--format", "json", "--out", root / "dense-auto")
    assert "dense labels from fusion" in done.stdout
    files, source = export_dense(ws, "json", root / "dense-no-model")  # a workspace never predicted
    assert source == "interpolation" and files == [root / "dense-no-model" / "dense.jsonl"]


def test_a_dense_export_that_fails_leaves_nothing(ws, tmp_path):
    with pytest.raises(SparseLabelError, match="run `sparselabel predict` first"):
        export_dense(ws, "cvat", tmp_path / "dense", source="model")
    assert list(tmp_path.iterdir()) == [tmp_path / "ws"]  # no export folder, no hidden build folder


def test_datumaro_reads_the_dense_cvat_export_box_for_box(labeled, project, datumaro):
    root = project[0]
    out = root / "dense-datumaro"
    sparselabel("export", labeled, "--dense", "--format", "cvat", "--source", "interpolation", "--out", out)
    json_out = root / "dense-datumaro-json"
    sparselabel("export", labeled, "--dense", "--format", "json", "--source", "interpolation", "--out", json_out)
    ours = {}
    for line in (json_out / "dense.jsonl").read_text().splitlines():
        entry = json.loads(line)
        ours[(entry["video"].split("/")[-1], entry["frame"])] = sorted(tuple(a["box"]) for a in entry["actors"])
    helper = Path(__file__).with_name("dm_cvat.py")
    for folder in sorted((out / "cvat").iterdir()):
        done = subprocess.run([datumaro, str(helper), "read", str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        stem = unquote(folder.name).split("/")[-1]
        for item in json.loads(done.stdout):
            boxes = sorted(tuple(round(c, 2) for c in b["box"]) for b in item["boxes"] if not b["outside"])
            assert boxes == ours[(stem, item["frame"])]


def test_label_studio_serves_the_exported_frames_once_a_local_files_storage_is_added(labeled, studio,
                                                                                   tmp_path_factory):
    """The set-up of docs/annotating.md against the real server: with local file serving on but
    no Local files storage in the project every image is a 404; with it, the exported frame."""
    if studio is None:
        pytest.skip("Label Studio is not installed: `make labelstudio`")
    url, base = studio[1](), tmp_path_factory.getbasetemp()
    export = tmp_path_factory.mktemp("media") / "tasks"
    prefix = f"/data/local-files/?d={export.relative_to(base)}/"
    sparselabel("export", labeled, "--format", "labelstudio", "--out", export, "--url-prefix", prefix, "--cycle", 0)
    tasks = json.loads((export / "labelstudio" / "image-tasks.json").read_text())
    config = (export / "labelstudio" / "image-config.xml").read_text()
    project = http("POST", f"{url}/api/projects", {"title": "media", "label_config": config})["id"]
    http("POST", f"{url}/api/projects/{project}/import", tasks)
    media = url + tasks[0]["data"]["image"]
    assert status_of(media)[0] == 404  # what users saw before the docs said to add the storage
    http("POST", f"{url}/api/storages/localfiles", {"project": project, "title": "tasks", "path": str(export),
                                                    "use_blob_urls": False})
    status, body = status_of(media)
    assert status == 200 and body == (export / unquote(tasks[0]["data"]["image"][len(prefix):])).read_bytes()

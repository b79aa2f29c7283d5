"""`sparselabel serve`, the Label Studio ML backend: its endpoints through Flask's test client, then
the whole round against a real Label Studio server (skipped, with the reason, where none is installed).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ix_tools import MOVED, PREDICTED, SELECTED, answers, ls_percent, snapshot
from ls_server import LS_TOKEN, http, stop, wait_until

from sparselabel.interchange.backend import RECEIVED, Backend, create_app
from sparselabel.interchange.labelstudio import image_config, video_config

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "7.1700000000"  # how Label Studio names a project to the backend: "<id>.<created>"


class Client:
    """The app's test client, with the jobs the background worker was given."""

    def __init__(self, root: Path, *overrides: str):
        pytest.importorskip("flask", reason="the serve extra (flask) is not installed")
        self.jobs: list[str] = []
        self.backend = Backend(root, overrides, next_cycle=lambda backend: self.jobs.append("run") or "done")
        self.http = create_app(self.backend).test_client()

    def idle(self) -> bool:
        return self.backend.worker.state()["worker"] == "idle"

    def settled_jobs(self) -> int:
        wait_until(self.idle, 10, "the worker to finish")
        return len(self.jobs)


def image_task(task_id: int, video: str, frame: int) -> dict:
    return {"id": task_id, "project": 7, "data": {"image": f"images/{video}__{frame:06d}.jpg", "video_id": video,
                                                  "frame": frame, "cycle": 0, "width": 64, "height": 48}}


def rectangle(box, label: str = "right", width: int = 64, height: int = 48) -> dict:
    return {"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
            "original_width": width, "original_height": height,
            "value": {**ls_percent(box, width, height), "rotation": 0, "rectanglelabels": [label]}}


def annotation_event(task: dict, result: list[dict], action: str = "ANNOTATION_CREATED") -> dict:
    """What Label Studio POSTs to <backend>/webhook when someone submits an annotation."""
    annotation = {"id": 100 + task["id"], "result": result, "was_cancelled": False, "ground_truth": False,
                  "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "lead_time": 2.0,
                  "task": task["id"], "project": 7, "completed_by": 1}
    return {"action": action, "annotation": annotation, "task": task,
            "project": {"id": 7, "label_config": image_config(["left", "right"])}}


# --- the endpoints, without Label Studio ----------------------------------------------------


def test_health_and_setup_report_the_newest_model(predicted_ws):
    client = Client(predicted_ws.root)
    health = client.http.get("/health")
    assert health.status_code == 200 and health.json["status"] == "UP"
    setup = client.http.post("/setup", json={"project": PROJECT, "schema": image_config(["left", "right"]),
                                             "hostname": "http://localhost:8080", "access_token": "t0ken-123"})
    assert setup.status_code == 200 and setup.json["model_version"].startswith("cycle-000@")
    assert client.backend.projects() == {7: "image"}  # where the next cycle's tasks will go
    assert (client.backend.studio_url, client.backend.studio_key) == ("http://localhost:8080", "t0ken-123")
    assert client.http.get("/versions").json["versions"] == [setup.json["model_version"]]


def test_predict_answers_every_task_in_order_with_the_stored_boxes(predicted_ws):
    client = Client(predicted_ws.root)
    video_task = {"id": 2, "data": {"video": "videos/vid1.mp4", "video_id": "vid1", "fps": 25.0, "frames": [1, 13, 14]}}
    tasks = [image_task(1, "vid0", 2), video_task, {"id": 3, "data": {"text": "not ours"}},
             image_task(4, "nobody", 2), image_task(5, "vid0", 999)]
    response = client.http.post("/predict", json={"tasks": tasks, "project": PROJECT,
                                                  "label_config": image_config(["left", "right"])})
    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == len(tasks) and all(r["model_version"].startswith("cycle-000@") for r in results)
    (region,) = results[0]["result"]
    assert region["type"] == "rectanglelabels" and region["value"]["rectanglelabels"] == ["right"]
    assert region["value"]["x"] == pytest.approx(ls_percent(PREDICTED)["x"])
    assert region["value"]["width"] == pytest.approx(ls_percent(PREDICTED)["width"])
    (track,) = results[1]["result"]
    assert track["type"] == "videorectangle" and track["value"]["labels"] == ["right"]
    assert [k["frame"] for k in track["value"]["sequence"]] == [2, 14, 15]  # Label Studio counts from 1
    assert [r["result"] for r in results[2:]] == [[], [], []]  # not ours, unknown video, no such frame


def test_predict_uses_the_projects_own_tag_names(predicted_ws):
    config = '<View><Image name="img" value="$image"/><RectangleLabels name="bbox" toName="img">' \
             '<Label value="left"/><Label value="right"/></RectangleLabels></View>'
    response = Client(predicted_ws.root).http.post("/predict", json={"tasks": [image_task(1, "vid0", 2)],
                                                                     "label_config": config})
    (region,) = response.json["results"][0]["result"]
    assert (region["from_name"], region["to_name"]) == ("bbox", "img")


def test_predict_without_any_prediction_run_is_an_empty_result_not_an_error(ws):
    response = Client(ws.root).http.post("/predict", json={"tasks": [image_task(1, "vid0", 2)]})
    assert response.status_code == 200
    assert response.json["results"] == [{"result": [], "score": 0.0, "model_version": "sparselabel-untrained"}]


def test_an_annotation_event_is_imported_like_a_file_and_kept(predicted_ws):
    client = Client(predicted_ws.root)
    task = image_task(3, "vid0", 2)
    client.http.post("/predict", json={"tasks": [task]})  # the box it offers ...
    response = client.http.post("/webhook", json=annotation_event(task, [rectangle(MOVED)]))
    assert response.status_code == 201 and response.json["new"] == 1
    assert answers(predicted_ws.ledger)[("vid0", 2)] == [("right", MOVED)]
    row = predicted_ws.ledger.db.execute("SELECT source, clicks, corrected FROM annotations "
                                         "WHERE video_id = 'vid0' AND frame = 2").fetchone()
    assert row == ("import", 1, 1)  # ... was moved: a correction (1 click), not a drawing (2)
    (kept,) = (predicted_ws.root / RECEIVED).glob("*-task3.json")  # the audit trail: what was imported
    assert json.loads(kept.read_text())[0]["annotations"][0]["id"] == 103
    again = client.http.post("/webhook", json=annotation_event(task, [rectangle(MOVED)], "ANNOTATION_UPDATED"))
    assert again.status_code == 201 and again.json["new"] == 0 and again.json["accepted"] == 1


@pytest.mark.parametrize("event, status", [
    (annotation_event(image_task(1, "vid0", 2), [rectangle((40.0, 10.0, 90.0, 40.0))]), 422),  # outside the frame
    (annotation_event(image_task(1, "vid0", 2), [rectangle(MOVED, label="jump")]), 422),  # unknown label
    (annotation_event(image_task(1, "vid9", 2), [rectangle(MOVED)]), 422),  # unknown video
    ({"action": "ANNOTATION_CREATED", "annotation": {"result": []}}, 400),  # no task
    ({"annotation": {}}, 400),  # no action
    ("not json", 400),
])
def test_a_malformed_annotation_is_refused_in_one_line_and_changes_nothing(predicted_ws, event, status):
    before = snapshot(predicted_ws.ledger)
    client = Client(predicted_ws.root)
    if isinstance(event, str):
        response = client.http.post("/webhook", data=event, content_type="application/json")
    else:
        response = client.http.post("/webhook", json=event)
    assert response.status_code == status
    assert response.json["error"] and "\n" not in response.json["error"]
    assert snapshot(predicted_ws.ledger) == before
    assert not list((predicted_ws.root / RECEIVED).glob("*.json"))  # refused files are set aside
    assert client.settled_jobs() == 0


def test_other_project_events_are_acknowledged_and_ignored(predicted_ws):
    before = snapshot(predicted_ws.ledger)
    response = Client(predicted_ws.root).http.post("/webhook", json={"action": "TASKS_CREATED", "tasks": []})
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert snapshot(predicted_ws.ledger) == before


def test_a_skipped_task_is_acknowledged_and_records_nothing(predicted_ws):
    before = snapshot(predicted_ws.ledger)
    event = annotation_event(image_task(1, "vid0", 2), [])
    event["annotation"]["was_cancelled"] = True  # the annotator pressed Skip
    response = Client(predicted_ws.root).http.post("/webhook", json=event)
    assert response.status_code == 200 and response.json["status"] == "skipped"
    assert snapshot(predicted_ws.ledger) == before


def test_the_next_cycle_starts_every_n_answers_and_when_asked(predicted_ws):
    client = Client(predicted_ws.root, "serve.train_every=2", "serve.train_when_answered=false")
    first, second = image_task(1, "vid0", 2), image_task(2, "vid0", 7)
    assert client.http.post("/webhook", json=annotation_event(first, [])).status_code == 201
    assert client.settled_jobs() == 0
    client.http.post("/webhook", json=annotation_event(first, []))  # the same answer again: not new
    assert client.settled_jobs() == 0
    client.http.post("/webhook", json=annotation_event(second, [rectangle(PREDICTED)]))
    assert client.settled_jobs() == 1
    start = client.http.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
    assert start.status_code == 201 and start.json["status"] in ("started", "queued")
    assert client.settled_jobs() == 2
    assert client.http.post("/train").status_code == 201
    assert client.settled_jobs() == 3


def test_the_next_cycle_starts_when_the_selection_is_answered(predicted_ws):
    client = Client(predicted_ws.root)  # serve.train_when_answered defaults to true
    tasks = [image_task(k, vid, f) for k, (vid, f) in enumerate((v, f) for v, fs in SELECTED.items() for f in fs)]
    bulk = {"action": "ANNOTATIONS_CREATED", "task": tasks[:-1],
            "annotation": [annotation_event(t, [])["annotation"] for t in tasks[:-1]]}
    response = client.http.post("/webhook", json=bulk)
    assert response.status_code == 201 and response.json["new"] == len(tasks) - 1
    assert client.settled_jobs() == 0
    client.http.post("/webhook", json=annotation_event(tasks[-1], []))
    assert client.settled_jobs() == 1


def test_media_are_served_from_the_export_folder_only(predicted_ws):
    folder = predicted_ws.root / "interchange" / "serve" / "cycle-001" / "images"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"jpeg")
    client = Client(predicted_ws.root)
    assert client.http.get("/media/cycle-001/images/a.jpg").data == b"jpeg"
    assert client.http.get("/media/../../ledger.sqlite").status_code == 404


def test_serve_without_flask_is_a_one_line_error(ws, monkeypatch, capsys):
    from sparselabel.cli import main

    monkeypatch.setitem(sys.modules, "flask", None)  # as if the extra were not installed
    assert main(["serve", str(ws.root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'sparselabel[serve]'" in err


def test_new_tasks_go_to_each_connected_project_with_this_servers_media(predicted_ws, monkeypatch):
    from sparselabel.interchange import backend as module

    client = Client(predicted_ws.root)
    client.backend.public_url = "http://ml.example:9090"
    assert "no Label Studio project has connected" in module.publish(client.backend, predicted_ws, 0)
    pushed = {}

    def import_tasks(studio, project: int, tasks: list[dict]) -> int:  # Label Studio's side of it
        pushed[(studio.url, project)] = tasks
        return len(tasks)

    monkeypatch.setattr(module.LabelStudio, "import_tasks", import_tasks)
    client.http.post("/setup", json={"project": "3.1", "schema": image_config(["left", "right"]),
                                     "hostname": "http://ls.example", "access_token": "t0ken-123"})
    client.http.post("/setup", json={"project": "4.1", "schema": video_config(["left", "right"])})
    assert module.publish(client.backend, predicted_ws, 0) == "tasks imported: 9 to project 3, 3 to project 4"
    images, videos = pushed[("http://ls.example", 3)], pushed[("http://ls.example", 4)]
    assert {(t["data"]["video_id"], t["data"]["frame"]) for t in images} == {
        (vid, f) for vid, frames in SELECTED.items() for f in frames}
    assert images[0]["data"]["image"].startswith("http://ml.example:9090/media/cycle-000/images/")
    assert client.http.get(images[0]["data"]["image"].removeprefix("http://ml.example:9090")).status_code == 200
    version = client.http.post("/setup", json={}).json["model_version"]
    assert {p["model_version"] for t in images + videos for p in t["predictions"]} == {version}


def test_serve_on_a_port_in_use_is_a_one_line_error(ws, capsys):
    pytest.importorskip("flask", reason="the serve extra (flask) is not installed")
    from sparselabel.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(ws.root), "--port", str(taken.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose another --port" in err


# --- against a real Label Studio ----------------------------------------------------------------

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=3",
        "labels.initial_percent=10", "selection.passes=2", "selection.budget=4",
        "detection.threshold=0.05"]  # an untrained model's maps still give boxes


@pytest.fixture(scope="module")
def served(label_studio, tmp_path_factory):
    """A workspace waiting for the answers of cycle 1, with a trained model and its predictions,
    and `sparselabel serve` on it."""
    pytest.importorskip("flask", reason="the serve extra (flask) is not installed")
    from support import make_tiny_dataset

    from sparselabel.config import load_config
    from sparselabel.loop.steps import predict_step, select_step, train_step
    from sparselabel.loop.workspace import Workspace

    url, _ = label_studio
    base = tmp_path_factory.mktemp("served")
    data = make_tiny_dataset(base / "data", num_videos=4, num_frames=20)
    with Workspace.create(base / "ws", load_config(None, [f"dataset.path={data}", *TINY])) as ws:
        train_step(ws)  # cycle 0: the initial labels (simulated oracle)
        predict_step(ws, split="pool")
        select_step(ws, "random")  # cycle 1: 4 frames for people
    log = (base / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "sparselabel", "serve", str(base / "ws"), "--port", "0",
                                "--label-studio-url", url],
                               env={**os.environ, "LABEL_STUDIO_API_KEY": LS_TOKEN},
                               stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = process.stdout.readline()  # "serving WS as a Label Studio ML backend on URL (...)"
        assert "serving" in line, (base / "serve.log").read_text()[-3000:]
        yield base / "ws", line.split(" on ")[1].split()[0], base / "serve.log"
    finally:
        stop(process)
        log.close()


@pytest.mark.slow
def test_label_studio_gets_boxes_sends_answers_and_receives_the_next_cycle(label_studio, served):
    from sparselabel.interchange import export_tasks
    from sparselabel.loop.workspace import Workspace

    root, backend, serve_log = served
    label_studio = label_studio[1]()  # up by now, or wait for it
    exported = root / "interchange" / "serve" / "initial"  # the backend serves these media too
    with Workspace.open(root) as ws:
        export_tasks(ws, "labelstudio", exported, url_prefix=f"{backend}/media/initial/")
    tasks = json.loads((exported / "labelstudio" / "image-tasks.json").read_text())
    config = (exported / "labelstudio" / "image-config.xml").read_text()
    project = http("POST", f"{label_studio}/api/projects", {"title": "sparselabel", "label_config": config})["id"]
    http("POST", f"{label_studio}/api/projects/{project}/import", tasks)
    ml = http("POST", f"{label_studio}/api/ml", {"url": backend, "project": project, "title": "sparselabel"})
    assert ml["readable_state"] == "Connected", ml  # Label Studio called /health and /setup

    # Label Studio asks /predict and stores what it gets: boxes.
    http("POST", f"{label_studio}/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
         {"selectedItems": {"all": True, "excluded": []}})
    predictions = {p["task"]: p for p in http("GET", f"{label_studio}/api/predictions?project={project}")}
    listed = http("GET", f"{label_studio}/api/tasks?project={project}&page_size=100")["tasks"]
    assert len(predictions) == len(listed) == 4
    for prediction in predictions.values():
        assert prediction["result"], prediction
        assert all(r["type"] == "rectanglelabels" and r["value"]["width"] > 0 and r["value"]["height"] > 0
                   for r in prediction["result"])

    # Annotators accept the first box on each task: webhooks carry the answers into the ledger.
    for task in listed:
        http("POST", f"{label_studio}/api/tasks/{task['id']}/annotations",
             {"result": predictions[task["id"]]["result"][:1], "lead_time": 1.0})

    def cycle_one_answers():
        with Workspace.open(root) as ws:
            found = [a for a in ws.ledger.annotations() if a.cycle == 1 and a.source == "import"]
            return found if len(found) == 4 else None

    for answer in wait_until(cycle_one_answers, 30, "the answers to reach the ledger"):
        assert len(answer.actors) == 1
    assert len(list((root / RECEIVED).glob("*.json"))) == 4

    # Every selected frame answered: train -> predict -> score -> select, new tasks in the project.
    def new_tasks():
        found = http("GET", f"{label_studio}/api/tasks?project={project}&page_size=100")["tasks"]
        return [t for t in found if t["data"].get("cycle") == 2] or None

    fresh = wait_until(new_tasks, 300, "the next cycle's tasks", 1)
    with Workspace.open(root) as ws:
        selected = {(vid, frame) for _, _, vid, frame, _ in ws.ledger.selections(2)}
    assert {(t["data"]["video_id"], t["data"]["frame"]) for t in fresh} == selected and len(selected) == 4
    assert all(t["total_predictions"] == 1 for t in fresh)  # pre-annotated by the new model
    image = http("GET", fresh[0]["data"]["image"], token=None, raw=True)
    assert image[:2] == b"\xff\xd8"  # the frame, served by the backend

    # The Start Training button (Model settings) reaches the backend as START_TRAINING.
    http("POST", f"{label_studio}/api/ml/{ml['id']}/train", {})

    def trained_on_request():
        state = http("GET", f"{backend}/health", token=None)
        return state if state["worker"] == "idle" and "START_TRAINING" in state["reason"] else None

    state = wait_until(trained_on_request, 120, "the requested training", 1)
    assert "cycle 2 was selected already" in state["last"], serve_log.read_text()[-3000:]

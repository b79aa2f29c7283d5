"""``sparselabel serve``: the workspace as a Label Studio ML backend.

Label Studio (1.23) talks to an ML backend over HTTP (``label_studio/ml/api_connector.py``):

- ``GET /health`` when the backend is connected and before each prediction round;
- ``POST /setup`` ``{project: "<id>.<created>", schema: <labeling config>, hostname,
  access_token, extra_params}`` on connecting and before predicting; answers ``{model_version}``;
- ``POST /predict`` ``{tasks: [...], project, label_config, params}`` when a task without a
  prediction of the current model version is opened, or for the *Retrieve Predictions*
  action; answers ``{results: [{result, score, model_version}, ...]}``, one per task, in order;
- ``POST /webhook`` for every project event (connecting a backend creates a project
  webhook to ``<url>/webhook`` for all actions): ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``
  ``{action, annotation, task, project}``, ``ANNOTATIONS_CREATED`` (lists), and
  ``START_TRAINING`` ``{action, project}`` from the *Start Training* button or the project's
  "train every N annotations" setting;
- ``GET /versions`` for the model-version picker.

What this module does with them: ``/predict`` turns the newest stored predictions into
regions with the export's own pre-annotation code; an annotation event is written as one
entry of a Label Studio JSON export under ``WORKSPACE/interchange/received/`` and read with
``import_answers``, so it passes the same validation and the same single transaction as
``sparselabel import`` (and leaves an audit trail); the ``serve:`` config (or ``POST /train``,
or ``START_TRAINING``) starts train -> predict -> score -> select in one background worker,
whose newly selected frames are exported and imported as tasks into the connected projects
through Label Studio's REST API.

Flask, because it is what Label Studio's own ML backend SDK runs on, it is small and well
kept, and its test client makes the endpoints testable without a server.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from defusedxml import ElementTree as SafeET

from sparselabel.atomic import replaced
from sparselabel.errors import AnnotationError, SparseLabelError
from sparselabel.interchange import labelstudio
from sparselabel.interchange.common import ExportBatch, TaskFrame
from sparselabel.interchange.export import (
    add_predictions,
    export_tasks,
    prediction_runs,
    write_record,
)
from sparselabel.interchange.importer import ImportReport, import_answers
from sparselabel.loop.workspace import POOL, Workspace

log = logging.getLogger("sparselabel.serve")

INTERCHANGE = Path("interchange")
RECEIVED = INTERCHANGE / "received"  # every annotation event, as the file that was imported
MEDIA = INTERCHANGE / "serve"  # tasks exported for Label Studio, served under /media/
PROJECTS_FILE = INTERCHANGE / "serve-projects.json"  # projects that connected: where new tasks go
ANSWER_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
TRAIN_ACTION = "START_TRAINING"
NO_MODEL = "sparselabel-untrained"  # model version before any prediction run exists
STUDIO_TIMEOUT = 30  # seconds per Label Studio REST call


def require_flask():
    """Flask, or the one-line error saying how to get it (it is an optional extra)."""
    try:
        import flask
    except ImportError:
        raise SparseLabelError("sparselabel serve needs Flask: pip install 'sparselabel[serve]'") from None
    return flask


# --- the state one server keeps -----------------------------------------------------------


@dataclass
class Backend:
    """One workspace behind the endpoints. Every request opens the workspace afresh:
    SQLite connections belong to the thread that made them, and the server is threaded."""

    root: Path
    overrides: tuple[str, ...] = ()
    studio_url: str = ""  # --label-studio-url / LABEL_STUDIO_URL, else the hostname /setup sends
    studio_key: str = ""  # LABEL_STUDIO_API_KEY, else the token /setup sends
    public_url: str = ""  # how browsers reach this server (media URLs of pushed tasks)
    next_cycle: Callable[[Backend], str] | None = None  # the worker's job (tests put a stand-in here)
    accepted_since: int = 0  # answers accepted since the worker last started
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # imports, one at a time
    worker: CycleWorker = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.worker = CycleWorker(lambda: (self.next_cycle or run_next_cycle)(self), self._cycle_starts)

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        workspace = Workspace.open(self.root, list(self.overrides))
        try:
            yield workspace
        finally:
            workspace.close()

    def _cycle_starts(self) -> None:
        with self.lock:  # answers arriving during training count toward the next trigger
            self.accepted_since = 0

    # --- projects -------------------------------------------------------------------------

    def projects(self) -> dict[int, str]:
        """Connected projects -> "image" or "video" (their labeling config decides)."""
        path = self.root / PROJECTS_FILE
        if not path.is_file():
            return {}
        return {int(k): v for k, v in json.loads(path.read_text()).items()}

    def remember_project(self, project: object, label_config: object) -> None:
        """Note a project that talked to us (setup, predict, webhook) and what its tasks show."""
        pid = project_id(project)
        kind = project_kind(label_config)
        if pid is None or kind is None or self.projects().get(pid) == kind:
            return
        with self.lock:
            known = {**self.projects(), pid: kind}
            path = self.root / PROJECTS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            with replaced(path) as handle:
                handle.write(json.dumps({str(k): v for k, v in sorted(known.items())}).encode())

    def connect_studio(self, hostname: object, access_token: object) -> None:
        """Use the URL and token Label Studio sent in /setup where flags and env gave none."""
        if not self.studio_url and isinstance(hostname, str):
            self.studio_url = hostname
        if not self.studio_key and isinstance(access_token, str):
            self.studio_key = access_token

    def studio(self) -> LabelStudio | None:
        return LabelStudio(self.studio_url, self.studio_key) if self.studio_url and self.studio_key else None


def project_id(project: object) -> int | None:
    """Label Studio names a project "<id>.<created timestamp>" in setup/predict, as an object in webhooks."""
    if isinstance(project, dict):
        project = project.get("id")
    text = str(project).split(".")[0] if project is not None else ""
    return int(text) if text.isdigit() else None


def box_tags(label_config: object) -> dict[str, tuple[str, str]]:
    """(from_name, to_name) of the project's box tags by result type: a project may name its
    tags differently from the config `sparselabel export` writes."""
    if not isinstance(label_config, str) or not label_config.strip():
        return {}
    try:
        root = SafeET.fromstring(label_config)
    except Exception:  # defusedxml or expat: a config we cannot read gets our default names
        return {}
    kinds = {"RectangleLabels": "rectanglelabels", "Rectangle": "rectanglelabels", "VideoRectangle": "videorectangle"}
    tags: dict[str, tuple[str, str]] = {}
    for element in root.iter():
        kind = kinds.get(element.tag)
        if kind and element.get("name") and element.get("toName"):
            tags.setdefault(kind, (element.get("name"), element.get("toName")))
    return tags


def project_kind(label_config: object) -> str | None:
    tags = box_tags(label_config)
    return "video" if "videorectangle" in tags else "image" if "rectanglelabels" in tags else None


# --- /predict: pre-annotations of the newest prediction run ---------------------------------


def newest_run(workspace: Workspace) -> Path | None:
    return next(iter(prediction_runs(workspace)), None)


def model_version(run: Path | None) -> str:
    """The run and when it was predicted: retraining a cycle gives a new version, so Label
    Studio asks again for tasks whose predictions came from the older model."""
    if run is None:
        return NO_MODEL
    stamp = max((p.stat().st_mtime for p in run.glob("*.npz")), default=run.stat().st_mtime)
    return f"{run.name}@{datetime.fromtimestamp(stamp, timezone.utc):%Y%m%dT%H%M%S}"


@dataclass
class Ask:
    """What one task asks about: a video's frames, as an image task (one frame) or a video task."""

    video_id: str
    frames: list[int]
    is_video: bool


def ask_of(task: object, videos: dict) -> Ask | None:
    """data.video_id with data.frame (image task) or data.frames (video task); None for a task
    that is not ours or names an unknown video or frame: it gets an empty prediction."""
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict) or data.get("video_id") not in videos:
        return None
    video = videos[data["video_id"]]
    asked = data.get("frames", [data.get("frame")])
    if not isinstance(asked, list) or not asked:
        return None
    if not all(isinstance(f, int) and not isinstance(f, bool) and 0 <= f < video.num_frames for f in asked):
        return None
    return Ask(video.id, sorted(set(asked)), "frames" in data)


def predict(workspace: Workspace, tasks: list, label_config: object) -> list[dict]:
    """Predictions for ``tasks``, in order, with the export's pre-annotation code: each video's
    maps are read once per request however many tasks show it. What was offered is recorded
    as an export's offer is, so an answer that keeps or adjusts a box is priced as a correction."""
    videos, classes = workspace.ledger.videos(), workspace.ledger.classes
    asks = [ask_of(task, videos) for task in tasks]
    batches: dict[tuple[str, bool], ExportBatch] = {}
    for ask in filter(None, asks):
        batch = batches.setdefault((ask.video_id, ask.is_video), ExportBatch(0, classes, []))
        have = {f.frame for f in batch.frames}
        v = videos[ask.video_id]
        batch.frames += [TaskFrame(v.id, f, 0, v.width, v.height, v.fps, v.num_frames, "")
                         for f in ask.frames if f not in have]
    for (_, is_video), batch in batches.items():
        try:
            add_predictions(workspace, batch, tracks=is_video)
        except SparseLabelError:  # no prediction run covers this video yet: nothing to offer
            batch.model_version = None
    tags = box_tags(label_config)
    results = [_prediction(ask, batches, tags, workspace) for ask in asks]
    offered = [f for b in batches.values() for f in b.frames if f.boxes]
    if offered:
        record = ExportBatch(0, classes, offered)
        record.model_version = results[0]["model_version"]
        write_record(workspace.root, labelstudio.FORMAT, record, workspace.root / MEDIA)
    return results


def _prediction(ask: Ask | None, batches: dict[tuple[str, bool], ExportBatch], tags: dict[str, tuple[str, str]],
                workspace: Workspace) -> dict:
    """One task's prediction as Label Studio stores it (an empty result when there is none)."""
    batch = None if ask is None else batches[(ask.video_id, ask.is_video)]
    if batch is None or batch.model_version is None:
        return {"result": [], "score": 0.0, "model_version": model_version(newest_run(workspace))}
    frames = [f for f in batch.frames if f.frame in ask.frames]
    if ask.is_video:
        tracks = batch.tracks.get(ask.video_id, [])
        prediction = labelstudio.video_task(frames, "", "", tracks, batch.model_version)["predictions"][0]
    else:
        prediction = labelstudio.image_task(frames[0], "", batch.model_version)["predictions"][0]
    for region in prediction["result"]:  # named after the project's own tags
        region["from_name"], region["to_name"] = tags.get(region["type"], (region["from_name"], region["to_name"]))
    return {**prediction, "model_version": model_version(workspace.root / "predictions" / batch.model_version)}


# --- /webhook: annotation events into the ledger, through `import` ------------------------------


def export_entries(payload: dict) -> list[dict]:
    """The tasks of an annotation event, each with its annotation(s), shaped like entries of a
    Label Studio JSON export (the format `sparselabel import` reads)."""
    action = payload["action"]
    annotations, tasks = payload.get("annotation"), payload.get("task")
    if isinstance(annotations, dict):
        annotations, tasks = [annotations], [tasks]
    if not (isinstance(annotations, list) and annotations and all(isinstance(a, dict) for a in annotations)):
        raise AnnotationError(f"webhook {action}: no 'annotation' object")
    if not (isinstance(tasks, list) and all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks)):
        raise AnnotationError(f"webhook {action}: no 'task' object with 'data'")
    entries: dict[object, dict] = {}
    for k, annotation in enumerate(annotations):
        # One event: its only task. A bulk event: the task each annotation names.
        task = tasks[0] if len(tasks) == 1 else next((t for t in tasks if t.get("id") == annotation.get("task")), None)
        if task is None:
            raise AnnotationError(f"webhook {action}: annotation {annotation.get('id', k)} has no task in the event")
        entries.setdefault(task.get("id", id(task)), {**task, "annotations": []})["annotations"].append(annotation)
    return list(entries.values())


def skipped_only(payload: dict) -> bool:
    """Whether every annotation of the event was skipped (``was_cancelled``) in Label Studio."""
    annotations = payload.get("annotation")
    annotations = [annotations] if isinstance(annotations, dict) else annotations
    return (isinstance(annotations, list) and bool(annotations)
            and all(isinstance(a, dict) and a.get("was_cancelled") is True for a in annotations))


def received_file(root: Path, entries: list[dict]) -> Path:
    """Write the event's entries atomically to interchange/received/<time>-task<id>.json."""
    ids = [e.get("id") for e in entries]
    name = f"task{ids[0]}" if isinstance(ids[0], int) else "task"
    if len(ids) > 1:
        name += f"+{len(ids) - 1}"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = root / RECEIVED / f"{stamp}-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as handle:
        handle.write(json.dumps(entries, indent=1).encode())
    return path


def annotator_of(entries: list[dict]) -> str | None:
    who = entries[0]["annotations"][-1].get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who is None else f"labelstudio:{who}"


def receive(backend: Backend, payload: dict) -> ImportReport:
    """Import one annotation event (all or nothing); a refused file moves to received/refused/."""
    entries = export_entries(payload)
    with backend.lock:  # one import at a time: the trigger counts them in order
        path = received_file(backend.root, entries)
        try:
            with backend.workspace() as workspace:
                report = import_answers(workspace, path, annotator=annotator_of(entries))
                complete, settings = selection_answered(workspace), workspace.config.serve
        except SparseLabelError:
            refused = path.parent / "refused" / path.name
            refused.parent.mkdir(exist_ok=True)
            path.replace(refused)
            raise
        fresh = len(report.new) + len(report.versions)
        backend.accepted_since += fresh
        count = backend.accepted_since
    if fresh and settings.train_when_answered and complete:
        backend.worker.request("every selected frame is answered")
    elif fresh and settings.train_every and count >= settings.train_every:
        backend.worker.request(f"{count} new answers")
    return report


def selection_answered(workspace: Workspace) -> bool:
    """Whether every frame of the newest selection has an answer (the loop's cycle is complete)."""
    rows = workspace.ledger.selections()
    if not rows:
        return False
    newest = max(r[0] for r in rows)
    done = workspace.ledger.annotated_frames()
    return all(frame in set(done[vid].tolist()) for cycle, _, vid, frame, _ in rows if cycle == newest)


# --- the next cycle, one at a time in the background ----------------------------------------


class CycleWorker:
    """Runs ``job`` on one background thread; a request while it runs queues one more run
    (answers that came in meanwhile deserve a model that has seen them)."""

    def __init__(self, job: Callable[[], str], on_start: Callable[[], None] = lambda: None):
        self._job, self._on_start = job, on_start
        self._lock = threading.Lock()
        self._running = self._pending = False
        self.reason = self.last = ""

    def request(self, reason: str) -> str:
        """'started', or 'queued' behind the run in progress."""
        with self._lock:
            if self._running:
                self._pending, self.reason = True, reason
                return "queued"
            self._running, self.reason = True, reason
        log.info("next cycle: %s", reason)
        threading.Thread(target=self._run, name="sparselabel-cycle", daemon=True).start()
        return "started"

    def _run(self) -> None:
        while True:
            self._on_start()
            try:
                self.last = self._job()
            except Exception as exc:  # a failed cycle is reported, the server stays up
                log.exception("next cycle failed")
                self.last = f"error: {' '.join(str(exc).split())}"
            log.info("next cycle: %s", self.last)
            with self._lock:
                if not self._pending:
                    self._running = False
                    return
                self._pending = False

    def state(self) -> dict:
        with self._lock:
            return {"worker": "running" if self._running else "idle", "reason": self.reason, "last": self.last}


def run_next_cycle(backend: Backend) -> str:
    """train -> predict -> score -> select, then the new frames as tasks in Label Studio."""
    from sparselabel.loop.steps import (
        latest_annotated_cycle,
        predict_step,
        score_step,
        select_step,
        train_step,
    )
    from sparselabel.selection import make_strategy

    with backend.workspace() as workspace:
        run = train_step(workspace, restart=True).run_dir.name  # on every answer so far
        predict_step(workspace, run=run, split=POOL)
        cycle = latest_annotated_cycle(workspace) + 1
        if workspace.ledger.selections(cycle):  # selected by an earlier run; its tasks are out
            return f"trained {run}; cycle {cycle} was selected already"
        if make_strategy(workspace.config.selection.strategy).needs:
            score_step(workspace, run=run)
        picked = select_step(workspace, cycle=cycle)
        published = publish(backend, workspace, cycle)
        return f"trained {run}, selected {len(picked.picks)} frames for cycle {cycle}; {published}"


def publish(backend: Backend, workspace: Workspace, cycle: int) -> str:
    """Export the cycle's frames (pre-annotated) and import them into every connected project."""
    name = f"cycle-{cycle:03d}"
    out = workspace.root / MEDIA / name
    export_tasks(workspace, labelstudio.FORMAT, out, cycle=cycle, with_predictions=True,
                 url_prefix=f"{backend.public_url}/media/{name}/", overwrite=True)
    projects = backend.projects()
    if not projects:
        return f"tasks in {out}; no Label Studio project has connected yet"
    studio = backend.studio()
    if studio is None:
        return f"tasks in {out}; no Label Studio URL and API key (--label-studio-url, LABEL_STUDIO_API_KEY)"
    version, counts = model_version(newest_run(workspace)), []
    for pid, kind in sorted(projects.items()):
        tasks = json.loads((out / "labelstudio" / f"{kind}-tasks.json").read_text())
        for prediction in (p for task in tasks for p in task.get("predictions", [])):
            prediction["model_version"] = version  # what /setup reports: Label Studio need not ask again
        counts.append(f"{studio.import_tasks(pid, tasks)} to project {pid}")
    return "tasks imported: " + ", ".join(counts)


# --- Label Studio's REST API, for pushing tasks ---------------------------------------------


@dataclass
class LabelStudio:
    """Label Studio's REST API with a legacy token or a personal access token (a JWT, which
    is exchanged for a short-lived access token before each call)."""

    url: str
    key: str

    def authorization(self) -> str:
        if self.key.count(".") != 2:
            return f"Token {self.key}"
        access = self._call("POST", "/api/token/refresh/", {"refresh": self.key}, auth=None)
        return f"Bearer {access['access']}"

    def import_tasks(self, project: int, tasks: list[dict]) -> int:
        done = self._call("POST", f"/api/projects/{project}/import", tasks, auth=self.authorization())
        return int(done.get("task_count", len(tasks)))

    def _call(self, method: str, path: str, body: object, auth: str | None) -> dict:
        headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
        request = urllib.request.Request(self.url.rstrip("/") + path, json.dumps(body).encode(), headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=STUDIO_TIMEOUT) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = " ".join(exc.read(300).decode("utf-8", "replace").split())
            raise SparseLabelError(f"Label Studio at {self.url}: {method} {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SparseLabelError(f"Label Studio at {self.url}: {method} {path}: {exc}") from None


# --- the HTTP endpoints ---------------------------------------------------------------------


def create_app(backend: Backend):
    """The Flask app of the endpoints Label Studio calls (see the module docstring)."""
    flask = require_flask()
    app = flask.Flask(__name__, static_folder=None)
    with backend.workspace() as workspace:  # bodies over the import limit are refused unread
        app.config["MAX_CONTENT_LENGTH"] = int(workspace.config.labels.import_max_mb * 2**20)

    def body() -> dict:
        payload = flask.request.get_json(silent=True)
        if not isinstance(payload, dict):
            raise AnnotationError("expected a JSON object in the request body")
        return payload

    @app.get("/")
    @app.get("/health")
    def health():
        return {"status": "UP", "model_class": "sparselabel", **backend.worker.state()}

    @app.post("/setup")
    def setup():
        payload = body()
        backend.remember_project(payload.get("project"), payload.get("schema"))
        backend.connect_studio(payload.get("hostname"), payload.get("access_token"))
        with backend.workspace() as workspace:
            return {"model_version": model_version(newest_run(workspace))}

    @app.post("/predict")
    def predict_endpoint():
        payload = body()
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise AnnotationError("/predict: 'tasks' is not a list")
        backend.remember_project(payload.get("project"), payload.get("label_config"))
        with backend.workspace() as workspace:
            results = predict(workspace, tasks, payload.get("label_config"))
        return {"results": results, "model_version": results[0]["model_version"] if results else NO_MODEL}

    @app.post("/webhook")
    def webhook():
        payload = body()
        action = payload.get("action")
        if not isinstance(action, str):
            raise AnnotationError("webhook without an 'action'")
        project = payload.get("project")
        backend.remember_project(project, project.get("label_config") if isinstance(project, dict) else None)
        if action == TRAIN_ACTION:
            return {"status": backend.worker.request("Label Studio asked (START_TRAINING)")}, 201
        if action not in ANSWER_ACTIONS:
            return {"status": "ignored", "action": action}, 200
        if skipped_only(payload):  # an annotator pressed Skip: no answer, nothing to record
            return {"status": "skipped", "action": action}, 200
        report = receive(backend, payload)
        log.info("%s", report.summary().replace("\n", "; "))
        return {"status": "imported", "accepted": len(report.accepted), "new": len(report.new),
                "versions": len(report.versions), "ignored": len(report.ignored_unselected)}, 201

    @app.post("/train")
    def train():
        return {"status": backend.worker.request("asked through /train")}, 201

    @app.get("/versions")
    def versions():
        with backend.workspace() as workspace:
            runs = sorted((workspace.root / "predictions").glob("cycle-*"))
            return {"versions": [model_version(r) for r in runs if r.is_dir()]}

    @app.get("/metrics")
    def metrics():
        return {}

    @app.get("/media/<path:name>")
    def media(name: str):
        return flask.send_from_directory(backend.root / MEDIA, name)  # safe_join: never outside it

    @app.errorhandler(SparseLabelError)
    def refused(exc: SparseLabelError):
        # One line, as the CLI prints it. 400: a request we cannot read; 422: answers the import's
        # checks refused (the message names the received file); 500: the workspace is at fault.
        status = (422 if exc.path else 400) if isinstance(exc, AnnotationError) else 500
        return {"error": " ".join(str(exc).split())}, status

    @app.errorhandler(Exception)
    def failed(exc: Exception):
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return {"error": f"{exc.code} {exc.name}"}, exc.code
        log.exception("request failed")
        return {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}, 500

    return app


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 9090,
          ready: Callable[[str], None] = print) -> None:
    """Serve until interrupted; ``ready`` gets the URL once the port is bound (port 0: any free one)."""
    require_flask()
    from werkzeug.serving import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    app = create_app(backend)
    check_port(host, port)
    server = make_server(host, port, app, threaded=True)
    # Bound to every address: name the machine, not 0.0.0.0, in the media URLs of new tasks.
    name = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    url = f"http://{f'[{name}]' if ':' in name else name}:{server.server_port}"
    backend.public_url = backend.public_url or url
    ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def check_port(host: str, port: int) -> None:
    """A port in use as one error line (werkzeug would print two of its own and exit)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SparseLabelError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None


def serve_workspace(workspace: str | Path, host: str = "127.0.0.1", port: int = 9090,
                    label_studio_url: str | None = None, public_url: str | None = None,
                    overrides: list[str] | tuple[str, ...] = ()) -> None:
    """``sparselabel serve``: check the workspace and the extra, then serve until interrupted."""
    require_flask()
    Workspace.open(workspace, list(overrides)).close()  # a bad path or config fails now, in one line
    backend = Backend(Path(workspace), tuple(overrides),
                      studio_url=label_studio_url or os.environ.get("LABEL_STUDIO_URL", ""),
                      studio_key=os.environ.get("LABEL_STUDIO_API_KEY", ""), public_url=public_url or "")

    def ready(url: str) -> None:
        print(f"serving {workspace} as a Label Studio ML backend on {url} (Ctrl-C stops)", flush=True)

    serve(backend, host, port, ready)

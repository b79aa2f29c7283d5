"""Take docs/labelstudio-task.png: a sparselabel image task open in a real Label Studio.

From raw video to the screenshot, as docs/annotating.md tells a user to do it: four
synthetic videos in class folders -> `sparselabel init` -> `sparselabel export --format
labelstudio` -> a fresh Label Studio serving the exported frames as local files (with the
"Local files" source storage) -> one task with a box drawn on it -> a headless browser.

Run from the repository root, with a Python that has playwright and Pillow (no
`playwright install`: the system chromium is driven):

    apt-get install chromium
    python3 -m venv /tmp/pwvenv && /tmp/pwvenv/bin/pip install playwright pillow
    /tmp/pwvenv/bin/python docs/screenshots/labelstudio_task.py [--work /tmp/shot] [--out docs/labelstudio-task.png]

Label Studio: $SPARSELABEL_LABEL_STUDIO, else .venv-labelstudio/bin/label-studio (`make
labelstudio`). sparselabel: $SPARSELABEL_BIN, else .venv/bin/sparselabel. Chromium:
$CHROMIUM, else /usr/bin/chromium. The work folder is deleted and rebuilt; the
screenshot is 1280x800, reduced to 256 colours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD, TOKEN = "docs@sparselabel.invalid", "pass-word-1", "sparselabel-docs-token"


def api(url: str, method: str = "GET", body=None):
    request = urllib.request.Request(url, None if body is None else json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "Authorization": f"Token {TOKEN}"},
                                     method=method)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


def build_tasks(work: Path, sparselabel: str) -> dict:
    """Raw videos in class folders -> workspace -> Label Studio tasks in WORK/tasks. Returns
    the synthetic dataset (its true boxes give the drawn box)."""
    shutil.rmtree(work, ignore_errors=True)
    run = lambda *args: subprocess.run([sparselabel, *args], check=True)  # noqa: E731
    run("synth", "--out", str(work / "synth"), "--videos", "4", "--difficulty", "medium", "--size", "256")
    dataset = json.loads((work / "synth" / "dataset.json").read_text())
    for video in dataset["videos"]:
        folder = work / "raw" / dataset["classes"][video["label"]]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "synth" / video["path"], folder)
    run("init", str(work / "ws"), "--videos", str(work / "raw"), "labels.initial_percent=5")
    run("export", str(work / "ws"), "--format", "labelstudio", "--out", str(work / "tasks"),
        "--url-prefix", "/data/local-files/?d=tasks/")
    return dataset


def true_box(dataset: dict, video_id: str, frame: int):
    """The synthetic ground truth of frame FRAME of VIDEO_ID ("<class>/<id>"): (label, x1, y1, x2, y2)."""
    name = video_id.split("/")[-1]
    for tube in dataset["tubes"]:
        if tube["video"] == name and frame in tube["frames"]:
            return dataset["classes"][tube["label"]], *tube["boxes"][tube["frames"].index(frame)]
    return None


def start_label_studio(work: Path, executable: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "LABEL_STUDIO_USERNAME": USER, "LABEL_STUDIO_PASSWORD": PASSWORD,
           "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(work),
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
           "FRONTEND_SENTRY_DSN": ""}
    template = Path(executable).resolve().parents[1] / "migrated-data"  # `make labelstudio` leaves it
    if (template / "label_studio.sqlite3").is_file():
        shutil.copytree(template, work / "ls-data")  # skips the migrations
    return subprocess.Popen([executable, "start", "--no-browser", "--port", str(port), "--internal-host",
                             "127.0.0.1", "--data-dir", str(work / "ls-data")],
                            env=env, stdout=(work / "label-studio.log").open("w"), stderr=subprocess.STDOUT)


def wait_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("Label Studio exited; see its log in the work folder")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit("Label Studio did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/shot"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "labelstudio-task.png")
    args = parser.parse_args()
    work = args.work.resolve()
    dataset = build_tasks(work, os.environ.get("SPARSELABEL_BIN", str(ROOT / ".venv" / "bin" / "sparselabel")))
    executable = os.environ.get("SPARSELABEL_LABEL_STUDIO", str(ROOT / ".venv-labelstudio" / "bin" / "label-studio"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = start_label_studio(work, executable, port)
    try:
        wait_up(url, process)
        config = (work / "tasks" / "labelstudio" / "image-config.xml").read_text()
        project = api(f"{url}/api/projects", "POST", {"title": "sparselabel cycle 0", "label_config": config})["id"]
        api(f"{url}/api/storages/localfiles", "POST", {"project": project, "title": "tasks",
                                                        "path": str(work / "tasks"), "use_blob_urls": False})
        api(f"{url}/api/projects/{project}/import", "POST",
            json.loads((work / "tasks" / "labelstudio" / "image-tasks.json").read_text()))
        tasks = api(f"{url}/api/tasks?project={project}&page_size=100")["tasks"]
        task = next(t for t in tasks if true_box(dataset, t["data"]["video_id"], t["data"]["frame"]))
        label, x1, y1, x2, y2 = true_box(dataset, task["data"]["video_id"], task["data"]["frame"])
        width, height = task["data"]["width"], task["data"]["height"]
        region = {"id": "box1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                  "original_width": width, "original_height": height, "image_rotation": 0,
                  "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                            "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]}}
        api(f"{url}/api/tasks/{task['id']}/annotations", "POST", {"result": [region], "lead_time": 3.0})

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/user/login")
            page.fill("input[name=email]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda address: "/user/login" not in address)
            page.goto(f"{url}/projects/{project}/data?task={task['id']}")  # the data manager, task open
            page.click(".lsf-outliner-item", timeout=60_000)  # select the box: its handles and details show
            page.wait_for_function("""() => [...document.images].some(  // the frame, fetched as a blob
                i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)""", timeout=60_000)
            page.wait_for_timeout(1500)  # the panels settle
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        with Image.open(args.out) as shot:  # 256 colours: a third of the size, no visible change
            shot.convert("RGB").quantize(256, Image.Quantize.FASTOCTREE).save(args.out, optimize=True)
        print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB): task {task['id']}, "
              f"{task['data']['video_id']} frame {task['data']['frame']}")
    finally:
        process.terminate()
        process.wait(30)


if __name__ == "__main__":
    main()

"""A real Label Studio server for the tests that talk to one (`make labelstudio` installs it in a
venv of its own; without it those tests skip with the command to run).

``label_studio`` (a module-scoped fixture in conftest.py) starts a fresh server with a preset
user and API token; ``http`` calls its REST API.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def wait_until(check, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


LS_TOKEN = "sparselabel-test-token"

def label_studio_executable() -> str:
    """$SPARSELABEL_LABEL_STUDIO, else .venv-labelstudio (`make labelstudio`), else PATH; or skip."""
    given = os.environ.get("SPARSELABEL_LABEL_STUDIO")
    if given:
        if not Path(given).is_file():
            pytest.skip(f"SPARSELABEL_LABEL_STUDIO={given} is not a file")
        return given
    local = ROOT / ".venv-labelstudio" / "bin" / "label-studio"
    found = str(local) if local.is_file() else shutil.which("label-studio")
    if not found:
        pytest.skip("Label Studio is not installed: `make labelstudio` (a separate venv), or set "
                    "SPARSELABEL_LABEL_STUDIO to a label-studio executable")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, token: str | None = LS_TOKEN, raw: bool = False):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=120) as r:
        content = r.read()
    return content if raw else json.loads(content or b"null")


def status_of(url: str, token: str = LS_TOKEN) -> tuple[int, bytes]:
    """(HTTP status, body) of a GET, errors included."""
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def is_up(url: str) -> bool:
    try:
        return http("GET", url, token=None).get("status") in ("UP", "ok")
    except (OSError, ValueError):
        return False


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_label_studio(tmp_path_factory, **settings: str):
    """A fresh Label Studio (own data folder, preset user and legacy token) for this module:
    its URL and a function that waits until it is up (it starts while the workspace is built).
    ``settings``: more environment variables for the server."""
    executable = label_studio_executable()
    folder = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "test@sparselabel.invalid", "LABEL_STUDIO_PASSWORD": "pass-word-1",
           "LABEL_STUDIO_USER_TOKEN": LS_TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "ML_BLOCK_LOCAL_IP": "false",  # the backend runs on 127.0.0.1
           "SSRF_PROTECTION_ENABLED": "false",  # ... and so does the webhook it gets
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
           **settings}
    template = Path(executable).resolve().parents[1] / "migrated-data"  # `make labelstudio` leaves it
    if (template / "label_studio.sqlite3").is_file():
        shutil.copytree(template, folder / "data")  # skips the migrations: seconds instead of a minute
    log = (folder / "label-studio.log").open("w")
    process = subprocess.Popen([executable, "start", "--no-browser", "--port", str(port), "--internal-host",
                                "127.0.0.1", "--data-dir", str(folder / "data")],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> str:
        wait_until(lambda: is_up(f"{url}/health") or process.poll() is not None, 300, "Label Studio to start", 1)
        assert process.poll() is None, (folder / "label-studio.log").read_text()[-3000:]
        return url

    try:
        yield url, ready
    finally:
        stop(process)
        log.close()



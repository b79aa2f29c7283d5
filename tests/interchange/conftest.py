"""Fixtures: one workspace waiting for answers, built once and copied per test (fast)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from ix_tools import copy_workspace, create_workspace, make_dataset, write_predictions

from sparselabel.loop.workspace import Workspace


@pytest.fixture(scope="session")
def template_workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ix")
    create_workspace(root / "ws", make_dataset(root / "tiny")).close()
    return root / "ws"


@pytest.fixture
def ws(template_workspace, tmp_path) -> Workspace:
    workspace = copy_workspace(template_workspace, tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture
def predicted_ws(ws) -> Workspace:
    write_predictions(ws)
    return ws


REPO = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def datumaro() -> str:
    """A Python that has datumaro (the CVAT team's dataset library, not our dependency: it pins
    packages ours must not meet): $SPARSELABEL_DATUMARO_PYTHON, `make datumaro`'s venv, or this
    one if it can import datumaro; else the test skips."""
    given = os.environ.get("SPARSELABEL_DATUMARO_PYTHON")
    if given:
        if not Path(given).is_file():
            pytest.skip(f"SPARSELABEL_DATUMARO_PYTHON={given} is not a file")
        return given
    if (REPO / ".venv-datumaro" / "bin" / "python").is_file():
        return str(REPO / ".venv-datumaro" / "bin" / "python")
    if importlib.util.find_spec("datumaro") is not None:
        return sys.executable
    pytest.skip("datumaro is not installed: `make datumaro`, or set SPARSELABEL_DATUMARO_PYTHON to a Python "
                "that has it")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A fresh Label Studio server: (its URL, a function that waits until it is up)."""
    from ls_server import start_label_studio

    yield from start_label_studio(tmp_path_factory)

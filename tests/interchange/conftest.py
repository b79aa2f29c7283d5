"""Fixtures: one workspace waiting for answers, built once and copied per test (fast)."""

from __future__ import annotations

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

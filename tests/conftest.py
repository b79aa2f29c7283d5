"""Shared fixtures (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_tiny_dataset, shared_path


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "tiny")

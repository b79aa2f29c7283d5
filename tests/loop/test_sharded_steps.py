"""predict, score and the feature cache under torchrun: 2 gloo processes write exactly the files
and the ledger of 1 process."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sparselabel.config import load_config
from sparselabel.loop.workspace import LEDGER_FILE, Workspace

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=2",
        "labels.initial_percent=20", "model.freeze_encoder=true", "model.head=conv", "selection.passes=3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic in every process


def sparselabel(*args: str) -> list[str]:
    return [sys.executable, "-m", "sparselabel", *args]


def torchrun(port: int, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), "-m", "sparselabel", *args],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def files(root: Path) -> dict[str, bytes]:
    """Every file the steps write (features, predictions, scores), by path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in ("features", "predictions", "scores") for p in sorted((root / sub).rglob("*")) if p.is_file()}


def ledger_dump(root: Path) -> list[str]:
    with sqlite3.connect(root / LEDGER_FILE) as db:
        return list(db.iterdump())


@pytest.mark.slow
def test_two_processes_predict_score_and_cache_exactly_as_one(tmp_path, tiny_dataset):
    one = tmp_path / "one"
    Workspace.create(one, load_config(None, [f"dataset.path={tiny_dataset}", *TINY])).close()
    # One trained model for both: training under DDP is checked elsewhere (tests/train/test_trainer.py).
    subprocess.run(sparselabel("train", str(one)), check=True, capture_output=True, env=ENV)
    shutil.rmtree(one / "features")  # the cache is filled again by the steps below, by 1 or 2 processes
    two = tmp_path / "two"
    shutil.copytree(one, two)

    for step in (["predict", "--split", "all"], ["score"]):
        subprocess.run(sparselabel(step[0], str(one), *step[1:]), check=True, capture_output=True, env=ENV)
        torchrun(29541, step[0], str(two), *step[1:])

    a, b = files(one), files(two)
    assert a.keys() == b.keys()
    assert any(k.startswith("features") for k in a) and any(k.startswith("predictions") for k in a)
    assert any(k.startswith("scores") for k in a)
    assert [k for k in a if a[k] != b[k]] == []
    assert ledger_dump(one) == ledger_dump(two)

"""Training memory does not grow with the pool: targets are painted per clip, never per video."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sparselabel.data.synthetic import generate, synth_config

LIMIT_MB = 800  # the process's data segment (heap and anonymous maps), PyTorch included


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (LIMIT_MB << 20, LIMIT_MB << 20))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA caps anonymous maps on Linux only")
def test_training_runs_where_full_resolution_targets_would_not_fit(tmp_path: Path):
    data = generate(tmp_path / "data", num_videos=2, seed=0, config=synth_config("medium", width=192, height=192),
                    repeat=100)
    videos = json.loads((data / "dataset.json").read_text())["videos"]
    full_targets = sum(v["num_frames"] * v["width"] * v["height"] * 4 for v in videos)
    assert len(videos) == 200 and full_targets > 1.5 * (LIMIT_MB << 20)  # ~1.3 GB of float32 maps

    ws = tmp_path / "ws"
    cli = [sys.executable, "-m", "sparselabel"]
    subprocess.run([*cli, "init", str(ws), "--dataset", str(data), "labels.initial_percent=100", "train.steps=2",
                    "model.input_size=[32,32]", "train.batch_size=2", "model.head=conv"], check=True,
                   capture_output=True)
    run = subprocess.run([*cli, "train", str(ws)], preexec_fn=_capped, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-1500:]
    assert (ws / "runs" / "cycle-000" / "model.pt").is_file()

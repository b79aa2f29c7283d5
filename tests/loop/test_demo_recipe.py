"""The demo's shortcuts: a shared cycle-0 model, and fewer steps for warm-started cycles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import make_tiny_dataset

from sparselabel.config import load_config
from sparselabel.demo import DEMO_SETTINGS, share_first_model
from sparselabel.loop.cycle import run_loop, start_loop
from sparselabel.loop.workspace import Workspace
from sparselabel.train.trainer import FINAL, METRICS

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "model.head=conv", "train.batch_size=4", "train.steps=4",
        "labels.initial_percent=10", "selection.passes=2", "selection.budget=5%", "loop.cycles=1"]


def workspace(base: Path, name: str, extra: list[str]) -> Workspace:
    data = base / "data"
    if not data.exists():
        make_tiny_dataset(data, num_videos=3, num_frames=20)
    ws = Workspace.create(base / name, load_config(None, [f"dataset.path={data}", *TINY, *extra]))
    start_loop(ws)
    return ws


def test_a_second_strategy_reuses_the_identical_cycle_0_model(tmp_path: Path) -> None:
    apu = workspace(tmp_path, "apu", ["selection.strategy=apu"])
    run_loop(apu)
    random = workspace(tmp_path, "random", ["selection.strategy=random"])
    assert share_first_model(apu, random)
    own = workspace(tmp_path, "own", ["selection.strategy=random"])
    run_loop(own)  # trains its own cycle 0: the same weights, which is why sharing is exact
    for key, value in torch.load(own.root / "runs/cycle-000" / FINAL, weights_only=True).items():
        assert torch.equal(value, torch.load(random.root / "runs/cycle-000" / FINAL, weights_only=True)[key])
    other = workspace(tmp_path, "other", ["selection.strategy=random", "train.lr=0.5"])
    assert not share_first_model(apu, other)  # other training settings: it trains its own
    assert not share_first_model(apu, random)  # already has one


def test_warm_started_cycles_train_warm_start_steps_at_warm_start_lr(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "warm", ["loop.warm_start=true", "loop.warm_start_steps=2", "train.lr=0.002",
                                      "loop.warm_start_lr=0.0005"])
    run_loop(ws)

    def records(run: str) -> list[dict]:
        return [json.loads(line) for line in (ws.root / "runs" / run / METRICS).read_text().splitlines()]

    assert [r["step"] for r in records("cycle-001")] == [1, 2]
    assert len(records("cycle-000")) == 4
    assert records("cycle-000")[0]["lr"] == pytest.approx(0.002)  # the first step, after a one-step warm-up
    assert max(r["lr"] for r in records("cycle-001")) == pytest.approx(0.0005)


def test_the_demo_refuses_a_folder_of_a_demo_with_other_settings(tmp_path: Path) -> None:
    from sparselabel.demo import _workspace
    from sparselabel.errors import SparseLabelError

    data = tmp_path / "data"
    make_tiny_dataset(data, num_videos=3, num_frames=20)
    settings = [f"dataset.path={data}", *TINY]
    _workspace(tmp_path / "ws", settings).close()
    _workspace(tmp_path / "ws", settings).close()  # the same settings: resumed
    with pytest.raises(SparseLabelError, match="other settings"):
        _workspace(tmp_path / "ws", [*settings, "train.steps=5"])


def test_the_demos_own_recipe_runs_a_cycle_with_its_wider_encoder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_tiny_dataset(data, num_videos=3, num_frames=20)
    shorter = ["train.steps=2", "loop.warm_start_steps=1", "selection.passes=2", "loop.cycles=1"]
    ws = Workspace.create(tmp_path / "ws", load_config(None, [f"dataset.path={data}", *DEMO_SETTINGS, *shorter]))
    start_loop(ws)
    outcome = run_loop(ws)
    assert [r.cycle for r in outcome.records] == [0, 1]
    weights = torch.load(ws.root / "runs/cycle-001" / FINAL, weights_only=True)
    # The encoder's stages as DEMO_SETTINGS widens them (32, 64, 128), reading frames and differences.
    stages = [weights[f"encoder.stage{i}.0.weight" if i == 1 else f"encoder.stage{i}.0.0.weight"] for i in (1, 2, 3)]
    assert [tuple(w.shape[:2]) for w in stages] == [(32, 6), (64, 32), (128, 64)]

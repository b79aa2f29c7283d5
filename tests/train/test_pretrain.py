"""Temporal self-supervised pretraining: labels, determinism, resume, loading into training, loop, CLI."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support import make_tiny_workspace

from sparselabel.cli import main
from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.loop.cycle import run_loop, start_loop
from sparselabel.loop.workspace import Workspace
from sparselabel.train import pretrain as pretrain_module
from sparselabel.train.clips import ClipSpec, clip_frames
from sparselabel.train.pretrain import (
    SPEED_FACTORS,
    PretrainClips,
    order_sample,
    pretrain,
    pretrain_workspace,
    shuffled_order,
    speed_sample,
)
from sparselabel.train.trainer import train_workspace

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=2", "train.steps=2",
        "train.checkpoint_every=2", "pretrain.steps=4", "pretrain.batch_size=2", "labels.initial_percent=10",
        "selection.passes=2", "train.device=cpu"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return make_tiny_workspace(tmp_path_factory.mktemp("pretrain"), TINY, num_videos=3, num_frames=20)


@pytest.fixture
def workspace_root(fresh, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(fresh, root)
    return root


def test_order_labels_say_whether_the_frames_are_in_order():
    spec = ClipSpec(length=4, stride=2)
    labels = []
    for i in range(200):
        num_frames = 20 if i % 2 else 5  # also a video shorter than the clip's span (repeated last frame)
        frames, label = order_sample(num_frames, spec, np.random.default_rng(i))
        in_order = bool(np.all(np.diff(frames) >= 0))
        assert in_order == (label == 0), (frames, label)
        assert sorted(frames) == sorted(clip_frames(int(frames.min()), spec, num_frames))  # same frames
        labels.append(label)
    assert 0.35 < np.mean(labels) < 0.65
    assert shuffled_order(np.array([3, 3, 3, 3]), np.random.default_rng(0)) is None


def test_speed_labels_match_the_strides():
    spec = ClipSpec(length=4, stride=2)
    seen = set()
    for i in range(100):
        frames, label = speed_sample(80, spec, np.random.default_rng(i))
        stride = spec.stride * SPEED_FACTORS[label]
        np.testing.assert_array_equal(frames, clip_frames(int(frames[0]), ClipSpec(4, stride), 80))
        assert frames[-1] < 80
        seen.add(label)
    assert seen == set(range(len(SPEED_FACTORS)))


def test_clips_of_a_real_video_carry_their_frames_and_labels(fresh):
    ws = Workspace.open(fresh)
    videos = [ws.dataset.videos[v] for v in sorted(ws.ledger.videos("pool"))]
    data = PretrainClips(videos, "order", ClipSpec(4, 2, (32, 32)), clips_per_video=2, seed=0)
    item = data[(0, 1)]
    assert item["clip"].shape == (3, 4, 32, 32) and item["clip"].min() >= -1 and item["clip"].max() <= 1
    assert (item["label"] == 0) == bool(np.all(np.diff(item["frames"].numpy()) >= 0))
    assert torch.equal(data[(0, 1)]["clip"], item["clip"])  # a pure function of (seed, epoch, index)


def test_pretraining_is_deterministic_and_resumes_to_the_same_weights(fresh, tmp_path, monkeypatch):
    ws = Workspace.open(fresh, ["pretrain.task=speed", "train.checkpoint_every=2"])
    videos = [ws.dataset.videos[v] for v in sorted(ws.ledger.videos("pool"))]
    first = pretrain(videos, ws.config, "speed", tmp_path / "a")
    second = pretrain(videos, ws.config, "speed", tmp_path / "b")
    a = torch.load(first.encoder, weights_only=True)
    b = torch.load(second.encoder, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) == 4

    class Killed(Exception):
        pass

    def die(name: str) -> None:
        raise Killed(name)

    monkeypatch.setattr(pretrain_module, "fault_point", die)  # killed right after the step-2 checkpoint
    with pytest.raises(Killed):
        pretrain(videos, ws.config, "speed", tmp_path / "c")
    monkeypatch.undo()
    resumed = pretrain(videos, ws.config, "speed", tmp_path / "c")
    c = torch.load(resumed.encoder, weights_only=True)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "c" / "metrics.jsonl").read_text().count("\n") == 4
    again = pretrain(videos, ws.config, "speed", tmp_path / "c")
    assert again.skipped and again.loss == resumed.loss
    other = load_config(None, [*TINY, "pretrain.steps=5"])
    with pytest.raises(SparseLabelError, match="other settings"):
        pretrain(videos, other, "speed", tmp_path / "c")


def test_training_starts_from_the_pretrained_encoder(workspace_root):
    ws = Workspace.open(workspace_root, ["pretrain.task=order", "train.lr=0.0", "train.steps=1"])
    with pytest.raises(SparseLabelError, match="sparselabel pretrain"):
        train_workspace(ws, run_name="needs-pretraining")
    encoder = torch.load(pretrain_workspace(ws).encoder, weights_only=True)
    # lr 0: AdamW moves nothing, so the trained model holds exactly the weights it started from.
    model = torch.load(train_workspace(ws, run_name="from-pretrained").run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(model[f"encoder.{k}"], v) for k, v in encoder.items())
    plain = Workspace.open(workspace_root, ["train.lr=0.0", "train.steps=1"])
    scratch = torch.load(train_workspace(plain, run_name="scratch").run_dir / "model.pt", weights_only=True)
    assert not all(torch.equal(scratch[f"encoder.{k}"], v) for k, v in encoder.items())
    # init_from wins: its weights include an encoder, and it needs no pretraining file.
    speed = Workspace.open(workspace_root, ["pretrain.task=speed", "train.lr=0.0", "train.steps=1"])
    warm = train_workspace(speed, run_name="warm", init_from=workspace_root / "runs" / "scratch" / "model.pt")
    warm_model = torch.load(warm.run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(warm_model[k], scratch[k]) for k in scratch)


def test_a_configured_small_encoder_is_pretrained_as_training_builds_it(workspace_root):
    # The demo's encoder (frame differences as input, other widths) must load into training.
    ws = Workspace.open(workspace_root, ["pretrain.task=order", "model.motion_input=true", "model.widths=[8,8,16]",
                                         "model.head=conv", "train.lr=0.0", "train.steps=1"])
    encoder = torch.load(pretrain_workspace(ws).encoder, weights_only=True)
    assert encoder["stage1.0.weight"].shape == (8, 6, 3, 3, 3)
    model = torch.load(train_workspace(ws, run_name="configured").run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(model[f"encoder.{k}"], v) for k, v in encoder.items())


def test_the_loop_pretrains_once_before_cycle_0(workspace_root):
    ws = Workspace.open(workspace_root, ["pretrain.task=order", "loop.cycles=0", "loop.dense_recovery=false"])
    start_loop(ws)
    outcome = run_loop(ws)
    assert outcome.stopped_because == "ran 0 cycles"
    steps = ws.ledger.db.execute("SELECT step, status, detail FROM cycle_steps WHERE cycle = 0 "
                                 "AND step != 'init' ORDER BY started_at, rowid").fetchall()
    assert [s for s, _, _ in steps][:2] == ["pretrain", "train"]
    assert all(status == "done" for _, status, _ in steps)
    detail = json.loads(steps[0][2])
    assert detail["encoder"] == "runs/pretrain-order/encoder.pt" and detail["steps"] == 4
    assert (workspace_root / detail["encoder"]).exists()


def test_cli_pretrains_and_skips_a_finished_run(workspace_root, capsys):
    with pytest.raises(SystemExit) as done:
        main(["pretrain", "--help"])
    assert done.value.code == 0
    assert "--task" in capsys.readouterr().out
    assert main(["pretrain", str(workspace_root)]) == 1
    assert "--task" in capsys.readouterr().err
    assert main(["pretrain", str(workspace_root), "--task", "speed", "pretrain.steps=2"]) == 0
    out = capsys.readouterr().out
    assert "pretrained the encoder on speed for 2 steps" in out and "accuracy" in out
    assert str(workspace_root / "runs" / "pretrain-speed" / "encoder.pt") in out
    assert main(["pretrain", str(workspace_root), "--task", "speed", "pretrain.steps=2"]) == 0
    assert "already pretrained" in capsys.readouterr().out

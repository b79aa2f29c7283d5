"""Temporal consistency on unannotated frames: the loss, the annotated mask, and training with it on/off."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support import make_tiny_workspace

from sparselabel.loop.workspace import Workspace
from sparselabel.train import trainer as trainer_module
from sparselabel.train.clips import ClipSpec, SparseClipDataset
from sparselabel.train.losses import consistency_loss, ramp
from sparselabel.train.trainer import train_workspace, training_labels

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=2", "train.steps=3",
        "train.checkpoint_every=3", "labels.initial_percent=10", "train.device=cpu"]


def test_zero_for_identical_neighbours_and_positive_otherwise():
    annotated = torch.tensor([[True, False, False, False]])
    same = torch.randn(1, 1, 6, 5).expand(1, 4, 6, 5)
    total, parts = consistency_loss(same, annotated, same.clone())
    # Zero up to rounding: sigmoid's vectorised and scalar CPU paths may differ in the last bit.
    assert float(total) == pytest.approx(0, abs=1e-12)
    assert float(parts["temporal"]) == pytest.approx(0, abs=1e-12)
    moving = torch.randn(1, 4, 6, 5)
    assert consistency_loss(moving, annotated)[0] > 0
    assert consistency_loss(same, annotated, same + 1.0)[1]["flip"] > 0


def test_annotated_frames_are_ignored_and_not_pulled():
    annotated = torch.tensor([[True, True, False, False]])
    logits = torch.randn(1, 4, 6, 5)
    flipped = torch.randn(1, 4, 6, 5)
    base, _ = consistency_loss(logits, annotated, flipped)
    changed, other_flip = logits.clone(), flipped.clone()
    changed[:, 0] += 3.0  # frame 0 only pairs with the annotated frame 1: no term reads it
    other_flip[:, :2] -= 2.0  # the flip term reads unannotated frames only
    assert torch.equal(consistency_loss(changed, annotated, other_flip)[0], base)
    # The pair (1, 2): the ground truth anchors frame 1, so only frame 2 gets a gradient.
    grad_logits = logits.clone().requires_grad_()
    consistency_loss(grad_logits, annotated, flipped.requires_grad_())[0].backward()
    assert grad_logits.grad[:, :2].abs().sum() == 0 and grad_logits.grad[:, 2:].abs().sum() > 0
    assert flipped.grad is None  # the flipped branch is a stop-gradient target


def test_an_average_not_a_sum_and_zero_when_everything_is_annotated():
    annotated = torch.tensor([[False, True, False, False]])
    logits, flipped = torch.randn(1, 4, 6, 5), torch.randn(1, 4, 6, 5)
    one, _ = consistency_loss(logits, annotated, flipped)
    many, _ = consistency_loss(logits.repeat(3, 1, 1, 1), annotated.repeat(3, 1), flipped.repeat(3, 1, 1, 1))
    torch.testing.assert_close(one, many)
    assert 0 < one <= 2
    known = torch.ones(2, 4, dtype=torch.bool)
    attached = torch.randn(2, 4, 6, 5, requires_grad=True)
    total, _ = consistency_loss(attached, known, torch.randn(2, 4, 6, 5))
    total.backward()
    assert total == 0 and attached.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="annotated"):
        consistency_loss(logits, annotated[:, :3])


def test_ramp_is_linear_over_the_first_fraction_of_the_steps():
    assert [ramp(s, 100, 0.3) for s in (0, 15, 30, 99)] == [0.0, 0.5, 1.0, 1.0]
    assert ramp(0, 100, 0.0) == 1.0


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return make_tiny_workspace(tmp_path_factory.mktemp("consistency"), TINY, num_videos=3, num_frames=20)


def test_items_mark_their_annotated_frames(fresh):
    ws = Workspace.open(fresh)
    pool = {v: ws.dataset.videos[v] for v in ws.ledger.videos("pool")}
    labels = training_labels(pool, ws.ledger.annotations(), "mgw", 1.3)
    data = SparseClipDataset(labels, ClipSpec(4, 2, (32, 32)), clips_per_video=4, seed=0)
    for i in range(len(data)):
        item = data[(0, i)]
        lab = data.labels[i % len(data.labels)]
        assert item["annotated"].dtype == torch.bool and item["annotated"].any()
        # annotated frames are exactly those of weight 1 under the mgw loss
        np.testing.assert_array_equal(item["annotated"].numpy(), item["weight"].numpy() == 1.0)
        assert lab.annotated.size


def _run(root: Path, name: str, overrides: list[str]) -> tuple[dict, list[dict]]:
    ws = Workspace.open(root, overrides)
    result = train_workspace(ws, run_name=name)
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    return torch.load(result.run_dir / "model.pt", weights_only=True), metrics


def test_zero_weight_trains_exactly_as_without_the_option(fresh, tmp_path, monkeypatch):
    root = tmp_path / "ws"
    shutil.copytree(fresh, root)
    plain, plain_log = _run(root, "plain", [])
    calls = []
    real = trainer_module.add_consistency
    monkeypatch.setattr(trainer_module, "add_consistency", lambda *a, **k: calls.append(1) or real(*a, **k))
    zero, zero_log = _run(root, "zero", ["train.consistency_weight=0.0", "train.consistency_rampup=0.5"])
    assert not calls, "w = 0 must not run the flipped pass"
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    drop = lambda log: [{k: v for k, v in m.items() if k != "clips_per_s"} for m in log]  # noqa: E731
    assert drop(plain_log) == drop(zero_log) and "consistency" not in zero_log[0]

    on, on_log = _run(root, "on", ["train.consistency_weight=0.5", "train.consistency_rampup=0.0"])
    again, _ = _run(root, "on-again", ["train.consistency_weight=0.5", "train.consistency_rampup=0.0"])
    assert len(calls) == 6
    assert all(torch.equal(on[k], again[k]) for k in on), "consistency training is seeded too"
    assert not all(torch.equal(plain[k], on[k]) for k in plain)
    first = on_log[0]
    assert {"consistency", "consistency_temporal", "consistency_flip"} <= first.keys()
    parts = first["classification"] + first["localization"] + 0.5 * first["consistency"]
    assert first["loss"] == pytest.approx(parts, rel=1e-5)

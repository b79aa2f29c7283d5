"""Ensembles on a workspace: snapshots while training (and after a resume), seed members,
and the loop end to end with ensemble predictions and ensemble uncertainty."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from support import make_tiny_dataset

from sparselabel.config import load_config
from sparselabel.loop.cycle import run_loop, start_loop
from sparselabel.loop.steps import load_scores, scores_dir, train_seed_members
from sparselabel.loop.workspace import POOL, Workspace
from sparselabel.scoring.ensemble import ensemble_members
from sparselabel.scoring.mc_dropout import VideoScores
from sparselabel.train import trainer
from sparselabel.train.trainer import train_workspace

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=4",
        "train.checkpoint_every=2", "labels.initial_percent=10", "loop.dense_recovery=false"]
SNAPSHOTS = ["ensemble.members=3", "ensemble.kind=snapshots", "train.steps=6"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("ens") / "data", num_videos=3, num_frames=12)


def workspace(root: Path, data: Path, *overrides: str) -> Workspace:
    return Workspace.create(root, load_config(None, [f"dataset.path={data}", *TINY, *overrides]))


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Killed(Exception):
    pass


def test_snapshots_are_saved_at_their_steps_also_by_a_resumed_run(data, tmp_path, monkeypatch):
    whole = workspace(tmp_path / "whole", data, *SNAPSHOTS)
    train_workspace(whole)
    run = whole.root / "runs" / "cycle-000"
    assert sorted(p.name for p in run.glob("snapshot-*")) == ["snapshot-4.pt", "snapshot-5.pt", "snapshot-6.pt"]
    assert same(weights(run / "snapshot-6.pt"), weights(run / "model.pt"))
    assert not same(weights(run / "snapshot-4.pt"), weights(run / "snapshot-5.pt"))
    assert ensemble_members(whole, "cycle-000", whole.config) == [run / f"snapshot-{s}.pt" for s in (4, 5, 6)]

    killed = workspace(tmp_path / "killed", data, *SNAPSHOTS)
    checkpoints = []

    def die_at_step_4(name: str) -> None:  # as SIGKILL right after the checkpoint of step 4
        if name == "train:checkpointed":
            checkpoints.append(name)
        if len(checkpoints) == 2:
            raise Killed

    monkeypatch.setattr(trainer, "fault_point", die_at_step_4)
    with pytest.raises(Killed):
        train_workspace(killed)
    again = killed.root / "runs" / "cycle-000"
    assert [p.name for p in again.glob("snapshot-*")] == ["snapshot-4.pt"]
    monkeypatch.setattr(trainer, "fault_point", lambda name: None)
    train_workspace(killed)
    for step in (4, 5, 6):
        assert same(weights(again / f"snapshot-{step}.pt"), weights(run / f"snapshot-{step}.pt"))


def test_one_member_saves_no_snapshots(data, tmp_path):
    ws = workspace(tmp_path / "ws", data)
    train_workspace(ws)
    run = ws.root / "runs" / "cycle-000"
    assert (run / "model.pt").exists() and not list(run.glob("snapshot-*"))


def test_seed_members_are_trained_with_their_own_seeds(data, tmp_path):
    ws = workspace(tmp_path / "ws", data, "ensemble.members=2", "ensemble.kind=seeds", "seed=5")
    train_workspace(ws, run_name="cycle-000")
    assert train_seed_members(ws, 0) == ["cycle-000-seed1"]
    members = [weights(p) for p in ensemble_members(ws, "cycle-000", ws.config)]
    assert len(members) == 2 and not same(members[0], members[1])
    plain = train_workspace(ws, replace(ws.config, seed=6), run_name="seed-6")  # same labels, seed + 1
    assert same(members[1], weights(plain.run_dir / "model.pt"))


@pytest.mark.parametrize("kind", ["snapshots", "seeds"])
def test_the_loop_runs_with_ensemble_predictions_and_ensemble_uncertainty(data, tmp_path, kind):
    ws = workspace(tmp_path / "ws", data, "ensemble.members=2", f"ensemble.kind={kind}",
                   "selection.uncertainty=ensemble", "selection.strategy=apu", "selection.budget=4",
                   "loop.cycles=1")
    start_loop(ws)
    outcome = run_loop(ws)
    assert outcome.stopped_because == "ran 1 cycles" and len(outcome.records) == 2
    assert len(ws.ledger.selections(1)) == 4
    for vid in ws.ledger.videos(POOL):
        done = VideoScores.load(scores_dir(ws, "cycle-000"), vid)
        assert done.method == "ensemble" and done.passes == 2
    assert load_scores(ws, "cycle-000").uncertainty
    runs = sorted(p.name for p in (ws.root / "runs").iterdir())
    if kind == "seeds":
        assert runs == ["cycle-000", "cycle-000-seed1", "cycle-001", "cycle-001-seed1"]
    else:
        assert runs == ["cycle-000", "cycle-001"]
        assert (ws.root / "runs" / "cycle-001" / "snapshot-3.pt").exists()
    assert (ws.root / "predictions" / "cycle-001" / "tube_dets.pkl").exists()


def test_warm_started_cycles_find_the_snapshots_of_their_own_shorter_runs(data, tmp_path):
    # Cycle 1 continues cycle 0 for loop.warm_start_steps: its snapshots sit at the steps of
    # that run, not of train.steps, and prediction and scoring must find them there.
    ws = workspace(tmp_path / "ws", data, "ensemble.members=2", "selection.uncertainty=ensemble",
                   "selection.strategy=apu", "selection.budget=4", "loop.cycles=2", "train.steps=8",
                   "loop.warm_start=true", "loop.warm_start_steps=4")
    start_loop(ws)
    assert run_loop(ws).stopped_because == "ran 2 cycles"
    assert sorted(p.name for p in (ws.root / "runs" / "cycle-001").glob("snapshot-*")) == ["snapshot-3.pt",
                                                                                           "snapshot-4.pt"]
    assert (ws.root / "predictions" / "cycle-002" / "tube_dets.pkl").exists()

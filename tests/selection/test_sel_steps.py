"""score_step and select_step on a real tiny workspace with a (briefly) trained model."""

from __future__ import annotations

import numpy as np
import pytest

from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.loop import steps
from sparselabel.loop.workspace import Workspace
from sparselabel.scoring.mc_dropout import VideoScores
from sparselabel.scoring.predict import prediction_path
from sparselabel.train.runner import DistEnv

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=4",
        "train.checkpoint_every=4", "labels.initial_percent=10", "selection.passes=2", "selection.batch_size=4"]
POOL = ["vid0", "vid1", "vid2"]  # 20 frames each; vid3 is the test split


@pytest.fixture
def workspace(tmp_path, tiny_dataset):
    ws = Workspace.create(tmp_path / "ws", load_config(None, [f"dataset.path={tiny_dataset}", *TINY]))
    steps.train_step(ws)
    yield ws
    ws.close()


def stored(folder, vid) -> np.ndarray:
    s = VideoScores.load(folder, vid)
    return np.stack([s.uncertainty, s.entropy, s.mean_fg])


def test_score_then_select_records_the_cycle_and_resumes(workspace, monkeypatch):
    out = steps.score_step(workspace)
    assert out == workspace.root / "scores" / "cycle-000"
    assert sorted(p.name for p in out.iterdir()) == [f"{v}.npz" for v in POOL]
    first = {v: stored(out, v) for v in POOL}
    for v in POOL:
        assert first[v].shape == (3, 20) and np.isfinite(first[v]).all() and (first[v] >= 0).all()

    # Resumable: scored videos are skipped, a missing one is redone, identically.
    calls = []
    real = steps.score_video
    monkeypatch.setattr(steps, "score_video", lambda model, video, *a, **k: calls.append(video.id) or real(model, video, *a, **k))
    prediction_path(out, "vid1").unlink()
    steps.score_step(workspace)
    assert calls == ["vid1"]
    np.testing.assert_array_equal(stored(out, "vid1"), first["vid1"])
    # Other settings (more passes) are not mistaken for done.
    steps.score_step(workspace, passes=3)
    assert calls == ["vid1", "vid0", "vid1", "vid2"]
    steps.score_step(workspace, passes=2)  # back to the config's T = 2

    ledger = workspace.ledger
    before = len(ledger.selections())
    result = steps.select_step(workspace, "apu", "10%")
    assert (result.cycle, result.strategy, result.resumed) == (1, "apu", False)
    assert len(result.picks) == 6  # 10% of the 60 pool frames
    rows = ledger.selections(1)
    assert [(v, f) for _, _, v, f, _ in rows] == result.picks
    assert {s for _, s, *_ in rows} == {"apu"}
    assert all(s is not None and 0 <= s <= 1 for *_, s in rows)
    annotated = ledger.annotated_frames()
    assert not any(f in annotated[v] for v, f in result.picks)
    expected = steps.select(steps.make_strategy("apu"), steps.load_scores(workspace), annotated, 6).picks
    assert result.picks == expected

    again = steps.select_step(workspace, "apu", "10%")
    assert again.resumed and again.picks == result.picks and again.scores == pytest.approx(result.scores)
    assert len(ledger.selections()) == before + 6
    with pytest.raises(SparseLabelError, match="already has a selection by apu"):
        steps.select_step(workspace, "entropy", "10%")

    # A later cycle never re-picks frames selected earlier and still waiting for answers.
    random = steps.select_step(workspace, "random", 5, cycle=2)
    assert random.scores == [None] * 5 and not set(random.picks) & set(result.picks)
    with pytest.raises(SparseLabelError, match="budget"):
        steps.select_step(workspace, "video", "lots", cycle=3)
    with pytest.raises(SparseLabelError, match="unknown strategy"):
        steps.select_step(workspace, "coreset", 5, cycle=3)


def test_sharded_scoring_matches_one_process(workspace, monkeypatch):
    single = steps.score_step(workspace)
    reference = {v: stored(single, v) for v in POOL}
    for v in POOL:
        prediction_path(single, v).unlink()
    barriers = []
    monkeypatch.setattr(steps, "_barrier", lambda env: barriers.append(env.rank))
    monkeypatch.setattr(steps, "dist_env", lambda: DistEnv(rank=1, world=2))
    steps.score_step(workspace)
    assert sorted(p.stem for p in single.iterdir()) == ["vid1"]  # rank 1 of 2: videos 1::2
    monkeypatch.setattr(steps, "dist_env", lambda: DistEnv(rank=0, world=2))
    steps.score_step(workspace)
    assert barriers == [1, 0]
    for v in POOL:
        np.testing.assert_array_equal(stored(single, v), reference[v])


def test_selecting_without_scores_asks_for_them(workspace):
    with pytest.raises(SparseLabelError, match="sparselabel score"):
        steps.select_step(workspace, "uncertainty", "5%")
    assert workspace.ledger.selections(1) == []
    equi = steps.select_step(workspace, "equidistant", "5%")  # needs no scores
    assert len(equi.picks) == 3 and {v for v, _ in equi.picks} == set(POOL)

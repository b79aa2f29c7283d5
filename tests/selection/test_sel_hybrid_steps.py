"""select_step with strategy hybrid on a real tiny workspace, and score files without features."""

from __future__ import annotations

import numpy as np
import pytest

from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.loop import steps
from sparselabel.loop.workspace import Workspace
from sparselabel.scoring.predict import prediction_path
from sparselabel.selection.hybrid import Hybrid

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=4",
        "train.checkpoint_every=4", "labels.initial_percent=10", "selection.passes=2", "selection.batch_size=4"]
POOL = ["vid0", "vid1", "vid2"]  # 20 frames each; vid3 is the test split


@pytest.fixture
def workspace(tmp_path, tiny_dataset):
    config = load_config(None, [f"dataset.path={tiny_dataset}", *TINY,
                                "selection.strategy=hybrid", "selection.videos=0.34"])
    ws = Workspace.create(tmp_path / "ws", config)
    steps.train_step(ws)
    yield ws
    ws.close()


def strip_features(folder, vid) -> None:
    """Rewrite a score file as older versions wrote it (no features key)."""
    path = prediction_path(folder, vid)
    with np.load(path) as npz:
        old = {k: npz[k] for k in npz.files if k != "features"}
    np.savez(path, **old)


def test_hybrid_from_the_config_selects_in_the_chosen_videos(workspace):
    out = steps.score_step(workspace)
    scores = steps.load_scores(workspace)
    assert set(scores.features) == set(POOL) and all(f.ndim == 1 for f in scores.features.values())

    annotated = workspace.ledger.annotated_frames()
    result = steps.select_step(workspace, budget="10%")  # strategy and videos from the config
    assert (result.cycle, result.strategy, len(result.picks)) == (1, "hybrid", 6)  # 10% of 60 frames
    # videos=0.34 of 3 videos: one cluster, so one video, the one of highest mean free U.
    free_u = {v: np.delete(scores.uncertainty[v], annotated.get(v, [])).mean() for v in POOL}
    assert {v for v, _ in result.picks} == {max(POOL, key=lambda v: (free_u[v], v))}
    rng = np.random.default_rng([workspace.config.seed, 1])
    expected = steps.select(Hybrid(videos=0.34), scores, annotated, 6, seed=rng)
    assert result.picks == expected.picks and result.scores == pytest.approx(expected.scores)

    # Old score files (no features) still load; only a strategy needing features rescores them.
    strip_features(out, "vid1")
    assert steps.load_scores(workspace).features is None
    assert steps._already_scored(out, "vid1", 2, 0.9)
    assert not steps._already_scored(out, "vid1", 2, 0.9, features=True)
    assert steps._already_scored(out, "vid0", 2, 0.9, features=True)
    with pytest.raises(SparseLabelError, match="per-video features"):  # one line on the CLI, no traceback
        steps.select_step(workspace, "hybrid", 4, cycle=2)
    assert len(steps.select_step(workspace, "apu", 4, cycle=2).picks) == 4

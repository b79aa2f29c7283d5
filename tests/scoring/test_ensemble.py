"""Ensembles: snapshot steps, member discovery, averaged predictions and Eq. 1 over members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import ArrayVideo

from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.loop.steps import _already_scored
from sparselabel.models import build_detector
from sparselabel.scoring.ensemble import (
    ensemble_members,
    ensemble_predict_video,
    ensemble_score_video,
)
from sparselabel.scoring.mc_dropout import VideoScores, frame_stats, score_video
from sparselabel.scoring.predict import predict_video
from sparselabel.train.clips import ClipSpec
from sparselabel.train.trainer import snapshot_steps

SPEC = ClipSpec(length=4, stride=2, size=(32, 32), flip=False)
CPU = torch.device("cpu")




def detector(seed: int, dropout: float = 0.5) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_detector("small3d", num_classes=3, pretrained=False, dropout=dropout).eval()


def twin(model: torch.nn.Module, dropout: float = 0.5) -> torch.nn.Module:
    """Another detector with ``model``'s state dict."""
    other = detector(99, dropout)
    other.load_state_dict(model.state_dict())
    return other.eval()


@pytest.fixture(scope="module")
def video() -> ArrayVideo:
    return ArrayVideo("Basketball/v_1", np.random.default_rng(0).integers(0, 255, (11, 40, 48, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def members() -> list[torch.nn.Module]:
    return [detector(1), detector(2), detector(3)]


def test_snapshots_are_evenly_spaced_over_the_last_half_ending_at_the_last_step():
    assert snapshot_steps(300, 3) == [200, 250, 300]
    assert snapshot_steps(300, 2) == [225, 300]
    assert snapshot_steps(6, 3) == [4, 5, 6]
    assert snapshot_steps(300, 1) == []
    with pytest.raises(SparseLabelError, match="too few"):
        snapshot_steps(5, 3)


def test_averaged_prediction_is_the_mean_of_the_members_predictions(members, video):
    mean = ensemble_predict_video(members, video, SPEC, CPU, batch_size=3)
    each = [predict_video(m, video, SPEC, CPU, batch_size=3) for m in members]
    np.testing.assert_allclose(mean.fg, np.mean([p.fg for p in each], axis=0), atol=1e-6)
    np.testing.assert_allclose(mean.class_scores, np.mean([p.class_scores for p in each], axis=0), atol=1e-6)
    assert mean.size == (40, 48) and mean.fg.shape == (11, 32, 32)
    alone = ensemble_predict_video(members[:1], video, SPEC, CPU, batch_size=3)
    assert np.array_equal(alone.fg, each[0].fg)  # one member: exactly predict_video


def mean_prediction_u(prediction, tau: float = 0.9) -> np.ndarray:
    """Eq. 1 of the members' mean probability alone (one 'pass'): what disagreement adds to."""
    logits = torch.logit(torch.from_numpy(prediction.fg).double())[None]
    return frame_stats(logits, tau)[0].numpy()


def test_identical_members_give_the_single_models_u_and_no_disagreement(video):
    model = detector(1)
    scores = ensemble_score_video([model, twin(model)], video, SPEC, CPU, batch_size=3)
    # Eq. 1 of one deterministic pass: score_video with no dropout and T = 1.
    single = score_video(twin(model, dropout=0.0), video, SPEC, CPU, passes=1, batch_size=3)
    np.testing.assert_allclose(scores.uncertainty, single.uncertainty, rtol=1e-6)
    np.testing.assert_allclose(scores.entropy, single.entropy, rtol=1e-6)
    np.testing.assert_allclose(scores.features, single.features, rtol=1e-6)  # member 0's encoder
    mean = ensemble_predict_video([model, model], video, SPEC, CPU, batch_size=3)
    np.testing.assert_allclose(scores.uncertainty - mean_prediction_u(mean), 0.0, atol=1e-5)


def test_members_that_differ_raise_u_above_that_of_their_mean_prediction(members, video):
    scores = ensemble_score_video(members, video, SPEC, CPU, batch_size=3)
    gap = scores.uncertainty - mean_prediction_u(ensemble_predict_video(members, video, SPEC, CPU, batch_size=3))
    assert gap.min() > -1e-5 and gap.max() > 1e-3  # Jensen: >= 0, > 0 where members disagree
    assert scores.passes == 3 and scores.method == "ensemble" and scores.uncertainty.shape == (11,)


def test_ensemble_needs_two_members(members, video):
    with pytest.raises(SparseLabelError, match="at least 2 members"):
        ensemble_score_video(members[:1], video, SPEC, CPU)


def test_ensemble_and_mc_dropout_score_files_are_never_mixed(members, video, tmp_path):
    ensemble_score_video(members[:2], video, SPEC, CPU, batch_size=3).save(tmp_path)
    back = VideoScores.load(tmp_path, video.id)
    assert back.method == "ensemble" and back.passes == 2
    assert _already_scored(tmp_path, video.id, 2, 0.9, method="ensemble")
    assert not _already_scored(tmp_path, video.id, 2, 0.9)  # MC-dropout with T = 2 redoes it
    score_video(members[0], video, SPEC, CPU, passes=2, batch_size=3).save(tmp_path)
    assert VideoScores.load(tmp_path, video.id).method == "mc-dropout"
    assert not _already_scored(tmp_path, video.id, 2, 0.9, method="ensemble")


def test_missing_members_are_a_clear_error(tmp_path):
    run_dir = tmp_path / "runs" / "cycle-002"
    run_dir.mkdir(parents=True)
    torch.save({}, run_dir / "model.pt")
    snapshots = load_config(None, ["ensemble.members=3", "train.steps=300"])
    with pytest.raises(SparseLabelError, match=r"3 of the 3 ensemble members of cycle-002.*snapshot-200\.pt"):
        ensemble_members(tmp_path, "cycle-002", snapshots)
    seeds = load_config(None, ["ensemble.members=3", "ensemble.kind=seeds"])
    with pytest.raises(SparseLabelError, match=r"2 of the 3 .*cycle-002-seed1.*sparselabel loop"):
        ensemble_members(tmp_path, "cycle-002", seeds)
    for m in (1, 2):
        (tmp_path / "runs" / f"cycle-002-seed{m}").mkdir()
        torch.save({}, tmp_path / "runs" / f"cycle-002-seed{m}" / "model.pt")
    assert [p.parent.name for p in ensemble_members(tmp_path, "cycle-002", seeds)] == [
        "cycle-002", "cycle-002-seed1", "cycle-002-seed2"]
    assert ensemble_members(tmp_path, "cycle-002", load_config()) == [run_dir / "model.pt"]

"""Per-video features stored with the frame scores: pooled deep encoder maps, one encode per window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import ArrayVideo

from sparselabel.data.windows import window_batches
from sparselabel.models import build_detector
from sparselabel.scoring.mc_dropout import VideoScores, score_video
from sparselabel.scoring.predict import prediction_path
from sparselabel.train.clips import ClipSpec

SPEC = ClipSpec(length=4, stride=2, size=(32, 32), flip=False)




@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector("small3d", num_classes=2, pretrained=False)


@pytest.fixture(scope="module")
def video():
    return ArrayVideo("v/1", np.random.default_rng(1).integers(0, 255, (13, 24, 28, 3), dtype=np.uint8))


def test_features_are_the_mean_pooled_deep_map_from_one_encode_per_window(model, video, monkeypatch):
    with torch.no_grad():
        model.eval()
        pooled = [model.encode(clips).deep.mean(dim=(2, 3, 4)) for clips, _ in window_batches(video, SPEC, 3)]
    expected = torch.cat(pooled).mean(0).numpy()

    calls = []
    real = type(model).encode
    monkeypatch.setattr(type(model), "encode", lambda self, clips: calls.append(len(clips)) or real(self, clips))
    scores = score_video(model, video, SPEC, torch.device("cpu"), passes=3, batch_size=3, seed=1)
    windows = sum(len(w) for _, w in window_batches(video, SPEC, 3))
    assert sum(calls) == windows  # no second encode pass for the features
    assert scores.features.dtype == np.float32 and scores.features.shape == (model.deep_skip.in_channels,)
    np.testing.assert_allclose(scores.features, expected, rtol=1e-5, atol=1e-6)
    # Deterministic: the encoder holds no dropout, so the MC seed does not touch the features.
    other = score_video(model, video, SPEC, torch.device("cpu"), passes=2, batch_size=3, seed=9)
    np.testing.assert_array_equal(other.features, scores.features)


def test_score_files_carry_features_and_old_files_without_them_still_load(model, video, tmp_path):
    scores = score_video(model, video, SPEC, torch.device("cpu"), passes=2, batch_size=4, seed=0)
    scores.save(tmp_path)
    loaded = VideoScores.load(tmp_path, video.id)
    assert loaded.features.dtype == np.float32
    np.testing.assert_array_equal(loaded.features, scores.features)

    # A file written before features were stored: the same keys, minus features.
    with np.load(prediction_path(tmp_path, video.id)) as npz:
        old = {k: npz[k] for k in npz.files if k != "features"}
    np.savez(prediction_path(tmp_path, video.id), **old)
    legacy = VideoScores.load(tmp_path, video.id)
    assert legacy.features is None
    np.testing.assert_array_equal(legacy.uncertainty, scores.uncertainty)
    legacy.save(tmp_path)  # and saves again without inventing any
    with np.load(prediction_path(tmp_path, video.id)) as npz:
        assert "features" not in npz.files

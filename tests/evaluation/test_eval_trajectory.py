"""Video classes from the kinematics of linked tubes (evaluation.trajectory) and their use in predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import make_tiny_workspace

from sparselabel.evaluation.trajectory import (
    combined_scores,
    fit_trajectory_classifier,
    tube_features,
)


def tube(kind: str, rng: np.random.Generator, n: int = 24, size: float = 10.0) -> np.ndarray:
    """A tube (frame, x1, y1, x2, y2, score) that slides, grows and shrinks, or turns in place."""
    t = np.arange(n, dtype=float)
    cx, cy = 40 + rng.normal(0, 0.3, n), 30 + rng.normal(0, 0.3, n)
    w = h = np.full(n, size)
    if kind == "slide":
        cx = cx + rng.uniform(0.8, 1.5) * t
    elif kind == "pulse":
        w = h = size * np.exp(0.3 * np.sin(2 * np.pi * t / rng.uniform(10, 20)))
    else:  # "turn": an elongated box whose aspect swings
        swing = np.abs(np.cos(rng.uniform(0.1, 0.2) * t))
        w, h = size * (0.6 + swing), size * (1.6 - swing)
    return np.column_stack([t, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, np.full(n, 0.9)])


KINDS = ("slide", "pulse", "turn")


def test_features_do_not_depend_on_where_the_tube_is_or_how_big() -> None:
    rng = np.random.default_rng(0)
    base = tube("slide", rng)
    moved = base.copy()
    moved[:, 1:5] = base[:, 1:5] * 3 + 17
    np.testing.assert_allclose(tube_features(moved), tube_features(base), atol=1e-9)
    assert np.isfinite(tube_features(base[:2])).all()  # shorter than every lag


def test_a_classifier_of_kinematics_tells_motions_apart_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    train = [(tube_features(tube(k, rng)), c) for _ in range(20) for c, k in enumerate(KINDS)]
    x, y = np.stack([f for f, _ in train]), np.array([c for _, c in train])
    classifier = fit_trajectory_classifier(x, y, 3)
    assert classifier == fit_trajectory_classifier(x, y, 3)
    held_out = [(tube(k, rng), c) for _ in range(10) for c, k in enumerate(KINDS)]
    accuracy = np.mean([classifier.proba(tube_features(t)).argmax() == c for t, c in held_out])
    assert accuracy >= 0.9
    # A video's scores: its tubes weighted by length x score, so a long tube outvotes a flicker.
    long_slide, short_pulse = tube("slide", rng, n=30), tube("pulse", rng, n=6)
    assert classifier.video_scores([long_slide, short_pulse]).argmax() == 0
    assert classifier.video_scores([]) is None


def test_combined_scores_are_the_normalised_product() -> None:
    network = np.array([0.6, 0.3, 0.1], dtype=np.float32)
    moving = np.array([0.1, 0.8, 0.1])
    both = combined_scores(network, moving)
    np.testing.assert_allclose(both, network * moving / (network * moving).sum(), rtol=1e-6)
    assert both.dtype == np.float32 and both.argmax() == 1
    assert combined_scores(network, None) is network
    alone = combined_scores(network, moving, with_network=False)  # detection.network_classes=false
    np.testing.assert_allclose(alone, moving, rtol=1e-6)
    assert alone.dtype == np.float32
    assert combined_scores(network, None, with_network=False) is network  # no tube: the network's


@pytest.mark.parametrize("split, network", [("all", True), ("test", True), ("all", False)])
def test_predict_fits_on_the_pool_and_rewrites_every_videos_class_scores(tmp_path, split, network) -> None:
    from sparselabel.loop.steps import current_run, predict_step, train_step
    from sparselabel.loop.workspace import Workspace
    from sparselabel.scoring.predict import VideoPrediction

    # Threshold 0.01: every frame is one box, so every video has a tube and both classes train.
    root = make_tiny_workspace(tmp_path, ["model.input_size=[32,32]", "model.clip_length=4", "model.head=conv",
                                          "train.steps=2", "train.batch_size=2", "labels.initial_percent=20",
                                          "detection.trajectory_classes=true", "detection.threshold=0.01",
                                          "detection.trajectory_min_length=3",
                                          f"detection.network_classes={str(network).lower()}"], num_videos=4)
    ws = Workspace.open(root)
    train_step(ws)
    folder = predict_step(ws, current_run(ws), split=split)
    record = json.loads((folder / "trajectory.json").read_text())
    assert sorted(record["videos"]) == ["vid0", "vid1", "vid2", "vid3"]  # the test split needs the pool's tubes
    first = {}
    for vid, scores in record["videos"].items():
        stored = VideoPrediction.load(folder, vid).class_scores
        expected = combined_scores(np.float32(scores["network"]), np.array(scores["trajectory"]), network)
        np.testing.assert_allclose(stored, expected, rtol=1e-6)
        first[vid] = stored
    predict_step(ws, current_run(ws), split=split)  # again: from fresh maps, the same files
    for vid, scores in first.items():
        np.testing.assert_array_equal(VideoPrediction.load(folder, vid).class_scores, scores)
    ws.close()

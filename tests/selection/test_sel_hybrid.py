"""Hybrid selection: videos by k-means diversity and mean U, then APU frames inside them."""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pytest

from sparselabel.selection import FrameScores, apu_select, make_strategy, select
from sparselabel.selection.base import check_selection
from sparselabel.selection.hybrid import Hybrid, kmeans, l2_normalised

GROUPS = 3
PER_GROUP = 4
LEADERS = {"g0v2", "g1v0", "g2v3"}  # the most uncertain video of each group


def clustered_pool(frames: int = 10, seed: int = 0) -> FrameScores:
    """Three obvious clusters of video features (directions e0, e1, e2, lengths varying),
    ids interleaved so that no cluster is a run of consecutive ids."""
    rng = np.random.default_rng(seed)
    num_frames, uncertainty, features = {}, {}, {}
    for g in range(GROUPS):
        for k in range(PER_GROUP):
            vid = f"g{g}v{k}"
            direction = np.zeros(8)
            direction[g] = 1.0
            features[vid] = rng.uniform(0.5, 20.0) * direction + rng.normal(0, 0.01, 8)
            uncertainty[vid] = rng.uniform(0.0, 0.5, frames) + (0.4 if vid in LEADERS else 0.0)
            num_frames[vid] = frames
    return FrameScores(num_frames, uncertainty=uncertainty, features=features)


def random_pool(rng: np.random.Generator) -> tuple[FrameScores, dict]:
    lengths = {f"video{k}": int(rng.integers(0, 30)) for k in range(int(rng.integers(1, 9)))}
    scores = FrameScores(lengths,
                         uncertainty={v: rng.random(n).round(1) for v, n in lengths.items()},
                         features={v: rng.normal(size=4).round(0) for v in lengths})  # rounded: duplicates
    annotated = {v: rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False).tolist()
                 for v, n in lengths.items() if rng.random() < 0.6}
    return scores, annotated


def picked_videos(picks) -> set[str]:
    return {v for v, _ in picks}


def test_one_video_per_cluster_the_most_uncertain_and_picks_only_from_them():
    scores = clustered_pool()
    strategy = Hybrid(videos=0.25)  # 0.25 * 12 = 3 videos
    chosen = strategy.choose_videos(scores, {}, 6, np.random.default_rng(0))
    assert set(chosen) == LEADERS
    selection = select(strategy, scores, {}, 6, seed=0)
    assert len(selection.picks) == 6 and picked_videos(selection.picks) <= LEADERS
    # APU over the chosen videos only, U' normalised over the whole pool: plain APU scores.
    expected = astuple(apu_select(scores.require("uncertainty"), {}, 6, only=LEADERS))
    assert (selection.picks, selection.scores) == (list(expected[0]), list(expected[1]))


def test_clusters_are_found_for_any_seed_and_selection_is_reproducible():
    scores = clustered_pool(seed=3)
    annotated = {"g0v0": [1, 2], "g1v1": list(range(10))}  # g1v1 has no free frame left
    for seed in range(5):
        a = select("hybrid", scores, annotated, 9, seed=seed, videos=0.25)
        b = select("hybrid", scores, annotated, 9, seed=seed, videos=0.25)
        assert a == b
        assert picked_videos(a.picks) <= LEADERS


def test_number_of_videos_is_the_rounded_fraction_of_videos_with_free_frames():
    scores = clustered_pool()
    full = {"g0v0": range(10), "g0v1": range(10)}  # 10 videos left with free frames
    for fraction, n in [(0.0, 1), (0.1, 1), (0.25, 3), (0.45, 5), (0.5, 5), (1.0, 10)]:
        chosen = Hybrid(videos=fraction).choose_videos(scores, full, 1, np.random.default_rng(0))
        assert len(chosen) == n, fraction  # 0.25 * 10 = 2.5 rounds half up to 3
        assert not set(chosen) & set(full)


def test_falls_back_to_further_videos_by_mean_uncertainty_when_chosen_are_too_small():
    scores = clustered_pool(frames=5)
    u = scores.require("uncertainty")
    by_mean = sorted(u, key=lambda v: (-u[v].mean(), v))
    # One video (videos=0): the most uncertain overall; 12 frames need two more videos.
    selection = select("hybrid", scores, {}, 12, seed=1, videos=0.0)
    assert picked_videos(selection.picks) == set(by_mean[:3])
    assert len(selection.picks) == 12
    # Budget beyond the pool: every free frame, as every strategy does.
    annotated = {"g0v0": [0, 4]}
    everything = select("hybrid", scores, annotated, 1000, seed=1, videos=0.5)
    assert len(everything.picks) == scores.total_frames - 2


def test_contract_and_determinism_on_random_pools():
    rng = np.random.default_rng(7)
    for _ in range(40):
        scores, annotated = random_pool(rng)
        budget = int(rng.integers(0, scores.total_frames + 3))
        strategy = make_strategy("hybrid", videos=float(rng.uniform(0, 1)), lam=0.5, window=4)
        first = strategy.query_scored(scores, annotated, budget, np.random.default_rng(5))
        check_selection(first.picks, scores, annotated, budget)
        assert first.scores is not None and len(first.scores) == len(first.picks)
        again = strategy.query_scored(scores, annotated, budget, np.random.default_rng(5))
        assert again == first


def test_needs_features_and_says_how_to_get_them():
    scores = clustered_pool()
    without = FrameScores(scores.num_frames, uncertainty=scores.uncertainty)
    with pytest.raises(ValueError, match="per-video features.*sparselabel score"):
        select("hybrid", without, {}, 3)
    assert make_strategy("hybrid").needs == ("uncertainty", "features")
    with pytest.raises(ValueError, match="fraction"):
        make_strategy("hybrid", videos=1.5)


def test_frame_scores_check_features():
    with pytest.raises(ValueError, match="differ"):
        FrameScores({"a": 3}, features={"b": np.zeros(4)})
    with pytest.raises(ValueError, match="one length"):
        FrameScores({"a": 3, "b": 2}, features={"a": np.zeros(4), "b": np.zeros(5)})
    with pytest.raises(ValueError, match="one length"):
        FrameScores({"a": 3}, features={"a": np.zeros((2, 2))})


def test_kmeans_keeps_every_cluster_and_caps_at_distinct_points():
    rng = np.random.default_rng(0)
    points = l2_normalised(rng.normal(size=(30, 5)))
    labels = kmeans(points, 7, np.random.default_rng(1))
    assert sorted(set(labels.tolist())) == list(range(7))
    np.testing.assert_array_equal(labels, kmeans(points, 7, np.random.default_rng(1)))
    duplicates = np.repeat(np.eye(3), 4, axis=0)  # 3 distinct points, 12 rows
    labels = kmeans(duplicates, 5, np.random.default_rng(2))
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert all(len(set(labels[4 * g : 4 * g + 4].tolist())) == 1 for g in range(3))
    zero = l2_normalised(np.zeros((2, 3)))
    assert np.array_equal(zero, np.zeros((2, 3)))


def test_apu_restricted_to_videos():
    u = {"a": np.array([0.1, 0.9, 0.2]), "b": np.array([1.0, 0.0, 0.5])}
    picks, values = astuple(apu_select(u, {}, 2, only=["a"]))
    assert {v for v, _ in picks} == {"a"}
    assert picks[0] == ("a", 1) and values[0] == pytest.approx(0.5 * 0.9 + 0.5)  # U' over the pool
    assert apu_select(u, {}, 4, only=["a", "b"]) == apu_select(u, {}, 4)
    with pytest.raises(ValueError, match="not in the pool"):
        apu_select(u, {}, 1, only=["c"])
    with pytest.raises(ValueError, match="local"):
        apu_select(u, {}, 1, local=True, only=["a"])

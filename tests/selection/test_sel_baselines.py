"""Every strategy's contract, and the rules of each baseline on hand-made pools."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselabel.errors import SparseLabelError
from sparselabel.selection import (
    STRATEGIES,
    FrameScores,
    apu_select,
    make_strategy,
    parse_budget,
    select,
)
from sparselabel.selection.baselines import gap_midpoints, proportional_shares

NAMES = ["random", "equidistant", "uncertainty", "entropy", "video", "apu", "apu-local"]


def random_scores(rng: np.random.Generator, num_videos: int = 6) -> FrameScores:
    lengths = {f"video{k}": int(rng.integers(0, 40)) for k in range(num_videos)}  # 0: an empty video
    arrays = {name: {v: rng.random(n).round(1) for v, n in lengths.items()}  # rounded: ties
              for name in ("uncertainty", "entropy", "mean_fg")}
    return FrameScores(lengths, **arrays)


def random_annotated(rng: np.random.Generator, scores: FrameScores) -> dict:
    annotated = {}
    for k, (v, n) in enumerate(scores.num_frames.items()):
        if k % 3 == 0:
            continue  # missing from the mapping: no annotations
        annotated[v] = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False).tolist()
    return annotated


def test_registry_has_every_strategy_of_the_paper():
    assert sorted(STRATEGIES) == sorted([*NAMES, "hybrid"])  # hybrid: beyond the paper (test_sel_hybrid)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("coreset")


@pytest.mark.parametrize("name", NAMES)
def test_contract_no_annotated_no_duplicates_budget_respected_deterministic(name):
    rng = np.random.default_rng(11)
    for _ in range(25):
        scores = random_scores(rng)
        annotated = random_annotated(rng, scores)
        free = scores.total_frames - sum(len(set(a)) for a in annotated.values())
        budget = int(rng.integers(0, scores.total_frames + 3))
        first = select(name, scores, annotated, budget, seed=5)  # select() checks the contract too
        assert len(first.picks) == min(budget, free)
        assert len(set(first.picks)) == len(first.picks)
        for v, f in first.picks:
            assert f not in set(annotated.get(v, ())) and 0 <= f < scores.num_frames[v]
        assert first.scores is None or len(first.scores) == len(first.picks)
        again = select(name, scores, annotated, budget, seed=5)
        assert again.picks == first.picks and again.scores == first.scores


def test_query_contract_and_rng_matters_only_for_random():
    scores = random_scores(np.random.default_rng(2))
    picks = {}
    for name in NAMES:
        strategy = make_strategy(name)
        a = strategy.query(scores, {}, 20, np.random.default_rng(0))
        b = strategy.query(scores, {}, 20, np.random.default_rng(1))
        picks[name] = (a, b)
        assert (a != b) == (name == "random"), name


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(NAMES))
def test_contract_holds_on_random_pools(seed, name):
    rng = np.random.default_rng(seed)
    scores = random_scores(rng, num_videos=int(rng.integers(1, 5)))
    annotated = random_annotated(rng, scores)
    select(name, scores, annotated, int(rng.integers(0, scores.total_frames + 3)), seed=seed)


def test_strategies_that_need_scores_say_so():
    pool = FrameScores({"a": 10})
    with pytest.raises(ValueError, match="sparselabel score"):
        select("apu", pool, {}, 3)
    assert len(select("random", pool, {}, 3).picks) == 3
    assert len(select("equidistant", pool, {}, 3).picks) == 3


def test_frame_scores_check_lengths():
    with pytest.raises(ValueError, match="shape"):
        FrameScores({"a": 3}, uncertainty={"a": np.zeros(4)})
    with pytest.raises(ValueError, match="differ"):
        FrameScores({"a": 3}, uncertainty={"b": np.zeros(3)})


# --- the rules of each baseline -----------------------------------------------------------


def test_uncertainty_takes_the_top_frames_with_ties_by_video_then_frame():
    scores = FrameScores({"b": 4, "a": 3}, uncertainty={"b": np.array([0.9, 0.1, 0.9, 0.5]),
                                                        "a": np.array([0.9, 0.2, 0.3])})
    chosen = select("uncertainty", scores, {"a": [0]}, 3)
    assert chosen.picks == [("b", 0), ("b", 2), ("b", 3)]
    assert chosen.scores == [0.9, 0.9, 0.5]


def test_entropy_blocks_a_window_around_picks_and_annotated_frames():
    entropy = np.array([0.0, 0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.05])
    scores = FrameScores({"v": 12}, entropy={"v": entropy})
    # d = 2: 4 is best; 5, 6 (and 2, 3) are blocked; next 7 (0.6); then 8, 9 blocked, 10 (0.35).
    assert select("entropy", scores, {}, 3, window=2).picks == [("v", 4), ("v", 7), ("v", 10)]
    # Annotated frame 0 blocks 1 and 2 as well; the budget is filled by the best blocked frames.
    chosen = select("entropy", scores, {"v": [0]}, 5, window=2)
    assert chosen.picks == [("v", 4), ("v", 7), ("v", 10), ("v", 5), ("v", 6)]
    assert chosen.scores == [0.9, 0.6, 0.35, 0.8, 0.7]
    # Without the annotated-frame filter, and the default window from the config is 4.
    assert select("entropy", scores, {"v": [4]}, 2, window=2, exclude_annotated=False).picks == [("v", 5), ("v", 8)]
    assert make_strategy("entropy").window == 4


def test_video_level_annotates_whole_videos_most_uncertain_first():
    u = {"a": np.array([0.1, 0.1, 0.1]), "b": np.array([0.9, 0.2, 0.8, 0.5]), "c": np.array([0.5, 0.6])}
    scores = FrameScores({v: len(x) for v, x in u.items()}, uncertainty=u)
    # Mean U of the unannotated frames: b (0.2, 0.8, 0.5) = 0.5, c = 0.55, a = 0.1.
    chosen = select("video", scores, {"b": [0]}, 6)
    # c whole (2), b whole (3), then a partial: its highest U, ties by frame -> frame 0.
    assert chosen.picks == [("c", 0), ("c", 1), ("b", 1), ("b", 2), ("b", 3), ("a", 0)]
    assert chosen.scores == pytest.approx([0.55, 0.55, 0.5, 0.5, 0.5, 0.1])
    # The partial video gives its most uncertain frames first.
    assert select("video", scores, {"b": [0]}, 4).picks[2:] == [("b", 2), ("b", 3)]


def test_equidistant_splits_the_largest_gaps():
    free = np.ones(11, dtype=bool)
    assert gap_midpoints(free, 3) == [5, 2, 8]  # (-1, 11) -> 5, then (-1, 5) -> 2, (5, 11) -> 8
    free[[0, 10]] = False
    assert gap_midpoints(free, 2) == [5, 2]
    free = np.ones(4, dtype=bool)
    assert sorted(gap_midpoints(free, 4)) == [0, 1, 2, 3]


def test_equidistant_shares_the_budget_by_video_length():
    assert proportional_shares({"a": 100, "b": 50, "c": 50}, {"a": 100, "b": 50, "c": 50}, 8) == {"a": 4, "b": 2, "c": 2}
    # 7 * (1/2, 1/4, 1/4) = 3.5, 1.75, 1.75 -> 3, 1, 1 and the 2 left by largest remainder (b, c).
    assert proportional_shares({"a": 100, "b": 50, "c": 50}, {"a": 100, "b": 50, "c": 50}, 7) == {"a": 3, "b": 2, "c": 2}
    # A video that cannot take its share gives the rest back to the others.
    assert proportional_shares({"a": 100, "b": 100}, {"a": 1, "b": 100}, 10) == {"a": 1, "b": 9}
    scores = FrameScores({"long": 40, "short": 10})
    picks = select("equidistant", scores, {"long": [0]}, 5).picks
    assert picks == [("long", 20), ("long", 10), ("long", 30), ("long", 5), ("short", 4)]


def test_random_is_uniform_over_the_pool_and_seeded():
    scores = FrameScores({"a": 50, "b": 50})
    a = select("random", scores, {}, 30, seed=1).picks
    assert a == select("random", scores, {}, 30, seed=1).picks != select("random", scores, {}, 30, seed=2).picks
    assert 5 < sum(v == "a" for v, _ in a) < 25


def test_apu_strategies_wrap_apu_select_with_their_scores():
    rng = np.random.default_rng(4)
    scores = random_scores(rng)
    annotated = random_annotated(rng, scores)
    for local in (False, True):
        name = "apu-local" if local else "apu"
        chosen = select(name, scores, annotated, 12, lam=0.3, sigma=2.0)
        assert chosen == apu_select(scores.uncertainty, annotated, 12, lam=0.3, sigma=2.0, local=local)
        assert all(0 <= s <= 1 for s in chosen.scores)


# --- budgets --------------------------------------------------------------------------------


def test_one_rounding_rule_for_counts_halves_up():
    from sparselabel.config import load_config
    from sparselabel.loop.workspace import initial_picks
    from sparselabel.selection.budget import percent_of, round_half_up

    assert [percent_of(10, n) for n in (35, 45, 44)] == [4, 5, 4]  # 3.5 -> 4, 4.5 -> 5 (round() gives 4)
    assert percent_of(5, 50) == 3 and round_half_up(0.5 * 7) == 4 and round_half_up(2.4999) == 2
    video = type("V", (), {"num_frames": 45})()
    config = load_config(None, ["labels.initial_percent=10"])
    assert len(initial_picks({"v": video}, config)) == 5  # initial labels count the same way as budgets


def test_parse_budget_percent_of_all_pool_frames_or_a_count():
    assert parse_budget("5%", 3000) == 150
    assert parse_budget("2.5%", 101) == 3  # 2.525 -> 3 (half up)
    assert parse_budget("0.5%", 100) == 1  # 0.5 -> 1
    assert parse_budget(" 10 % ", 40) == 4
    assert parse_budget("120", 40) == 120
    assert parse_budget(7, 40) == 7
    for bad in ("-3", "abc", "101%", "%", "1e400%", "-1%", "nan%"):
        with pytest.raises(SparseLabelError, match="budget"):
            parse_budget(bad, 100)

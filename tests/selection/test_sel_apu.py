"""APU selection: the lazy heap against full re-scoring, a hand-computed pool, local selection."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparselabel.selection import apu_select


def brute_force_apu(uncertainty, annotated, budget, lam=0.5, sigma=1.3):
    """Eqs. 2-3 re-scored from scratch over the whole pool after every pick."""
    ids = sorted(uncertainty)
    u = {v: np.asarray(uncertainty[v], dtype=np.float64) for v in ids}
    marks = {v: set(annotated.get(v, ())) for v in ids}
    free_values = [u[v][i] for v in ids for i in range(len(u[v])) if i not in marks[v]]
    lo, hi = (min(free_values), max(free_values)) if free_values else (0.0, 0.0)
    norm = {v: (u[v] - lo) / (hi - lo) if hi > lo else np.zeros(len(u[v])) for v in ids}
    picks = []
    while len(picks) < budget:
        best = None
        for v in ids:
            n = len(u[v])
            if marks[v]:
                dist = np.array([min(abs(i - a) for a in marks[v]) for i in range(n)], dtype=np.float64)
                d = 1.0 - np.exp(-0.5 * (dist / sigma) ** 2)
            else:
                d = np.ones(n)
            s = lam * norm[v] + (1 - lam) * d
            for i in range(n):
                if i not in marks[v] and (best is None or (-s[i], v, i) < best):
                    best = (-s[i], v, i)
        if best is None:
            break
        picks.append((best[1], best[2]))
        marks[best[1]].add(best[2])
    return picks


@st.composite
def pools(draw):
    num_videos = draw(st.integers(1, 5))
    tied = draw(st.booleans())  # few distinct values: many exact ties
    values = st.sampled_from([0.0, 0.5, 1.0, 2.0]) if tied else st.floats(0, 5, allow_nan=False)
    uncertainty, annotated = {}, {}
    for k in range(num_videos):
        vid = f"v{draw(st.integers(0, 20)):02d}-{k}"
        n = draw(st.integers(0, 25))  # 0: an empty video
        uncertainty[vid] = np.array(draw(st.lists(values, min_size=n, max_size=n)))
        kind = draw(st.sampled_from(["none", "missing", "some", "all"]))
        if kind == "some" and n:
            annotated[vid] = draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n))
        elif kind == "all":
            annotated[vid] = list(range(n))
        elif kind == "none":
            annotated[vid] = []
    total = sum(len(u) for u in uncertainty.values())
    budget = draw(st.integers(0, total + 5))
    lam = draw(st.sampled_from([0.0, 0.3, 0.5, 1.0]))
    sigma = draw(st.sampled_from([0.5, 1.3, 3.0, 40.0]))
    return uncertainty, annotated, budget, lam, sigma


@settings(max_examples=300, deadline=None)
@given(pools())
def test_lazy_heap_equals_full_rescoring(pool):
    uncertainty, annotated, budget, lam, sigma = pool
    assert apu_select(uncertainty, annotated, budget, lam, sigma).picks == brute_force_apu(
        uncertainty, annotated, budget, lam, sigma)


def test_lazy_heap_equals_full_rescoring_on_larger_seeded_pools():
    rng = np.random.default_rng(0)
    for trial in range(40):
        uncertainty = {f"vid{k}": rng.gamma(2.0, size=rng.integers(20, 80)).round(trial % 3)
                       for k in range(rng.integers(2, 8))}
        annotated = {v: rng.choice(len(u), size=rng.integers(0, 4), replace=False) for v, u in uncertainty.items()}
        budget = int(rng.integers(1, 40))
        assert apu_select(uncertainty, annotated, budget).picks == brute_force_apu(uncertainty, annotated, budget)


def proximity(d, sigma=1.3):
    return 1 - math.exp(-0.5 * (d / sigma) ** 2)


def test_hand_computed_pool():
    # Unannotated U: a -> 4, 2, 4, 0 and b -> 1, 3, so min 0, max 4: U'_a = [., 1, .5, 1, 0], U'_b = [.25, .75].
    uncertainty = {"a": np.array([0.0, 4.0, 2.0, 4.0, 0.0]), "b": np.array([1.0, 3.0])}
    annotated = {"a": [0]}
    picks, scores = astuple(apu_select(uncertainty, annotated, 10))
    # a3: .5 * 1 + .5 * D(3) beats b1 (no annotation, D = 1): .5 * .75 + .5 = .875.
    # After a3, a1 and a2 are both 1 frame from a mark; after b1, b0 is 1 from b1.
    assert picks == [("a", 3), ("b", 1), ("a", 1), ("a", 2), ("b", 0), ("a", 4)]
    expected = [0.5 + 0.5 * proximity(3), 0.875, 0.5 + 0.5 * proximity(1), 0.25 + 0.5 * proximity(1),
                0.125 + 0.5 * proximity(1), 0.5 * proximity(1)]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_hand_computed_local_selection():
    uncertainty = {"a": np.array([0.0, 4.0, 2.0, 4.0, 0.0]), "b": np.array([1.0, 3.0])}
    # floor(3 / 2) = 1 each; the remaining 1 goes to a, whose best initial S (.965) beats b's (.875).
    assert apu_select(uncertainty, {"a": [0]}, 3, local=True).picks == [("a", 3), ("a", 1), ("b", 1)]
    # Budget 5: 2 each plus 1 to a; b has only 2 frames, so it gives both.
    assert apu_select(uncertainty, {"a": [0]}, 5, local=True).picks == [("a", 3), ("a", 1), ("a", 2), ("b", 1), ("b", 0)]


def test_local_shares_fall_back_to_other_videos_when_one_runs_out():
    uncertainty = {"a": np.zeros(2), "b": np.zeros(10), "c": np.zeros(10)}
    picks = apu_select(uncertainty, {"a": [0]}, 9, local=True).picks
    counts = {v: sum(1 for p, _ in picks if p == v) for v in uncertainty}
    # 3 each asked; a has 1 free frame, so 2 are shared again: b and c get 1 each (tie by id).
    assert counts == {"a": 1, "b": 4, "c": 4}
    assert len(set(picks)) == 9


def test_local_ties_between_best_scores_go_to_the_smaller_video_id():
    uncertainty = {"b": np.ones(5), "a": np.ones(5), "c": np.ones(5)}
    picks = apu_select(uncertainty, {}, 4, local=True).picks
    assert [v for v, _ in picks] == ["a", "a", "b", "c"]


def test_local_selection_within_a_video_follows_the_global_rule():
    rng = np.random.default_rng(3)
    u = rng.random(30)
    # One video: local selection is global selection.
    assert apu_select({"x": u}, {"x": [4]}, 7, local=True).picks == apu_select({"x": u}, {"x": [4]}, 7).picks


def test_all_equal_uncertainty_normalises_to_zero_and_picks_spread_out():
    picks = apu_select({"v": np.full(9, 3.0)}, {}, 3).picks
    # D = 1 everywhere: ties -> frame 0; then the farthest frames from the marks.
    assert picks == [("v", 0), ("v", 8), ("v", 4)]


def test_budget_larger_than_the_pool_gives_every_unannotated_frame():
    uncertainty = {"a": np.arange(4.0), "b": np.arange(3.0), "c": np.arange(2.0)}
    picks = apu_select(uncertainty, {"a": [1], "c": [0, 1]}, 100).picks
    assert sorted(picks) == [("a", 0), ("a", 2), ("a", 3), ("b", 0), ("b", 1), ("b", 2)]
    assert apu_select(uncertainty, {"a": [1]}, 0).picks == []


def test_annotated_frames_never_come_back_and_bad_input_is_refused():
    uncertainty = {"a": np.arange(6.0)}
    assert ("a", 5) not in apu_select(uncertainty, {"a": [5]}, 5).picks
    with pytest.raises(ValueError, match="outside"):
        apu_select(uncertainty, {"a": [6]}, 1)
    with pytest.raises(ValueError, match="NaN"):
        apu_select({"a": np.array([0.0, np.nan])}, {}, 1)
    with pytest.raises(ValueError, match="lam"):
        apu_select(uncertainty, {}, 1, lam=1.5)
    with pytest.raises(ValueError, match="budget"):
        apu_select(uncertainty, {}, -1)


def test_banded_sort_gives_the_exact_order_of_one_full_sort_with_ties_across_bands():
    from sparselabel.selection.apu import _best_first

    rng = np.random.default_rng(0)
    neg = rng.integers(-5, 0, size=500).astype(np.float64)  # many ties
    vid, frame = rng.integers(0, 9, size=500), rng.integers(0, 50, size=500)
    order = np.lexsort((frame, vid, neg))
    want = list(zip(neg[order].tolist(), vid[order].tolist(), frame[order].tolist(), strict=True))
    for band in (1, 7, 64, 499, 1000):
        assert list(_best_first(neg, vid, frame, band=band)) == want

"""video_map: hand-computed cases for both conventions, properties, loop reference."""

import copy
import math

import eval_reference as ref
import numpy as np
import pytest

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation import video_map

CONVENTIONS = ("act", "voc")
BOX = (0, 0, 9, 9)


def tube(first, last, box=BOX, score=1.0):
    return np.array([[f, *box, score] for f in range(first, last + 1)], dtype=float)


def gt_tube(first, last, box=BOX):
    return tube(first, last, box)[:, :5]


def test_one_frame_temporal_overlap():
    gt = {"v": {0: [gt_tube(1, 5)]}}
    dets = {0: [("v", 0.9, tube(5, 9))]}
    # act: tIoU 1/9 = .111 -> TP at 0.1; voc: 0 -> FP
    assert video_map(gt, dets, iou=0.1, convention="act")[0] == 1.0
    assert video_map(gt, dets, iou=0.1, convention="voc")[0] == 0.0


def test_hand_case_three_tubes_two_gt():
    gt = {"a": {0: [gt_tube(1, 10)]}, "b": {0: [gt_tube(1, 10)]}}
    dets = {0: [("a", 0.9, tube(1, 10)), ("c", 0.8, tube(1, 10)), ("b", 0.7, tube(1, 10))]}
    # TP, FP (video c has no ground truth), TP
    assert video_map(gt, dets, convention="act")[0] == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert video_map(gt, dets, convention="voc")[0] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_best_ground_truth_already_matched():
    # two GT tubes of class 0 in video v: A over frames 1-10, B over frames 1-8.
    # The second detection (frames 1-10) overlaps A fully (1.0) and B by 8/10 (act) / 7/9 (voc).
    gt = {"v": {0: [gt_tube(1, 10), gt_tube(1, 8)]}}
    dets = {0: [("v", 0.9, tube(1, 10)), ("v", 0.8, tube(1, 10))]}
    assert video_map(gt, dets, iou=0.5, convention="act") == (1.0, {0: 1.0})
    assert video_map(gt, dets, iou=0.5, convention="voc")[0] == pytest.approx(0.5)


def test_plus_one_spatial_half():
    gt = {"v": {0: [gt_tube(1, 4)]}}
    dets = {0: [("v", 0.9, tube(1, 4, box=(0, 0, 9, 4)))]}
    assert video_map(gt, dets, iou=0.5, convention="act")[0] == 1.0
    assert video_map(gt, dets, iou=0.5, convention="voc")[0] == 0.0


def test_classes_perfect_missing_and_empty():
    gt = {"a": {0: [gt_tube(1, 5)]}, "b": {1: [gt_tube(3, 9)], 2: [gt_tube(1, 2)]}}
    dets = {0: [("a", 0.3, tube(1, 5))], 1: [("b", 0.2, tube(3, 9))], 5: [("a", 1.0, tube(1, 5))]}
    for conv in CONVENTIONS:
        m, per = video_map(gt, dets, convention=conv)
        assert per == {0: 1.0, 1: 1.0, 2: 0.0}  # class 5 has no ground truth: not evaluated
        assert m == pytest.approx(2 / 3)
        assert video_map(gt, {}, convention=conv) == (0.0, {0: 0.0, 1: 0.0, 2: 0.0})
        m, per = video_map({"a": {}}, dets, convention=conv)
        assert math.isnan(m) and per == {}


def test_bad_tube_detection():
    with pytest.raises(SparseLabelError):
        video_map({"v": {0: [gt_tube(1, 3)]}}, {0: [("v", 0.5)]})
    with pytest.raises(SparseLabelError, match="increasing"):
        video_map({"v": {0: [gt_tube(1, 3)]}}, {0: [("v", 0.5, tube(1, 3)[::-1])]})


def random_case(seed, distinct=True, n_classes=3):
    rng = np.random.default_rng(seed)
    gt, dets = {}, {}
    for i in range(8):
        v = f"vid{i}"
        gt[v] = {}
        for _ in range(int(rng.integers(0, 4))):
            label = int(rng.integers(0, n_classes))
            start = int(rng.integers(1, 20))
            n = int(rng.integers(1, 25))
            xy, wh = rng.uniform(0, 40, 2), rng.uniform(8, 30, 2)
            rows = np.array([[f, *xy, *(xy + wh)] for f in range(start, start + n)])
            rows[:, 1:] += rng.normal(0, 1, (n, 4)).cumsum(axis=0)
            gt[v].setdefault(label, []).append(rows)
            for _ in range(int(rng.integers(0, 3))):  # detections of this instance
                s = max(1, start + int(rng.integers(-5, 6)))
                e = max(s, start + n - 1 + int(rng.integers(-5, 6)))
                frames = np.arange(s, e + 1)
                boxes = np.array([rows[min(max(f - start, 0), n - 1), 1:] for f in frames]) + rng.normal(0, 3, (len(frames), 4))
                lab = label if rng.random() < 0.8 else int(rng.integers(0, n_classes))
                dets.setdefault(lab, []).append([v, 0.0, np.column_stack([frames, boxes, np.ones(len(frames))])])
        for _ in range(int(rng.integers(0, 3))):  # false positives
            s = int(rng.integers(1, 30))
            dets.setdefault(int(rng.integers(0, n_classes)), []).append([v, 0.0, tube(s, s + int(rng.integers(0, 10)), (5, 5, 25, 30))])
    allitems = [d for ds in dets.values() for d in ds]
    scores = rng.permutation(len(allitems)) / max(1, len(allitems)) if distinct else rng.integers(0, 3, len(allitems)) / 3
    for d, s in zip(allitems, scores, strict=True):
        d[1] = float(s)
    return gt, {k: [tuple(d) for d in ds] for k, ds in dets.items()}


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("conv", CONVENTIONS)
def test_matches_loop_reference(seed, conv):
    gt, dets = random_case(seed)
    for th in (0.1, 0.3, 0.5, 0.75):
        _, per = video_map(gt, dets, iou=th, convention=conv)
        expected = ref.video_ap(gt, dets, th, conv)
        assert per.keys() == expected.keys()
        for k in per:
            assert per[k] == pytest.approx(expected[k], abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("distinct", [True, False])
def test_order_invariance_and_no_mutation(seed, distinct):
    gt, dets = random_case(seed, distinct=distinct)
    gt_copy, dets_copy = copy.deepcopy(gt), copy.deepcopy(dets)
    rng = np.random.default_rng(seed)
    for conv in CONVENTIONS:
        base = video_map(gt, dets, convention=conv)
        shuffled = {k: [v[i] for i in rng.permutation(len(v))] for k, v in reversed(list(dets.items()))}
        assert video_map(gt, shuffled, convention=conv) == base
    for k in dets:
        for (v1, s1, t1), (v2, s2, t2) in zip(dets[k], dets_copy[k], strict=True):
            assert v1 == v2 and s1 == s2 and np.array_equal(t1, t2)
    for v in gt:
        for lab in gt[v]:
            for a, b in zip(gt[v][lab], gt_copy[v][lab], strict=True):
                assert np.array_equal(a, b)


@pytest.mark.parametrize("seed", range(5))
def test_monotone_in_threshold_and_low_fp(seed):
    gt, dets = random_case(seed)
    for conv in CONVENTIONS:
        maps = [video_map(gt, dets, iou=th, convention=conv)[0] for th in (0.1, 0.2, 0.3, 0.5, 0.75)]
        assert all(a >= b - 1e-12 for a, b in zip(maps, maps[1:], strict=False))
        _, before = video_map(gt, dets, convention=conv)
        more = {k: [*v, ("vid0", -1.0, tube(1, 3))] for k, v in dets.items()}
        _, after = video_map(gt, more, convention=conv)
        assert all(after[k] <= before[k] + 1e-12 for k in before)


@pytest.mark.parametrize("seed", range(5))
def test_voc_is_scale_invariant(seed):
    gt, dets = random_case(seed)

    def scale(t):
        out = np.array(t, dtype=float)
        out[:, 1:5] *= 3.7
        return out

    sgt = {v: {lab: [scale(t) for t in ts] for lab, ts in per.items()} for v, per in gt.items()}
    sdets = {k: [(v, s, scale(t)) for v, s, t in ds] for k, ds in dets.items()}
    _, p1 = video_map(gt, dets, convention="voc")
    _, p2 = video_map(sgt, sdets, convention="voc")
    assert p1 == pytest.approx(p2)

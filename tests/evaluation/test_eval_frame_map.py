"""frame_map: hand-computed cases for both conventions, properties, loop reference."""

import copy
import math

import eval_reference as ref
import numpy as np
import pytest

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation import frame_map

CONVENTIONS = ("act", "voc")


def det(video, frame, label, score, box):
    return [video, frame, label, score, *box]


BOX = (0, 0, 9, 9)
HALF = (0, 0, 9, 4)  # act IoU with BOX exactly 0.5, voc 36/81


def simple_gt():
    return {"v": {0: [np.array([[1, *BOX], [2, *BOX]], dtype=float)]}}


def test_hand_case_tp_fp_tp():
    dets = np.array([det(0, 1, 0, 0.9, BOX), det(0, 3, 0, 0.8, BOX), det(0, 2, 0, 0.7, BOX)])
    # frame 3 has no ground truth: the second detection is a false positive
    m, per = frame_map(simple_gt(), dets, ["v"], convention="act")
    assert per == {0: pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)}
    assert m == per[0]
    m, per = frame_map(simple_gt(), dets, ["v"], convention="voc")
    assert m == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_iou_exactly_half_is_a_match_only_with_plus_one():
    dets = np.array([det(0, 1, 0, 0.9, HALF), det(0, 2, 0, 0.8, HALF)])
    assert frame_map(simple_gt(), dets, ["v"], iou=0.5, convention="act")[0] == 1.0
    assert frame_map(simple_gt(), dets, ["v"], iou=0.5, convention="voc")[0] == 0.0


def test_best_ground_truth_already_matched():
    # frame 1 has GT A = BOX and B = (0, 0, 9, 6). Detection 2's best GT is A (taken by
    # detection 1); its IoU with B is 70/90 (act) / 54/72 (voc), above 0.5.
    gt = {"v": {0: [np.array([[1, *BOX]], float), np.array([[1, 0, 0, 9, 6]], float)]}}
    d2 = (0, 0, 9, 8)
    dets = np.array([det(0, 1, 0, 0.9, BOX), det(0, 1, 0, 0.8, d2)])
    assert frame_map(gt, dets, ["v"], convention="act")[0] == 1.0  # takes B
    # voc: TP then FP over 2 GT: envelope precision 1 up to recall .5
    assert frame_map(gt, dets, ["v"], convention="voc")[0] == pytest.approx(0.5)


def test_class_without_detections_counts_zero_and_detections_without_gt_are_ignored():
    gt = {"v": {0: [np.array([[1, *BOX]], float)], 2: [np.array([[1, *BOX]], float)]}}
    dets = np.array([det(0, 1, 0, 0.9, BOX), det(0, 1, 1, 0.9, BOX)])
    for conv in CONVENTIONS:
        m, per = frame_map(gt, dets, ["v"], convention=conv)
        assert per == {0: 1.0, 2: 0.0}
        assert m == 0.5


def test_perfect_and_empty():
    gt = {"a": {0: [np.array([[1, *BOX], [2, *BOX]], float)]}, "b": {1: [np.array([[5, 1, 1, 5, 5]], float)]}}
    dets = np.array([det(0, 1, 0, 0.5, BOX), det(0, 2, 0, 0.4, BOX), det(1, 5, 1, 0.3, (1, 1, 5, 5))])
    for conv in CONVENTIONS:
        assert frame_map(gt, dets, ["a", "b"], convention=conv) == (1.0, {0: 1.0, 1: 1.0})
        assert frame_map(gt, np.zeros((0, 8)), ["a", "b"], convention=conv) == (0.0, {0: 0.0, 1: 0.0})
        m, per = frame_map({"a": {}}, dets[:2], ["a"], convention=conv)
        assert math.isnan(m) and per == {}


def test_only_listed_videos_are_evaluated():
    gt = {"a": {0: [np.array([[1, *BOX]], float)]}, "b": {1: [np.array([[1, *BOX]], float)]}}
    dets = np.array([det(0, 1, 0, 0.5, BOX)])
    assert frame_map(gt, dets, ["a"]) == (1.0, {0: 1.0})


def test_bad_inputs():
    with pytest.raises(SparseLabelError, match="video_index"):
        frame_map(simple_gt(), np.array([det(1, 1, 0, 0.5, BOX)]), ["v"])
    with pytest.raises(SparseLabelError, match="no entry"):
        frame_map(simple_gt(), np.zeros((0, 8)), ["w"])
    with pytest.raises(SparseLabelError, match="8"):
        frame_map(simple_gt(), np.zeros((3, 5)), ["v"])


def random_case(seed, n_videos=6, n_classes=3, distinct=True):
    rng = np.random.default_rng(seed)
    videos = [f"vid{i}" for i in range(n_videos)]
    gt, dets = {}, []
    for vi, v in enumerate(videos):
        gt[v] = {}
        for _ in range(int(rng.integers(0, 3))):
            label = int(rng.integers(0, n_classes))
            start = int(rng.integers(1, 8))
            n = int(rng.integers(1, 8))
            xy = rng.uniform(0, 50, 2)
            wh = rng.uniform(5, 30, 2)
            rows = []
            for f in range(start, start + n):
                xy = xy + rng.normal(0, 1, 2)
                rows.append([f, xy[0], xy[1], xy[0] + wh[0], xy[1] + wh[1]])
                for _ in range(int(rng.integers(0, 3))):  # noisy detections, possibly wrong class
                    jit = rng.normal(0, 4, 4)
                    lab = label if rng.random() < 0.8 else int(rng.integers(0, n_classes))
                    dets.append([vi, f, lab, 0.0, *(np.array(rows[-1][1:]) + jit)])
            gt[v].setdefault(label, []).append(np.array(rows))
        for _ in range(int(rng.integers(0, 4))):  # false positives anywhere
            x, y = rng.uniform(0, 60, 2)
            dets.append([vi, int(rng.integers(1, 15)), int(rng.integers(0, n_classes)), 0.0, x, y, x + 20, y + 20])
    dets = np.array(dets, dtype=float).reshape(-1, 8)
    dets[:, 3] = rng.permutation(len(dets)) / max(1, len(dets)) if distinct else rng.integers(0, 3, len(dets)) / 3
    return gt, dets, videos


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("conv", CONVENTIONS)
def test_matches_loop_reference(seed, conv):
    gt, dets, videos = random_case(seed)
    for th in (0.3, 0.5, 0.7):
        m, per = frame_map(gt, dets, videos, iou=th, convention=conv)
        expected = ref.frame_ap(gt, dets, videos, th, conv)
        assert per.keys() == expected.keys()
        for k in per:
            assert per[k] == pytest.approx(expected[k], abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("distinct", [True, False])
def test_order_invariance_and_no_mutation(seed, distinct):
    gt, dets, videos = random_case(seed, distinct=distinct)
    gt_copy, dets_copy = copy.deepcopy(gt), dets.copy()
    rng = np.random.default_rng(100 + seed)
    for conv in CONVENTIONS:
        base = frame_map(gt, dets, videos, convention=conv)
        shuffled = frame_map(gt, dets[rng.permutation(len(dets))], videos, convention=conv)
        assert shuffled == base  # ties too: they are broken by (video, frame, box)
    assert np.array_equal(dets, dets_copy)
    for v in gt:
        for lab in gt[v]:
            for a, b in zip(gt[v][lab], gt_copy[v][lab], strict=True):
                assert np.array_equal(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_low_scored_false_positive_never_raises_ap(seed):
    gt, dets, videos = random_case(seed)
    for conv in CONVENTIONS:
        _, before = frame_map(gt, dets, videos, convention=conv)
        extra = np.array([[0, 99, lab, -1.0, 0, 0, 5, 5] for lab in range(3)])
        _, after = frame_map(gt, np.vstack([dets, extra]), videos, convention=conv)
        for k in before:
            assert after[k] <= before[k] + 1e-12


@pytest.mark.parametrize("seed", range(6))
def test_voc_is_scale_invariant(seed):
    gt, dets, videos = random_case(seed)
    scaled_gt = {v: {lab: [np.column_stack([t[:, :1], t[:, 1:] * 2.5]) for t in ts] for lab, ts in per.items()} for v, per in gt.items()}
    scaled = dets.copy()
    scaled[:, 4:] *= 2.5
    m1, p1 = frame_map(gt, dets, videos, convention="voc")
    m2, p2 = frame_map(scaled_gt, scaled, videos, convention="voc")
    assert p1.keys() == p2.keys()
    for k in p1:
        assert p1[k] == pytest.approx(p2[k])


def test_float32_detections():
    gt, dets, videos = random_case(3)
    m64 = frame_map(gt, dets, videos)[0]
    m32 = frame_map(gt, dets.astype(np.float32), videos)[0]
    assert m32 == pytest.approx(m64, abs=1e-3)

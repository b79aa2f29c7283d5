"""AP formulas and the greedy matcher, on hand-computed cases."""

import numpy as np
import pytest

from sparselabel.evaluation import average_precision, greedy_match, pr_curve
from sparselabel.evaluation.ap import ap_act, ap_voc, combine_keys, group_ranks, pairs_by_key


def test_pr_curve():
    p, r = pr_curve([True, False, True], 2)
    assert np.allclose(p, [1, 0.5, 2 / 3])
    assert np.allclose(r, [0.5, 0.5, 1])


def test_act_ap_is_trapezoidal_from_precision_one():
    # TP, FP, TP over 2 GT: (0,1)->(.5,1): .5; (.5,1)->(.5,.5): 0; (.5,.5)->(1,2/3): .5*(.5+2/3)/2
    expected = 0.5 + 0.5 * (0.5 + 2 / 3) / 2
    assert average_precision([True, False, True], 2, "act") == pytest.approx(expected)


def test_voc_ap_uses_the_monotone_envelope():
    # envelope precision at recall .5 is max(1, .5, 2/3) = 1, at recall 1 it is 2/3
    assert average_precision([True, False, True], 2, "voc") == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_act_and_voc_differ_when_first_detection_is_wrong():
    # FP, TP over 1 GT. act: (0,1)->(0,0): 0 width; (0,0)->(1,.5): 1*(0+.5)/2 = .25. voc: .5
    assert average_precision([False, True], 1, "act") == pytest.approx(0.25)
    assert average_precision([False, True], 1, "voc") == pytest.approx(0.5)


def test_perfect_and_empty():
    for conv in ("act", "voc"):
        assert average_precision([True, True], 2, conv) == 1.0
        assert average_precision([], 3, conv) == 0.0
        assert average_precision([False, False], 3, conv) == 0.0
        assert average_precision([True], 0, conv) == 0.0


def test_partial_recall():
    # one TP for 2 GT: act area .5, voc .5
    assert average_precision([True], 2, "act") == pytest.approx(0.5)
    assert average_precision([True], 2, "voc") == pytest.approx(0.5)


def test_ap_functions_on_raw_curves():
    assert ap_act(np.array([1.0]), np.array([1.0])) == 1.0
    assert ap_voc(np.array([0.5, 1.0]), np.array([0.5, 1.0])) == 1.0  # envelope lifts the first point


def test_greedy_match_act_vs_voc():
    # one group, 2 GT; det 0 then det 1 both prefer GT 0; det 1 also overlaps GT 1 at .6
    pair_det = np.array([0, 0, 1, 1])
    pair_gt = np.array([0, 1, 0, 1])
    iou = np.array([0.9, 0.1, 0.8, 0.6])
    group, position = np.array([7, 7]), np.array([0, 1])
    assert greedy_match(2, group, position, pair_det, pair_gt, iou, 2, 0.5, "act").tolist() == [True, True]
    assert greedy_match(2, group, position, pair_det, pair_gt, iou, 2, 0.5, "voc").tolist() == [True, False]
    # processed the other way round, detection 1 takes GT 0 and detection 0 (IoU .1 with GT 1) misses
    position = np.array([1, 0])
    assert greedy_match(2, group, position, pair_det, pair_gt, iou, 2, 0.5, "act").tolist() == [False, True]


def test_greedy_match_tie_goes_to_first_gt():
    tp = greedy_match(2, np.zeros(2), np.array([0, 1]), np.array([0, 0, 1]), np.array([1, 0, 1]), np.array([0.7, 0.7, 0.7]), 2, 0.5, "voc")
    # det 0 takes GT 0 (listed first among equals); det 1 only overlaps GT 1
    assert tp.tolist() == [True, True]


def test_keys_pairs_and_ranks():
    keys = combine_keys(np.array([0, 0, 1, 0]), np.array([5, 5, 5, 6]))
    assert keys[0] == keys[1] and len(set(keys.tolist())) == 3
    big = combine_keys(np.array([0, 2**40]), np.array([0, 2**40]), np.array([0, 2**40]))
    assert big[0] != big[1]
    pd, pg = pairs_by_key(np.array([7, 3, 7]), np.array([7, 1, 3]))
    assert list(zip(pd.tolist(), pg.tolist(), strict=True)) == [(0, 0), (0, 2), (2, 1)]
    assert group_ranks(np.array([4, 4, 2, 4]), np.array([3, 0, 1, 2])).tolist() == [2, 0, 0, 1]

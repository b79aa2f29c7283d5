"""Temporal metrics on hand-computed cases."""

import numpy as np
import pytest

from sparselabel.evaluation import (
    Segment,
    clip_f1,
    frame_accuracy,
    frame_labels,
    segment_accuracy,
    segment_iou,
    segments_from_gttubes,
    segments_from_tube_dets,
    temporal_localization_precision,
    temporal_metrics,
)

GT = {"v": [Segment(0, 1, 10), Segment(1, 15, 20)]}
PRED = {"v": [Segment(0, 1, 8, 0.9), Segment(1, 12, 20, 0.8), Segment(0, 15, 18, 0.5)]}


def test_segment_iou_counts_frames():
    assert segment_iou(Segment(0, 1, 10), Segment(0, 1, 8)) == 0.8
    assert segment_iou(Segment(0, 1, 5), Segment(0, 5, 9)) == pytest.approx(1 / 9)
    assert segment_iou(Segment(0, 1, 4), Segment(0, 5, 9)) == 0.0


def test_frame_labels_highest_score_wins():
    labels = frame_labels(PRED["v"], 20)
    assert labels.tolist() == [0] * 8 + [-1] * 3 + [1] * 9
    tie = frame_labels([Segment(3, 1, 2), Segment(1, 2, 3)], 4)
    assert tie.tolist() == [3, 1, 1, -1]  # equal scores: the lower label


def test_hand_case():
    res = temporal_metrics(GT, PRED, {"v": 20}, ious=(0.5, 0.75))
    assert res["frame_accuracy"] == 0.75  # frames 9-10 and 12-14 wrong
    assert res["segment_accuracy"] == 1.0
    assert res["precision@0.5"] == pytest.approx(2 / 3)
    assert res["recall@0.5"] == 1.0
    assert res["f1@0.5"] == pytest.approx(0.8)
    assert res["f1@0.75"] == pytest.approx(0.4)
    assert clip_f1(GT, PRED, 0.5) == pytest.approx(0.8)
    assert temporal_localization_precision(GT, PRED, 0.5) == pytest.approx(2 / 3)
    assert segment_accuracy(GT, PRED, {"v": 20}) == 1.0


def test_duplicates_are_false_positives_and_missing_videos_count():
    pred = {"v": [Segment(0, 1, 10, 0.9), Segment(0, 1, 10, 0.8)]}
    assert temporal_localization_precision(GT, pred, 0.5) == 0.5
    # video w has ground truth and no detection: its segment is a false negative
    gt = {**GT, "w": [Segment(2, 1, 5)]}
    res = temporal_metrics(gt, pred, {"v": 20, "w": 5}, ious=(0.5,))
    assert res["recall@0.5"] == pytest.approx(1 / 3)
    assert res["segment_accuracy"] == pytest.approx(1 / 3)


def test_segment_accuracy_majority():
    pred = {"v": [Segment(0, 1, 4, 1.0), Segment(1, 15, 20, 1.0)]}  # seg 0 mostly background
    assert segment_accuracy(GT, pred, {"v": 20}) == 0.5


def test_perfect_and_empty():
    perfect = {"v": [Segment(s.label, s.start, s.end, 1.0) for s in GT["v"]]}
    res = temporal_metrics(GT, perfect, {"v": 20})
    assert res["frame_accuracy"] == 1.0 and res["f1@0.5"] == 1.0 and res["segment_accuracy"] == 1.0
    res = temporal_metrics(GT, {}, {"v": 20}, ious=(0.5,))
    assert res["f1@0.5"] == 0.0 and res["precision@0.5"] == 0.0
    assert frame_accuracy(np.array([0, -1]), np.array([0, 0])) == 0.5


def test_from_act_structures():
    gttubes = {"v": {0: [np.array([[f, 0, 0, 5, 5] for f in range(1, 11)], float)],
                     1: [np.array([[f, 0, 0, 5, 5] for f in range(15, 21)], float)]}}
    assert sorted(segments_from_gttubes(gttubes)["v"]) == sorted(GT["v"])
    dets = {0: [("v", 0.9, np.array([[f, 0, 0, 5, 5, 1] for f in range(1, 9)], float)),
                ("v", 0.01, np.array([[3, 0, 0, 5, 5, 1]], float))]}
    segs = segments_from_tube_dets(dets, min_score=0.1)
    assert segs == {"v": [Segment(0, 1, 8, 0.9)]}

"""Box, temporal and tube IoU in both conventions, and NMS."""

import numpy as np
import pytest

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation import (
    box_area,
    nms_boxes,
    nms_frame_dets,
    nms_tube_dets,
    nms_tubes,
    spatial_iou,
    temporal_iou,
    tube_iou,
    tube_iou_matrix,
)


def tube(first, last, box=(0, 0, 9, 9), score=None):
    rows = [[f, *box] for f in range(first, last + 1)]
    arr = np.array(rows, dtype=float)
    return arr if score is None else np.column_stack([arr, np.full(len(arr), score)])


def test_area_plus_one():
    assert box_area([0, 0, 9, 9], "act")[0] == 100
    assert box_area([0, 0, 9, 9], "voc")[0] == 81


def test_iou_exactly_half_only_with_plus_one():
    # act: inter 10x5 = 50, union 100 -> 0.5; voc: 9x4 = 36 / 81 -> 0.444
    assert spatial_iou([0, 0, 9, 9], [0, 0, 9, 4], "act")[0, 0] == 0.5
    assert spatial_iou([0, 0, 9, 9], [0, 0, 9, 4], "voc")[0, 0] == pytest.approx(36 / 81)


def test_touching_boxes_overlap_by_one_pixel_in_act():
    # x2 = 9 and x1 = 9 share pixel column 9 in act, nothing in voc
    assert spatial_iou([0, 0, 9, 9], [9, 0, 18, 9], "act")[0, 0] == pytest.approx(10 / 190)
    assert spatial_iou([0, 0, 9, 9], [9, 0, 18, 9], "voc")[0, 0] == 0.0


def test_spatial_iou_is_pairwise_and_safe_on_degenerate_boxes():
    m = spatial_iou(np.array([[0, 0, 10, 10], [5, 5, 15, 15]]), np.array([[0, 0, 10, 10]]), "voc")
    assert m.shape == (2, 1)
    assert m[0, 0] == 1.0
    assert m[1, 0] == pytest.approx(25 / 175)
    assert spatial_iou([3, 3, 3, 3], [3, 3, 3, 3], "voc")[0, 0] == 0.0  # empty union: 0, not NaN


def test_temporal_iou_conventions():
    assert temporal_iou(1, 5, 5, 9, "act") == pytest.approx(1 / 9)  # one shared frame
    assert temporal_iou(1, 5, 5, 9, "voc") == 0.0
    assert temporal_iou(1, 10, 6, 15, "act") == pytest.approx(5 / 15)
    assert temporal_iou(1, 10, 6, 15, "voc") == pytest.approx(4 / 14)
    assert temporal_iou(1, 4, 6, 9, "act") == 0.0
    assert temporal_iou(3, 3, 3, 3, "voc") == 1.0  # identical single frames
    assert temporal_iou(3, 3, 3, 3, "act") == 1.0


def test_temporal_iou_vectorised():
    out = temporal_iou(np.array([1, 1]), np.array([5, 10]), 5, 9, "act")
    assert np.allclose(out, [1 / 9, 5 / 10])


def test_tube_iou_one_frame_overlap():
    assert tube_iou(tube(1, 5), tube(5, 9), "act") == pytest.approx(1 / 9)
    assert tube_iou(tube(1, 5), tube(5, 9), "voc") == 0.0


def test_tube_iou_is_temporal_times_mean_spatial():
    gt = tube(1, 10)
    det = np.vstack([tube(6, 10), tube(11, 15)])
    det[:3, 3] = 4  # frames 6-8 cover half of the box (act: exactly 0.5)
    spatial = (3 * 0.5 + 2 * 1.0) / 5
    assert tube_iou(gt, det, "act") == pytest.approx(spatial * 5 / 15)
    spatial_voc = (3 * 36 / 81 + 2 * 1.0) / 5
    assert tube_iou(gt, det, "voc") == pytest.approx(spatial_voc * 4 / 14)


def test_tube_iou_with_a_gap_uses_shared_frames():
    gt = tube(1, 10)
    det = tube(1, 10)[[0, 1, 2, 7, 8, 9]]  # frames 4-7 missing
    det[:, 3] = 4  # IoU 0.5 in every frame present
    assert tube_iou(gt, det, "act") == pytest.approx(0.5)


def test_tube_iou_ignores_score_column_and_validates():
    assert tube_iou(tube(1, 3, score=0.2), tube(1, 3)) == 1.0
    with pytest.raises(SparseLabelError):
        tube_iou(tube(1, 3)[::-1], tube(1, 3))
    with pytest.raises(SparseLabelError):
        tube_iou(np.zeros((3, 3)), tube(1, 3))


def test_tube_iou_matrix_matches_pairs():
    rng = np.random.default_rng(0)
    tubes = []
    for _ in range(6):
        s = int(rng.integers(1, 20))
        t = tube(s, s + int(rng.integers(0, 15)))
        t[:, 1:3] += rng.uniform(0, 5, size=(len(t), 2))
        tubes.append(t)
    for conv in ("act", "voc"):
        m = tube_iou_matrix(tubes[:3], tubes[3:], conv)
        for i in range(3):
            for j in range(3):
                assert m[i, j] == pytest.approx(tube_iou(tubes[i], tubes[3 + j], conv))


def test_unknown_convention():
    with pytest.raises(SparseLabelError, match="convention"):
        spatial_iou([0, 0, 1, 1], [0, 0, 1, 1], "coco")


def test_nms_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = np.array([0.5, 0.9, 0.8, 0.5])
    keep = nms_boxes(boxes, scores, iou=0.5)
    assert keep.tolist() == [1, 2]
    assert nms_boxes(boxes, scores, iou=0.99).tolist() == [1, 2, 0]  # duplicate 3 of 0 suppressed
    assert nms_boxes(boxes, scores, iou=0.5, top_k=1).tolist() == [1]


def test_nms_frame_dets_per_frame_and_class():
    dets = np.array([
        [0, 1, 0, 0.9, 0, 0, 10, 10],
        [0, 1, 0, 0.8, 1, 1, 11, 11],  # suppressed
        [0, 1, 1, 0.7, 1, 1, 11, 11],  # other class: kept
        [0, 2, 0, 0.6, 1, 1, 11, 11],  # other frame: kept
    ])
    before = dets.copy()
    out = nms_frame_dets(dets, 0.5)
    assert np.array_equal(dets, before)
    assert out[:, 3].tolist() == [0.9, 0.7, 0.6]


def test_nms_tubes_and_tube_dets():
    tubes = [tube(1, 10), tube(1, 10, box=(1, 1, 10, 10)), tube(20, 30)]
    assert nms_tubes(tubes, [0.9, 0.95, 0.5], iou=0.5).tolist() == [1, 2]
    dets = {0: [("a", 0.9, tube(1, 10, score=1)), ("a", 0.95, tube(1, 10, box=(1, 1, 10, 10), score=1)),
                ("b", 0.5, tube(1, 10, score=1))], 3: []}
    out = nms_tube_dets(dets, 0.5)
    assert sorted(out) == [0, 3]
    assert [(v, s) for v, s, _ in out[0]] == [("a", 0.95), ("b", 0.5)]
    assert len(dets[0]) == 3

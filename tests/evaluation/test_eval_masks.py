"""Mask IoU / mask AP, and DAVIS J, F and their statistics on hand cases."""

import numpy as np
import pytest

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation import (
    boundary_f,
    db_statistics,
    evaluate_sequence,
    evaluate_vos,
    frame_map,
    frame_map_masks,
    jaccard,
    mask_iou,
    mask_tube_iou,
    seg2bmap,
    split_objects,
    video_map,
    video_map_masks,
)


def square(shape, r0, c0, k, cols=None):
    m = np.zeros(shape, dtype=bool)
    m[r0 : r0 + k, c0 : c0 + (cols or k)] = True
    return m


# ------------------------------------------------------------------ J and F


def test_identical_and_disjoint():
    a = square((100, 100), 10, 10, 20)
    b = square((100, 100), 60, 60, 20)
    assert jaccard(a, a) == 1.0 and boundary_f(a, a) == 1.0
    assert jaccard(a, b) == 0.0 and boundary_f(a, b) == 0.0


def test_empty_cases_follow_davis():
    empty = np.zeros((50, 50), dtype=bool)
    full = square((50, 50), 5, 5, 10)
    assert jaccard(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0
    assert jaccard(full, empty) == 0.0 and boundary_f(full, empty) == 0.0
    assert jaccard(empty, full) == 0.0 and boundary_f(empty, full) == 0.0


def test_one_pixel_shift():
    gt = square((100, 100), 10, 10, 10)
    pred = square((100, 100), 10, 11, 10)
    assert jaccard(gt, pred) == pytest.approx(90 / 110)
    assert boundary_f(gt, pred) == 1.0  # tolerance ceil(0.008 * 141.4) = 2 px


def test_shift_beyond_tolerance_lowers_f():
    gt = square((100, 100), 10, 10, 20)
    pred = square((100, 100), 10, 15, 20)
    f = boundary_f(gt, pred)
    assert 0.0 < f < 1.0
    assert boundary_f(gt, pred, bound_th=5) == 1.0  # bound_th >= 1 is a pixel tolerance


def test_seg2bmap_single_pixel_and_square():
    m = np.zeros((5, 5), dtype=bool)
    m[2, 2] = True
    assert sorted(zip(*np.nonzero(seg2bmap(m)), strict=True)) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # a k x k square has 4k boundary pixels (last row and column inside, row and column before it outside)
    assert seg2bmap(square((40, 40), 5, 5, 10)).sum() == 40


def test_f_hand_value_with_a_far_false_blob():
    gt = square((100, 100), 10, 10, 20)  # 80 boundary pixels
    pred = gt | square((100, 100), 60, 60, 10)  # + 40 far away
    # precision 80/120, recall 1 -> F = 2 * (2/3) / (5/3) = 0.8
    assert boundary_f(gt, pred) == pytest.approx(0.8)
    assert jaccard(gt, pred) == pytest.approx(400 / 500)


def test_void_pixels_are_ignored():
    gt = square((50, 50), 10, 10, 10)
    pred = gt.copy()
    pred[30:40, 30:40] = True
    void = square((50, 50), 28, 28, 14)
    assert jaccard(gt, pred, void) == 1.0
    assert boundary_f(gt, pred, void) == 1.0


def test_per_frame_arrays_and_shape_checks():
    gt = np.stack([square((30, 30), 5, 5, 10), np.zeros((30, 30), bool)])
    pred = np.stack([square((30, 30), 5, 5, 10), square((30, 30), 1, 1, 3)])
    assert jaccard(gt, pred).tolist() == [1.0, 0.0]
    assert boundary_f(gt, pred).tolist() == [1.0, 0.0]
    with pytest.raises(SparseLabelError):
        jaccard(gt, pred[:1])


def test_db_statistics_hand_case():
    stats = db_statistics(np.array([1, 1, 1, 1, 0, 0, 0, 0], float))
    # bins (DAVIS): frames 0-2, 2-4, 4-5, 5-7 -> decay = 1 - 0
    assert stats == {"mean": 0.5, "recall": 0.5, "decay": 1.0}
    ramp = db_statistics(np.linspace(1, 0, 20))
    assert ramp["decay"] > 0.5 and ramp["recall"] == 0.5


def test_sequence_excludes_first_and_last_by_default():
    gt = np.stack([square((40, 40), 5, 5, 10)] * 4)
    pred = gt.copy()
    pred[0] = False
    pred[3] = False
    res = evaluate_sequence(gt, pred)
    assert res["J"]["mean"] == 1.0 and res["F"]["mean"] == 1.0 and res["J&F"] == 1.0
    assert len(res["J_per_frame"]) == 2
    res = evaluate_sequence(gt, pred, exclude_first_last=False)
    assert res["J"]["mean"] == 0.5 and res["F"]["mean"] == 0.5
    assert res["J"]["recall"] == 0.5


def test_dataset_means_over_objects_and_split_objects():
    labels = np.zeros((3, 30, 30), dtype=np.uint8)
    labels[:, 2:10, 2:10] = 1
    labels[:, 15:25, 15:25] = 2
    labels[:, 0, :] = 255
    objects, void = split_objects(labels)
    assert sorted(objects) == [1, 2] and void[:, 0].all()
    pred = {k: m.copy() for k, m in objects.items()}
    pred[2][:] = False
    res = evaluate_vos({f"seq_{k}": (objects[k], pred[k], void) for k in objects})
    assert res["sequences"]["seq_1"]["J&F"] == 1.0
    assert res["sequences"]["seq_2"]["J&F"] == 0.0
    assert res["J"]["mean"] == 0.5 and res["J&F"] == 0.5


# ----------------------------------------------------------- mask IoU / AP


def test_mask_iou_pairwise():
    a = np.stack([square((20, 20), 0, 0, 10), np.zeros((20, 20), bool)])
    b = square((20, 20), 0, 5, 10)
    m = mask_iou(a, b)
    assert m.shape == (2, 1)
    assert m[0, 0] == pytest.approx(50 / 150)
    assert m[1, 0] == 0.0
    assert mask_iou(np.zeros((5, 5)), np.zeros((5, 5)))[0, 0] == 0.0  # for AP, empty never matches


def test_mask_tube_iou_conventions():
    masks = np.stack([square((20, 20), 2, 2, 8)] * 5)
    assert mask_tube_iou(np.arange(1, 6), masks, np.arange(5, 10), masks, "act") == pytest.approx(1 / 9)
    assert mask_tube_iou(np.arange(1, 6), masks, np.arange(5, 10), masks, "voc") == 0.0


def rect_mask(box, shape, conv):
    x1, y1, x2, y2 = (int(v) for v in box)
    plus = 1 if conv == "act" else 0
    m = np.zeros(shape, dtype=bool)
    m[y1 : y2 + plus, x1 : x2 + plus] = True
    return m


def random_rect_case(seed, shape=(48, 64)):
    rng = np.random.default_rng(seed)
    videos = ["a", "b", "c"]
    gt = {}
    dets = []
    for vi, v in enumerate(videos):
        gt[v] = {}
        for _ in range(int(rng.integers(1, 3))):
            lab = int(rng.integers(0, 2))
            s, n = int(rng.integers(1, 5)), int(rng.integers(1, 6))
            x1, y1 = int(rng.integers(0, 30)), int(rng.integers(0, 20))
            rows = np.array([[f, x1, y1, x1 + 15, y1 + 12] for f in range(s, s + n)], float)
            gt[v].setdefault(lab, []).append(rows)
            for r in rows:
                for _ in range(int(rng.integers(0, 3))):
                    jit = rng.integers(-4, 5, 4)
                    box = np.clip(r[1:] + jit, 0, [63, 47, 63, 47])
                    if box[2] > box[0] and box[3] > box[1]:
                        dets.append([vi, r[0], lab, 0.0, *box])
    dets = np.array(dets, float).reshape(-1, 8)
    dets[:, 3] = rng.permutation(len(dets)) / max(1, len(dets))
    return gt, dets, videos


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("conv", ["act", "voc"])
def test_frame_map_masks_equals_box_map_on_rectangles(seed, conv):
    shape = (48, 64)
    gt, dets, videos = random_rect_case(seed, shape)
    gt_masks = {
        v: {lab: [(t[:, 0], np.stack([rect_mask(r[1:], shape, conv) for r in t])) for t in ts] for lab, ts in per.items()}
        for v, per in gt.items()
    }
    det_masks = [rect_mask(d[4:], shape, conv) for d in dets]
    for th in (0.3, 0.5, 0.7):
        boxes = frame_map(gt, dets, videos, iou=th, convention=conv)
        masks = frame_map_masks(gt_masks, dets[:, :4], det_masks, videos, iou=th, convention=conv)
        assert masks[1] == pytest.approx(boxes[1])


@pytest.mark.parametrize("conv", ["act", "voc"])
def test_video_map_masks_equals_box_map_on_rectangles(conv):
    shape = (48, 64)
    rng = np.random.default_rng(5)
    gt, gt_masks, dets, mdets = {}, {}, {0: []}, {0: []}
    for i in range(4):
        v = f"v{i}"
        s = int(rng.integers(1, 5))
        t = np.array([[f, 10, 10, 30, 25] for f in range(s, s + 6)], float)
        gt[v] = {0: [t]}
        gt_masks[v] = {0: [(t[:, 0], np.stack([rect_mask(r[1:], shape, conv) for r in t]))]}
        for _ in range(2):
            d = t.copy()
            d[:, 0] += int(rng.integers(-2, 3))
            d[:, 1:] += rng.integers(-6, 7, 4)
            score = float(rng.random())
            dets[0].append((v, score, np.column_stack([d, np.ones(len(d))])))
            mdets[0].append((v, score, d[:, 0], np.stack([rect_mask(r[1:], shape, conv) for r in d])))
    for th in (0.2, 0.5):
        assert video_map_masks(gt_masks, mdets, th, conv)[1] == pytest.approx(video_map(gt, dets, th, conv)[1])


def test_frame_map_masks_skips_empty_gt_frames_and_checks_lengths():
    m = square((20, 20), 2, 2, 8)
    gt = {"v": {0: [(np.array([1, 2]), np.stack([m, np.zeros_like(m)]))]}}
    dets = np.array([[0, 1, 0, 0.9]])
    assert frame_map_masks(gt, dets, [m], ["v"]) == (1.0, {0: 1.0})  # frame 2 is not ground truth
    with pytest.raises(SparseLabelError):
        frame_map_masks(gt, dets, [], ["v"])

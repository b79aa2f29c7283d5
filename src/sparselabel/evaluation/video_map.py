"""Video-mAP: detected tubes ranked by tube score, per class.

Interface compatible with ACT's ``videoAP``:

- ``gttubes``: {video: {label: [ndarray (n, 5) rows frame, x1, y1, x2, y2]}},
  frames 1-based; every video in it is evaluated;
- ``tube_dets``: {label: [(video, tube_score, ndarray (n, 6) rows frame, x1,
  y1, x2, y2, box_score)]}.

A detected tube is a true positive when its spatio-temporal IoU (temporal IoU
x mean spatial IoU over the shared frames, :func:`~.boxes.tube_iou`) with a
ground-truth tube of its class in its video reaches the threshold. There is no
tube NMS in here: apply :func:`~.nms.nms_tube_dets` first if the detector
does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.ap import greedy_match, per_class_ap
from sparselabel.evaluation.boxes import as_tube, check_convention, parsed_tube_iou_matrix

TubeDet = tuple[str, float, np.ndarray]
TubeDets = Mapping[int, Sequence[TubeDet]]


def video_map(
    gttubes: Mapping[str, Mapping[int, Sequence[np.ndarray]]],
    tube_dets: TubeDets,
    iou: float = 0.5,
    convention: str = "act",
) -> tuple[float, dict[int, float]]:
    """(mAP, {label: AP}) of detected tubes at spatio-temporal IoU threshold ``iou``.

    Every class with a ground-truth tube in ``gttubes`` gets an AP (0 without
    detections); mAP is their mean (NaN if there is no ground truth at all).
    Tubes are processed by decreasing tube score; equal scores are ordered by
    (video, first frame, last frame, mean box), then input order. Detections
    in videos absent from ``gttubes`` are false positives. Inputs are not
    modified.
    """
    check_convention(convention)
    gt_items = [
        (int(label), video, as_tube(tube, f"ground-truth tube {k} of class {label} in {video!r}"))
        for video, per_label in gttubes.items()
        for label, tubes in per_label.items()
        for k, tube in enumerate(tubes)
    ]
    det_items = flatten_tube_dets(tube_dets)
    parsed = [as_tube(tube) for _, _, _, tube in det_items]  # checked by flatten_tube_dets
    order = tube_det_order(det_items, parsed)

    def box_matrix(det_idx: list[int], gt_idx: list[int]) -> np.ndarray:
        return parsed_tube_iou_matrix([parsed[i] for i in det_idx], [gt_items[j][2] for j in gt_idx], convention)

    tp = video_level_tp(
        [(lab, vid) for lab, vid, _ in gt_items],
        [(lab, vid) for lab, vid, _, _ in det_items],
        order, box_matrix, iou, convention,
    )
    gt_label = np.array([lab for lab, _, _ in gt_items], dtype=np.int64)
    det_label = np.array([lab for lab, _, _, _ in det_items], dtype=np.int64)
    return per_class_ap(gt_label, det_label, order, tp, convention)


def flatten_tube_dets(tube_dets: TubeDets) -> list[tuple[int, str, float, np.ndarray]]:
    """(label, video, score, tube) for every detected tube, checked."""
    items = []
    for label, dets in tube_dets.items():
        for k, det in enumerate(dets):
            if len(det) != 3:
                raise SparseLabelError(
                    f"tube detection {k} of class {label} must be (video, tube_score, tube); got {len(det)} fields"
                )
            video, score, tube = det
            score = float(score)
            if not np.isfinite(score):
                raise SparseLabelError(f"tube detection {k} of class {label} in {video!r} has score {score}")
            as_tube(tube, f"tube detection {k} of class {label} in {video!r}")
            items.append((int(label), str(video), score, np.asarray(tube)))
    return items


def tube_det_order(
    items: Sequence[tuple[int, str, float, np.ndarray]], parsed: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Processing order: score descending, ties by video, first/last frame, mean box, input order."""
    scores = np.array([score for _, _, score, _ in items], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    tied = _in_tied_runs(scores[order])
    if not tied.any():
        return order

    def key(i: int) -> tuple:
        frames, boxes = parsed[i]
        return (-scores[i], items[i][1], int(frames[0]), int(frames[-1]), *boxes.mean(axis=0).tolist(), i)

    order[tied] = sorted(order[tied].tolist(), key=key)
    return order


def _in_tied_runs(sorted_scores: np.ndarray) -> np.ndarray:
    """Flags of the entries of a sorted array that equal a neighbour."""
    same = sorted_scores[1:] == sorted_scores[:-1]
    return np.r_[same, False] | np.r_[False, same]


def video_level_tp(
    gt_groups: Sequence[tuple[int, str]],
    det_groups: Sequence[tuple[int, str]],
    order: np.ndarray,
    iou_matrix: Callable[[list[int], list[int]], np.ndarray],
    iou: float,
    convention: str,
) -> np.ndarray:
    """TP flag of each detection, matching within (label, video) groups.

    ``iou_matrix(det_indices, gt_indices)`` returns the pairwise overlaps of
    one group, so box tubes and mask tubes share this code.
    """
    gt_by_group: dict[tuple[int, str], list[int]] = {}
    for j, group in enumerate(gt_groups):
        gt_by_group.setdefault(group, []).append(j)
    det_by_group: dict[tuple[int, str], list[int]] = {}
    for i, group in enumerate(det_groups):
        det_by_group.setdefault(group, []).append(i)
    pair_det, pair_gt, pair_iou = [], [], []
    for group, dets in det_by_group.items():
        gts = gt_by_group.get(group)
        if not gts:
            continue
        matrix = iou_matrix(dets, gts)
        pair_det.append(np.repeat(dets, len(gts)))
        pair_gt.append(np.tile(gts, len(dets)))
        pair_iou.append(matrix.reshape(-1))
    n_det = len(det_groups)
    group_id = {g: k for k, g in enumerate(det_by_group)}
    det_group = np.array([group_id[g] for g in det_groups], dtype=np.int64)
    position = np.empty(n_det, dtype=np.int64)
    position[order] = np.arange(n_det)
    if not pair_det:
        return np.zeros(n_det, dtype=bool)
    return greedy_match(
        n_det, det_group, position, np.concatenate(pair_det), np.concatenate(pair_gt),
        np.concatenate(pair_iou), len(gt_groups), iou, convention,
    )

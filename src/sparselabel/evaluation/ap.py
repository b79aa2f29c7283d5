"""Precision-recall curves, average precision and greedy matching.

Two AP formulas, named after the code that defines them:

- ``act`` (ACT's ``pr_to_ap``): the raw curve, one point per detection, with
  (recall 0, precision 1) prepended, integrated with the trapezoidal rule.
- ``voc`` (MultiSports / MMAction2 ``pr_to_ap_voc``): all-point interpolated
  VOC AP: precision made monotone (the running max from the right), summed
  over the recall steps.

Matching is greedy in score order. Under ``act`` a detection takes the best-IoU
ground truth among those not matched yet; under ``voc`` it looks at the best-IoU
ground truth among all of them and is a false positive if that one is taken.
"""

from __future__ import annotations

import numpy as np

from sparselabel.evaluation.boxes import check_convention


def pr_curve(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection, given TP flags in score order."""
    tp = np.asarray(tp, dtype=bool)
    ctp = np.cumsum(tp, dtype=np.float64)
    rank = np.arange(1, len(tp) + 1, dtype=np.float64)
    precision = ctp / rank if len(tp) else np.zeros(0)
    recall = ctp / num_gt if num_gt > 0 else np.zeros(len(tp))
    return precision, recall


def ap_act(precision: np.ndarray, recall: np.ndarray) -> float:
    """ACT AP: trapezoids under the raw curve starting at (recall 0, precision 1)."""
    p = np.concatenate([[1.0], np.asarray(precision, dtype=np.float64)])
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64)])
    return float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) / 2.0))


def ap_voc(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-point AP: monotone precision envelope summed over recall changes."""
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def average_precision(tp: np.ndarray, num_gt: int, convention: str = "act") -> float:
    """AP of detections whose TP flags are given in processing (score) order.

    0 when there is no ground truth to find or no detection at all.
    """
    if num_gt <= 0:
        return 0.0
    precision, recall = pr_curve(tp, num_gt)
    return ap_act(precision, recall) if check_convention(convention) == "act" else ap_voc(precision, recall)


def group_ranks(group: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Rank of each detection among those of its group, by ``position`` (processing order)."""
    group = np.asarray(group)
    order = np.lexsort((position, group))
    ranks = np.empty(len(group), dtype=np.int64)
    if len(group) == 0:
        return ranks
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    run = np.diff(np.r_[starts, len(g)])
    ranks[order] = np.arange(len(g)) - np.repeat(starts, run)
    return ranks


def greedy_match(
    num_det: int,
    det_group: np.ndarray,
    det_position: np.ndarray,
    pair_det: np.ndarray,
    pair_gt: np.ndarray,
    pair_iou: np.ndarray,
    num_gt: int,
    threshold: float,
    convention: str = "act",
) -> np.ndarray:
    """True-positive flag of every detection under greedy matching.

    ``pair_*`` list the (detection, ground truth, IoU) pairs that can compete:
    the same class in the same frame (or video), i.e. the same ``det_group``.
    Detections of one group see only that group's ground truth, so the k-th
    detections (by ``det_position``, the processing order) of all groups can be
    matched at once: the loop runs over ranks within groups, not over
    detections. IoU ties go to the ground truth listed first, like
    ``np.argmax`` in ACT and MMAction2.
    """
    check_convention(convention)
    tp = np.zeros(num_det, dtype=bool)
    keep = np.asarray(pair_iou) >= threshold
    d = np.asarray(pair_det)[keep]
    g = np.asarray(pair_gt)[keep]
    iou = np.asarray(pair_iou, dtype=np.float64)[keep]
    if len(d) == 0:
        return tp
    # only detections with a candidate above the threshold can match: rank those
    candidates = np.unique(d)
    det_rank = np.zeros(num_det, dtype=np.int64)
    det_rank[candidates] = group_ranks(np.asarray(det_group)[candidates], np.asarray(det_position)[candidates])
    rank = det_rank[d]
    order = np.lexsort((g, -iou, d, rank))
    d, g, rank = d[order], g[order], rank[order]
    matched = np.zeros(num_gt, dtype=bool)
    bounds = np.r_[0, np.flatnonzero(rank[1:] != rank[:-1]) + 1, len(rank)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        rd, rg = d[lo:hi], g[lo:hi]
        if convention == "act":
            free = ~matched[rg]
            rd, rg = rd[free], rg[free]
        if len(rd) == 0:
            continue
        first = np.flatnonzero(np.r_[True, rd[1:] != rd[:-1]])  # best pair of each detection
        bd, bg = rd[first], rg[first]
        ok = ~matched[bg]
        tp[bd[ok]] = True
        matched[bg] = True
    return tp


def combine_keys(*columns: np.ndarray) -> np.ndarray:
    """One int64 key per row of the integer ``columns`` (equal rows, equal keys).

    Mixed-radix packing when it fits in 62 bits, else ranks from ``np.unique``.
    """
    cols = [np.asarray(c, dtype=np.int64) for c in columns]
    n = len(cols[0]) if cols else 0
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lows = [int(c.min()) for c in cols]
    spans = [int(c.max()) - lo + 1 for c, lo in zip(cols, lows, strict=True)]
    if float(np.prod([float(s) for s in spans])) < 2.0**62:
        key = np.zeros(n, dtype=np.int64)
        for c, lo, span in zip(cols, lows, spans, strict=True):
            key = key * span + (c - lo)
        return key
    _, inverse = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def pairs_by_key(gt_key: np.ndarray, det_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, ground truth) index pairs with equal keys, ground truth in input order."""
    gt_key = np.asarray(gt_key, dtype=np.int64)
    det_key = np.asarray(det_key, dtype=np.int64)
    gorder = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gorder]
    lo = np.searchsorted(sorted_keys, det_key, side="left")
    hi = np.searchsorted(sorted_keys, det_key, side="right")
    count = hi - lo
    total = int(count.sum())
    pair_det = np.repeat(np.arange(len(det_key)), count)
    within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    pair_gt = gorder[np.repeat(lo, count) + within]
    return pair_det, pair_gt


def per_class_ap(
    gt_label: np.ndarray,
    det_label: np.ndarray,
    order: np.ndarray,
    tp: np.ndarray,
    convention: str,
) -> tuple[float, dict[int, float]]:
    """(mAP, {label: AP}) over the classes that have ground truth.

    ``order`` is the processing order of the detections; detections of classes
    without ground truth are ignored. mAP is NaN when nothing has ground truth.
    """
    labels, counts = np.unique(np.asarray(gt_label, dtype=np.int64), return_counts=True)
    ordered_labels = np.asarray(det_label, dtype=np.int64)[order]
    ordered_tp = np.asarray(tp, dtype=bool)[order]
    per_class: dict[int, float] = {}
    for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
        flags = ordered_tp[ordered_labels == label]
        per_class[int(label)] = average_precision(flags, int(count), convention)
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return mean, per_class

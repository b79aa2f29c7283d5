"""Frame-mAP: every detected box of the test set ranked by score, per class.

Interface compatible with the ACT evaluation code (``frameAP`` in ACT.py), so
detections written by ACT, MOC, YOWO and friends can be scored as they are:

- ``gttubes``: {video: {label: [ndarray (n, 5) rows frame, x1, y1, x2, y2]}},
  frames 1-based (ACT's ``*-GT.pkl`` layout);
- ``frame_dets``: ndarray (N, 8) rows video_index, frame, label, score,
  x1, y1, x2, y2, with ``video_index`` indexing ``videos``.

Which ground truth counts: every box of the class in the evaluated videos
(``videos``), so frames without ground truth contribute no positives, and a
detection in such a frame (or in a frame where its class is absent) is a
false positive, exactly as in ACT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.ap import (
    combine_keys,
    greedy_match,
    pairs_by_key,
    per_class_ap,
)
from sparselabel.evaluation.boxes import check_convention, paired_box_iou

GtTubes = Mapping[str, Mapping[int, Sequence[np.ndarray]]]


def frame_map(
    gttubes: GtTubes,
    frame_dets: np.ndarray,
    videos: Sequence[str],
    iou: float = 0.5,
    convention: str = "act",
) -> tuple[float, dict[int, float]]:
    """(mAP, {label: AP}) of per-frame box detections at IoU threshold ``iou``.

    Every class with ground truth in ``videos`` gets an AP (0 if it has no
    detection); mAP is their mean (NaN if no class has ground truth).
    Detections are processed by decreasing score; equal scores are ordered by
    (video_index, frame, x1, y1, x2, y2), so the result never depends on the
    order of the rows. Inputs are not modified.
    """
    check_convention(convention)
    gt = gt_boxes(gttubes, videos)
    dets = as_frame_dets(frame_dets, len(videos))
    order = frame_det_order(dets)

    def box_ious(pair_det: np.ndarray, pair_gt: np.ndarray) -> np.ndarray:
        return paired_box_iou(dets[pair_det, 4:8], gt["boxes"][pair_gt], convention)

    tp = frame_level_tp(
        gt["label"], gt["video"], gt["frame"],
        dets[:, 2].astype(np.int64), dets[:, 0].astype(np.int64), np.rint(dets[:, 1]).astype(np.int64),
        order, box_ious, iou, convention,
    )
    return per_class_ap(gt["label"], dets[:, 2].astype(np.int64), order, tp, convention)


def frame_level_tp(
    gt_label: np.ndarray,
    gt_video: np.ndarray,
    gt_frame: np.ndarray,
    det_label: np.ndarray,
    det_video: np.ndarray,
    det_frame: np.ndarray,
    order: np.ndarray,
    pair_iou: Callable[[np.ndarray, np.ndarray], np.ndarray],
    iou: float,
    convention: str,
) -> np.ndarray:
    """TP flag of each detection, matching within (label, video, frame) groups.

    ``pair_iou(pair_det, pair_gt)`` gives the overlap of candidate pairs, so
    boxes and masks share this code.
    """
    n_gt, n_det = len(gt_label), len(det_label)
    keys = combine_keys(
        np.r_[gt_label, det_label], np.r_[gt_video, det_video], np.r_[gt_frame, det_frame]
    )
    gt_key, det_key = keys[:n_gt], keys[n_gt:]
    pair_det, pair_gt = pairs_by_key(gt_key, det_key)
    ious = pair_iou(pair_det, pair_gt) if len(pair_det) else np.zeros(0)
    position = np.empty(n_det, dtype=np.int64)
    position[order] = np.arange(n_det)
    return greedy_match(n_det, det_key, position, pair_det, pair_gt, ious, n_gt, iou, convention)


def gt_boxes(gttubes: GtTubes, videos: Sequence[str]) -> dict[str, np.ndarray]:
    """Flatten the ground-truth tubes of ``videos`` into per-box arrays.

    Returns label, video (index into ``videos``), frame and boxes (G, 4).
    """
    labels, vids, frames, boxes = [], [], [], []
    for vi, video in enumerate(videos):
        if video not in gttubes:
            raise SparseLabelError(f"video {video!r} is evaluated but has no entry in the ground truth")
        for label, tubes in gttubes[video].items():
            for k, tube in enumerate(tubes):
                arr = np.asarray(tube, dtype=np.float64)
                if arr.ndim != 2 or arr.shape[1] < 5:
                    raise SparseLabelError(
                        f"ground-truth tube {k} of class {label} in {video!r} must be (n, 5) rows "
                        f"frame, x1, y1, x2, y2; got shape {np.shape(tube)}"
                    )
                labels.append(np.full(len(arr), int(label), dtype=np.int64))
                vids.append(np.full(len(arr), vi, dtype=np.int64))
                frames.append(np.rint(arr[:, 0]).astype(np.int64))
                boxes.append(arr[:, 1:5])
    if not labels:
        empty = np.zeros(0, dtype=np.int64)
        return {"label": empty, "video": empty, "frame": empty, "boxes": np.zeros((0, 4))}
    return {
        "label": np.concatenate(labels),
        "video": np.concatenate(vids),
        "frame": np.concatenate(frames),
        "boxes": np.concatenate(boxes),
    }


def as_frame_dets(frame_dets: np.ndarray, num_videos: int, columns: int = 8) -> np.ndarray:
    """A float64 copy of the detections, checked: (N, columns), video indices in range."""
    dets = np.array(frame_dets, dtype=np.float64, copy=True)
    if dets.size == 0:
        return np.zeros((0, columns))
    if dets.ndim != 2 or dets.shape[1] < columns:
        raise SparseLabelError(
            f"frame detections must be an (N, {columns}) array of video_index, frame, label, score"
            f"{', x1, y1, x2, y2' if columns == 8 else ''}; got shape {dets.shape}"
        )
    if not np.all(np.isfinite(dets[:, :columns])):
        raise SparseLabelError("frame detections contain NaN or infinite values")
    vid = dets[:, 0]
    if np.any(vid != np.rint(vid)) or np.any(vid < 0) or np.any(vid >= num_videos):
        raise SparseLabelError(
            f"frame detections: video_index must be an integer in 0..{num_videos - 1} (an index into the video list)"
        )
    return dets[:, :columns]


def frame_det_order(dets: np.ndarray) -> np.ndarray:
    """Processing order: score descending, ties by video, frame, then the box (or input order).

    Only the runs of equal scores pay for the multi-key sort.
    """
    if len(dets) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-dets[:, 3], kind="stable")
    scores = dets[order, 3]
    same = scores[1:] == scores[:-1]
    tied = np.r_[same, False] | np.r_[False, same]
    if not tied.any():
        return order
    idx = order[tied]
    sub = dets[idx]
    keys = [sub[:, c] for c in range(sub.shape[1] - 1, 3, -1)]  # box columns, last first
    keys += [sub[:, 1], sub[:, 0], -sub[:, 3]]
    order[tied] = idx[np.lexsort(keys)]
    return order

"""Non-maximum suppression of boxes and tubes, kept out of the metrics.

The metrics score whatever they are given; a detector that emits many
near-duplicates should be cleaned with these first. Suppression removes a
candidate whose IoU with an already kept, higher-scored one is strictly
greater than ``iou`` (ACT's ``nms3dt`` keeps ``iou <= overlap``). Equal
scores keep input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparselabel.evaluation.boxes import as_boxes, check_convention, spatial_iou, tube_iou_matrix
from sparselabel.evaluation.frame_map import as_frame_dets
from sparselabel.evaluation.video_map import TubeDets, flatten_tube_dets


def _greedy_nms(scores: np.ndarray, overlaps: np.ndarray, iou: float, top_k: int | None) -> np.ndarray:
    """Indices kept by greedy NMS over a precomputed (N, N) overlap matrix."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(int(i))
        if top_k is not None and len(keep) >= top_k:
            break
        alive &= overlaps[i] <= iou
    return np.array(keep, dtype=np.int64)


def nms_boxes(
    boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5, convention: str = "act", top_k: int | None = None
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first."""
    b = as_boxes(boxes) if len(np.asarray(boxes)) else np.zeros((0, 4))
    if len(b) != len(scores):
        raise ValueError(f"{len(b)} boxes but {len(scores)} scores")
    return _greedy_nms(np.asarray(scores), spatial_iou(b, b, convention), iou, top_k)


def nms_tubes(
    tubes: Sequence[np.ndarray], scores: Sequence[float], iou: float = 0.5, convention: str = "act",
    top_k: int | None = None,
) -> np.ndarray:
    """Indices of the tubes kept by greedy NMS on spatio-temporal IoU, highest score first."""
    if len(tubes) != len(scores):
        raise ValueError(f"{len(tubes)} tubes but {len(scores)} scores")
    return _greedy_nms(np.asarray(scores, dtype=np.float64), tube_iou_matrix(tubes, tubes, convention), iou, top_k)


def nms_frame_dets(frame_dets: np.ndarray, iou: float = 0.5, convention: str = "act", top_k: int | None = None) -> np.ndarray:
    """Frame detections (N, 8) after NMS within each (video, frame, label); a new array."""
    check_convention(convention)
    dets = as_frame_dets(frame_dets, num_videos=np.iinfo(np.int64).max)
    if len(dets) == 0:
        return dets
    _, group = np.unique(np.rint(dets[:, :3]), axis=0, return_inverse=True)
    group = group.reshape(-1)
    kept = []
    order = np.argsort(group, kind="stable")
    bounds = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1, len(order)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        idx = order[lo:hi]
        if len(idx) == 1:
            kept.append(idx)
            continue
        kept.append(idx[nms_boxes(dets[idx, 4:8], dets[idx, 3], iou, convention, top_k)])
    return dets[np.sort(np.concatenate(kept))]


def nms_tube_dets(tube_dets: TubeDets, iou: float = 0.5, convention: str = "act", top_k: int | None = None) -> dict:
    """Tube detections after NMS within each (label, video); the same layout, new lists."""
    items = flatten_tube_dets(tube_dets)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, (label, video, _, _) in enumerate(items):
        groups.setdefault((label, video), []).append(i)
    kept: set[int] = set()
    for idx in groups.values():
        chosen = nms_tubes([items[i][3] for i in idx], [items[i][2] for i in idx], iou, convention, top_k)
        kept.update(idx[k] for k in chosen)
    out: dict[int, list] = {int(label): [] for label in tube_dets}
    for i, (label, video, score, tube) in enumerate(items):
        if i in kept:
            out[label].append((video, score, tube.copy()))
    return out

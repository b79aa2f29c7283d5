"""Pseudo-labels for unannotated frames and the per-frame loss weights (DESIGN section 3).

Pure numpy. Frame indices are 0-based.

Weights (Max-Gaussian Weighted loss, paper Eq. 4), a_j = annotated frames:

    w_i = max_j exp(-0.5 * ((i - a_j) / sigma) ** 2)

``mask`` is the sigma -> 0 limit (annotated frames only), ``interp`` the
sigma -> inf limit (every frame counts fully).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

import numpy as np

from sparselabel.config import Loss

LOSSES = get_args(Loss)  # ("mgw", "mask", "interp"), the values of train.loss
DEFAULT_SIGMA = 1.3


def distance_to_annotated(num_frames: int, annotated: Iterable[int]) -> np.ndarray:
    """|i - a*| for every frame i, a* the nearest annotated frame; inf where none is annotated."""
    marks = np.unique(np.asarray(list(annotated), dtype=np.int64))
    if marks.size == 0:
        return np.full(num_frames, np.inf)
    frames = np.arange(num_frames)
    right = np.clip(np.searchsorted(marks, frames), 0, marks.size - 1)
    left = np.clip(right - 1, 0, marks.size - 1)
    return np.minimum(np.abs(frames - marks[left]), np.abs(frames - marks[right])).astype(np.float64)


def mgw_weights(num_frames: int, annotated: Iterable[int], sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Eq. 4: a Gaussian of the distance to the nearest annotated frame (1 on annotated frames)."""
    distance = distance_to_annotated(num_frames, annotated)
    if sigma <= 0:
        return (distance == 0).astype(np.float64)
    with np.errstate(over="ignore"):
        return np.exp(-0.5 * (distance / sigma) ** 2)


def frame_weights(
    num_frames: int, annotated: Iterable[int], loss: str = "mgw", sigma: float = DEFAULT_SIGMA
) -> np.ndarray:
    """Per-frame localisation-loss weights for ``loss`` in ``LOSSES``; all zero if nothing is annotated."""
    annotated = list(annotated)
    if loss == "mgw":
        return mgw_weights(num_frames, annotated, sigma)
    distance = distance_to_annotated(num_frames, annotated)
    if loss == "mask":
        return (distance == 0).astype(np.float64)
    if loss == "interp":
        return np.isfinite(distance).astype(np.float64)
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")


def interpolate_boxes(ann_frames: np.ndarray, ann_boxes: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Boxes at ``frames``: linear between annotated frames, the nearest annotation outside them."""
    order = np.argsort(ann_frames)
    xp = np.asarray(ann_frames, dtype=np.float64)[order]
    fp = np.asarray(ann_boxes, dtype=np.float64).reshape(-1, 4)[order]
    query = np.asarray(frames, dtype=np.float64)
    return np.stack([np.interp(query, xp, fp[:, c]) for c in range(4)], axis=1)


def nearest_annotated(ann_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Index into ``ann_frames`` (sorted) of the nearest annotated frame; ties go to the earlier one."""
    ann = np.asarray(ann_frames, dtype=np.int64)
    query = np.asarray(frames, dtype=np.int64)
    right = np.clip(np.searchsorted(ann, query), 0, ann.size - 1)
    left = np.clip(right - 1, 0, ann.size - 1)
    take_left = np.abs(query - ann[left]) <= np.abs(ann[right] - query)
    return np.where(take_left, left, right)


def actor_presence(num_frames: int, annotated: np.ndarray, actor_frames: np.ndarray) -> np.ndarray:
    """Frames where an actor is assumed present, from the annotated frames that do or don't show it.

    Between two consecutive annotated frames that both show the actor it is present;
    between one that shows it and one that doesn't, it is present up to the midpoint
    (the nearer annotation decides, ties to present); before the first and after the
    last annotated frame, the nearest annotation decides, i.e. it repeats.
    """
    annotated = np.unique(np.asarray(annotated, dtype=np.int64))
    shows = np.isin(annotated, actor_frames)
    if annotated.size == 0 or not shows.any():
        return np.zeros(num_frames, dtype=bool)
    frames = np.arange(num_frames)
    left, right = _neighbours(annotated, frames)
    d_left = np.abs(frames - annotated[left])
    d_right = np.abs(annotated[right] - frames)
    both = shows[left] & shows[right]
    nearer = np.where(d_left <= d_right, shows[left], shows[right])
    tie_any = (d_left == d_right) & (shows[left] | shows[right])
    return both | nearer | tie_any


def _neighbours(annotated: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the last annotated frame <= i and the first >= i (each falls back to the other)."""
    left = np.searchsorted(annotated, frames, side="right") - 1
    right = np.searchsorted(annotated, frames, side="left")
    left = np.where(left < 0, right, left)
    right = np.where(right >= annotated.size, left, right)
    return left, right


def pseudo_boxes(
    num_frames: int, annotated: np.ndarray, actor_frames: np.ndarray, actor_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, boxes) of one actor's pseudo-label tube over the whole video."""
    order = np.argsort(actor_frames)
    actor_frames = np.asarray(actor_frames, dtype=np.int64)[order]
    actor_boxes = np.asarray(actor_boxes, dtype=np.float64).reshape(-1, 4)[order]
    frames = np.flatnonzero(actor_presence(num_frames, annotated, actor_frames))
    return frames, interpolate_boxes(actor_frames, actor_boxes, frames)


def pseudo_mask_indices(num_frames: int, annotated: np.ndarray, actor_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, k) of one actor: present frames, each taking answered mask k of the actor's
    answers in frame order (the nearest one). Indices rather than copies of the masks."""
    actor_frames = np.sort(np.asarray(actor_frames, dtype=np.int64))
    frames = np.flatnonzero(actor_presence(num_frames, annotated, actor_frames))
    return frames, nearest_annotated(actor_frames, frames)


def pseudo_masks(
    num_frames: int, annotated: np.ndarray, actor_frames: np.ndarray, actor_masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, masks) of one actor: each present frame takes the nearest annotated mask."""
    order = np.argsort(actor_frames)
    frames, nearest = pseudo_mask_indices(num_frames, annotated, actor_frames)
    return frames, np.asarray(actor_masks, dtype=bool)[order][nearest]

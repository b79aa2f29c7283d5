"""Box, temporal and tube overlaps in the two literature conventions.

``act`` (Kalogeiton et al., ACT detector; most UCF101-24 / J-HMDB papers) counts
pixels inclusively: a box (x1, y1, x2, y2) covers (x2 - x1 + 1) x (y2 - y1 + 1)
pixels and a tube over frames s..e lasts e - s + 1 frames. ``voc``
(MultiSports / MMAction2) treats coordinates and frame numbers as continuous:
area (x2 - x1)(y2 - y1), duration e - s. The two differ most on small boxes and
short overlaps, so every function takes the convention explicitly.

Tubes are arrays with one row per frame: frame, x1, y1, x2, y2 (further columns,
such as a per-box score, are ignored), frames strictly increasing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparselabel.errors import SparseLabelError

CONVENTIONS = ("act", "voc")


def check_convention(convention: str) -> str:
    """Return ``convention`` if it is known, else raise naming the choices."""
    if convention not in CONVENTIONS:
        raise SparseLabelError(f"unknown convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
    return convention


def _plus(convention: str) -> float:
    """The +1 that ``act`` adds to widths, heights and durations."""
    return 1.0 if check_convention(convention) == "act" else 0.0


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boxes as a float64 (N, 4) array; a single box (4,) becomes (1, 4)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise SparseLabelError(f"boxes must have shape (N, 4), got {np.shape(boxes)}")
    return arr


def box_area(boxes: np.ndarray, convention: str = "act") -> np.ndarray:
    """Areas of (N, 4) boxes; negative extents count as 0."""
    b = as_boxes(boxes)
    plus = _plus(convention)
    return np.maximum(0.0, b[:, 2] - b[:, 0] + plus) * np.maximum(0.0, b[:, 3] - b[:, 1] + plus)


def paired_box_iou(a: np.ndarray, b: np.ndarray, convention: str = "act") -> np.ndarray:
    """IoU of a[i] with b[i] for aligned (N, 4) arrays; 0 where the union is empty."""
    a, b = as_boxes(a), as_boxes(b)
    plus = _plus(convention)
    w = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + plus)
    h = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + plus)
    inter = w * h
    union = box_area(a, convention) + box_area(b, convention) - inter
    return _safe_div(inter, union)


def spatial_iou(boxes1: np.ndarray, boxes2: np.ndarray, convention: str = "act") -> np.ndarray:
    """Pairwise IoU matrix (N, M) between two sets of boxes (x1, y1, x2, y2).

    A single box (4,) counts as a set of one. A pair whose union has no area
    (degenerate ``voc`` boxes) gets IoU 0 rather than NaN.
    """
    a, b = as_boxes(boxes1), as_boxes(boxes2)
    plus = _plus(convention)
    w = np.maximum(0.0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + plus)
    h = np.maximum(0.0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + plus)
    inter = w * h
    union = box_area(a, convention)[:, None] + box_area(b, convention)[None, :] - inter
    return _safe_div(inter, union)


def temporal_iou(start1, end1, start2, end2, convention: str = "act"):
    """Temporal IoU of frame ranges [start1, end1] and [start2, end2] (ends inclusive).

    ``act``: (min end - max start + 1) / (max end - min start + 1), so tubes
    sharing one frame overlap by one frame. ``voc``: the same without the +1s
    (MultiSports), so one shared frame gives 0. Two identical one-frame ranges
    have an empty ``voc`` union; they get 1 (MultiSports' code would divide by
    zero). Works elementwise on arrays.
    """
    plus = _plus(convention)
    s1, e1, s2, e2 = (np.asarray(x, dtype=np.float64) for x in (start1, end1, start2, end2))
    tmin, tmax = np.maximum(s1, s2), np.minimum(e1, e2)
    inter = np.where(tmax < tmin, 0.0, tmax - tmin + plus)
    union = np.maximum(e1, e2) - np.minimum(s1, s2) + plus
    same = (union <= 0) & (tmax >= tmin)
    out = np.where(same, 1.0, _safe_div(inter, union))
    return float(out) if out.ndim == 0 else out


def as_tube(tube: np.ndarray, what: str = "tube") -> tuple[np.ndarray, np.ndarray]:
    """(frames int64 (n,), boxes float64 (n, 4)) of a tube array with rows frame, x1, y1, x2, y2, ..."""
    arr = np.asarray(tube, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 5 or len(arr) == 0:
        raise SparseLabelError(f"{what} must be a non-empty (n, 5+) array of frame, x1, y1, x2, y2 rows, got shape {np.shape(tube)}")
    frames = np.rint(arr[:, 0]).astype(np.int64)
    if (frames[1:] <= frames[:-1]).any():
        raise SparseLabelError(f"{what}: frame numbers must be strictly increasing")
    return frames, arr[:, 1:5]


def tube_iou(tube1: np.ndarray, tube2: np.ndarray, convention: str = "act") -> float:
    """Spatio-temporal IoU of two tubes: temporal IoU x mean spatial IoU.

    The spatial mean runs over the frames inside the temporal intersection that
    both tubes have a box for (for gap-free tubes, as in ACT, every frame of the
    intersection); if there is none the IoU is 0.
    """
    return float(tube_iou_matrix([tube1], [tube2], convention)[0, 0])


def tube_iou_matrix(
    tubes1: Sequence[np.ndarray], tubes2: Sequence[np.ndarray], convention: str = "act"
) -> np.ndarray:
    """Pairwise :func:`tube_iou` (len(tubes1), len(tubes2)), vectorised over frames."""
    check_convention(convention)
    return parsed_tube_iou_matrix([as_tube(t) for t in tubes1], [as_tube(t) for t in tubes2], convention)


Parsed = tuple[np.ndarray, np.ndarray]


def parsed_tube_iou_matrix(parsed1: Sequence[Parsed], parsed2: Sequence[Parsed], convention: str) -> np.ndarray:
    """:func:`tube_iou_matrix` of tubes already split by :func:`as_tube` into (frames, boxes)."""
    out = np.zeros((len(parsed1), len(parsed2)))
    if not parsed1 or not parsed2:
        return out
    start1 = np.array([f[0] for f, _ in parsed1])
    end1 = np.array([f[-1] for f, _ in parsed1])
    start2 = np.array([f[0] for f, _ in parsed2])
    end2 = np.array([f[-1] for f, _ in parsed2])
    tiou = np.asarray(temporal_iou(start1[:, None], end1[:, None], start2[None, :], end2[None, :], convention))
    if not np.any(tiou > 0):
        return out
    first = int(min(start1.min(), start2.min()))
    length = int(max(end1.max(), end2.max())) - first + 1
    dense2 = _dense(parsed2, first, length)  # (n2, T, 4), NaN where absent
    # chunk the first set so that the (chunk, n2, T) work arrays stay small
    chunk = max(1, int(1_000_000 // max(1, len(parsed2) * length)))
    for lo in range(0, len(parsed1), chunk):
        dense1 = _dense(parsed1[lo : lo + chunk], first, length)
        out[lo : lo + chunk] = _mean_spatial(dense1, dense2, convention)
    return np.where(tiou > 0, out * tiou, 0.0)


def _dense(parsed: Sequence[tuple[np.ndarray, np.ndarray]], first: int, length: int) -> np.ndarray:
    """Boxes laid out on a common frame axis: (n, length, 4), NaN where a tube has no box."""
    dense = np.full((len(parsed), length, 4), np.nan)
    for k, (frames, boxes) in enumerate(parsed):
        dense[k, frames - first] = boxes
    return dense


def _mean_spatial(d1: np.ndarray, d2: np.ndarray, convention: str) -> np.ndarray:
    """Mean over shared frames of the per-frame IoU, (n1, n2); 0 where no frame is shared."""
    plus = _plus(convention)
    a, b = d1[:, None], d2[None, :]  # (n1, 1, T, 4), (1, n2, T, 4)
    with np.errstate(invalid="ignore"):
        w = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + plus)
        h = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + plus)
        area_a = np.maximum(0.0, a[..., 2] - a[..., 0] + plus) * np.maximum(0.0, a[..., 3] - a[..., 1] + plus)
        area_b = np.maximum(0.0, b[..., 2] - b[..., 0] + plus) * np.maximum(0.0, b[..., 3] - b[..., 1] + plus)
    shared = ~np.isnan(a[..., 0]) & ~np.isnan(b[..., 0])
    inter = np.where(shared, w * h, 0.0)
    union = np.where(shared, area_a + area_b - inter, 0.0)
    iou = _safe_div(inter, union)
    count = shared.sum(axis=-1)
    return _safe_div(iou.sum(axis=-1), count)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (no NaN, no warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out

"""Mask metrics: frame/video AP with mask IoU, and DAVIS J & F.

Detection AP with masks (J-HMDB pixel annotations) uses plain arrays, no RLE:

- ground truth ``gt_masks``: {video: {label: [(frames, masks)]}} with
  ``frames`` (n,) 1-based frame numbers and ``masks`` (n, H, W) bool, one
  entry per actor tube. Frames whose mask is empty (actor invisible) are not
  ground truth: nothing could ever match them.
- frame detections: ``frame_dets`` (N, 4+) rows video_index, frame, label,
  score (further columns, such as a box, are ignored) and ``det_masks``, a
  sequence of N (H, W) bool masks;
- tube detections: {label: [(video, tube_score, frames (n,), masks (n, H, W))]}.

Matching, AP and the two conventions are those of the box metrics; the only
difference between ``act`` and ``voc`` here is the AP formula, the treatment of
a detection whose best ground truth is taken, and (for tubes) the temporal IoU.
Mask IoU has no +1: a mask is a set of pixels.

Video object segmentation (DAVIS): region similarity J (Jaccard index) and
boundary accuracy F, reimplemented from the DAVIS 2017 evaluation toolkit
(``davis2017/metrics.py``, ``utils.db_statistics``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.ap import per_class_ap
from sparselabel.evaluation.boxes import check_convention, temporal_iou
from sparselabel.evaluation.frame_map import as_frame_dets, frame_level_tp
from sparselabel.evaluation.video_map import video_level_tp

MaskTube = tuple[np.ndarray, np.ndarray]
GtMasks = Mapping[str, Mapping[int, Sequence[MaskTube]]]
MaskTubeDet = tuple[str, float, np.ndarray, np.ndarray]


# ---------------------------------------------------------------- mask IoU


def mask_iou(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) of two stacks of same-size masks; 0 where both are empty.

    A single (H, W) mask counts as a stack of one.
    """
    a = _stack(masks1)
    b = _stack(masks2)
    if a.shape[1:] != b.shape[1:]:
        raise SparseLabelError(f"masks of different sizes: {a.shape[1:]} and {b.shape[1:]}")
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    out = np.zeros(inter.shape)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _stack(masks: np.ndarray) -> np.ndarray:
    arr = np.asarray(masks).astype(bool, copy=False)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise SparseLabelError(f"masks must be (H, W) or (N, H, W), got shape {np.shape(masks)}")
    return arr


def mask_tube_iou(
    frames1: np.ndarray, masks1: np.ndarray, frames2: np.ndarray, masks2: np.ndarray, convention: str = "act"
) -> float:
    """Temporal IoU x mean mask IoU over the frames both tubes have (0 if none)."""
    f1, m1 = _as_mask_tube((frames1, masks1), "mask tube")
    f2, m2 = _as_mask_tube((frames2, masks2), "mask tube")
    tiou = temporal_iou(f1[0], f1[-1], f2[0], f2[-1], convention)
    if tiou <= 0:
        return 0.0
    shared, i1, i2 = np.intersect1d(f1, f2, assume_unique=True, return_indices=True)
    if len(shared) == 0:
        return 0.0
    per_frame = [mask_iou(m1[a], m2[b])[0, 0] for a, b in zip(i1, i2, strict=True)]
    return float(tiou * np.mean(per_frame))


def _as_mask_tube(tube: MaskTube, what: str) -> tuple[np.ndarray, np.ndarray]:
    if len(tube) != 2:
        raise SparseLabelError(f"{what} must be (frames, masks)")
    frames = np.rint(np.asarray(tube[0], dtype=np.float64)).astype(np.int64).reshape(-1)
    masks = np.asarray(tube[1])
    if masks.ndim != 3 or len(masks) != len(frames) or len(frames) == 0:
        raise SparseLabelError(
            f"{what}: need n frame numbers and (n, H, W) masks, got {len(frames)} frames and masks {masks.shape}"
        )
    if np.any(np.diff(frames) <= 0):
        raise SparseLabelError(f"{what}: frame numbers must be strictly increasing")
    return frames, masks


# ------------------------------------------------------ detection AP, masks


def frame_map_masks(
    gt_masks: GtMasks,
    frame_dets: np.ndarray,
    det_masks: Sequence[np.ndarray],
    videos: Sequence[str],
    iou: float = 0.5,
    convention: str = "act",
) -> tuple[float, dict[int, float]]:
    """(mAP, {label: AP}) of per-frame mask detections at mask-IoU threshold ``iou``.

    Same rules as :func:`~.frame_map.frame_map`; ties in score are ordered by
    (video_index, frame, mask area), then input order.
    """
    check_convention(convention)
    dets = as_frame_dets(frame_dets, len(videos), columns=4)
    if len(det_masks) != len(dets):
        raise SparseLabelError(f"{len(dets)} frame detections but {len(det_masks)} masks")
    gt = _gt_mask_frames(gt_masks, videos)
    areas = np.array([np.count_nonzero(m) for m in det_masks], dtype=np.int64)
    order = np.lexsort((np.arange(len(dets)), areas, dets[:, 1], dets[:, 0], -dets[:, 3]))

    gt_areas = [np.count_nonzero(m) for m in gt["masks"]]

    def ious(pair_det: np.ndarray, pair_gt: np.ndarray) -> np.ndarray:
        out = np.zeros(len(pair_det))
        for k, (d, g) in enumerate(zip(pair_det.tolist(), pair_gt.tolist(), strict=True)):
            dm, gm = np.asarray(det_masks[d], dtype=bool), gt["masks"][g]
            if dm.shape != gm.shape:
                raise SparseLabelError(f"detection {d}: mask {dm.shape} but the ground truth is {gm.shape}")
            inter = np.count_nonzero(dm & gm)
            union = areas[d] + gt_areas[g] - inter
            out[k] = inter / union if union else 0.0
        return out

    det_label = dets[:, 2].astype(np.int64)
    tp = frame_level_tp(
        gt["label"], gt["video"], gt["frame"],
        det_label, dets[:, 0].astype(np.int64), np.rint(dets[:, 1]).astype(np.int64),
        order, ious, iou, convention,
    )
    return per_class_ap(gt["label"], det_label, order, tp, convention)


def _gt_mask_frames(gt_masks: GtMasks, videos: Sequence[str]) -> dict:
    labels, vids, frames, masks = [], [], [], []
    for vi, video in enumerate(videos):
        if video not in gt_masks:
            raise SparseLabelError(f"video {video!r} is evaluated but has no entry in the ground truth")
        for label, tubes in gt_masks[video].items():
            for k, tube in enumerate(tubes):
                f, m = _as_mask_tube(tube, f"ground-truth mask tube {k} of class {label} in {video!r}")
                for frame, mask in zip(f.tolist(), m.astype(bool, copy=False), strict=True):
                    if mask.any():
                        labels.append(int(label))
                        vids.append(vi)
                        frames.append(frame)
                        masks.append(mask)
    return {
        "label": np.array(labels, dtype=np.int64),
        "video": np.array(vids, dtype=np.int64),
        "frame": np.array(frames, dtype=np.int64),
        "masks": masks,
    }


def video_map_masks(
    gt_masks: GtMasks,
    tube_dets: Mapping[int, Sequence[MaskTubeDet]],
    iou: float = 0.5,
    convention: str = "act",
) -> tuple[float, dict[int, float]]:
    """(mAP, {label: AP}) of mask tubes at IoU threshold ``iou`` (:func:`mask_tube_iou`).

    Same rules as :func:`~.video_map.video_map`; ties in score are ordered by
    (video, first frame, last frame), then input order.
    """
    check_convention(convention)
    gt_items = []
    for video, per_label in gt_masks.items():
        for label, tubes in per_label.items():
            for k, tube in enumerate(tubes):
                gt_items.append((int(label), video, _as_mask_tube(tube, f"ground-truth mask tube {k} in {video!r}")))
    det_items = []
    for label, dets in tube_dets.items():
        for k, det in enumerate(dets):
            if len(det) != 4:
                raise SparseLabelError(f"mask tube detection {k} of class {label} must be (video, score, frames, masks)")
            video, score, frames, masks = det
            parsed = _as_mask_tube((frames, masks), f"mask tube detection {k} of class {label}")
            det_items.append((int(label), str(video), float(score), parsed))
    keys = [(-s, v, t[0][0], t[0][-1], i) for i, (_, v, s, t) in enumerate(det_items)]
    order = np.array(sorted(range(len(det_items)), key=lambda i: keys[i]), dtype=np.int64)

    def matrix(det_idx: list[int], gt_idx: list[int]) -> np.ndarray:
        out = np.zeros((len(det_idx), len(gt_idx)))
        for a, i in enumerate(det_idx):
            fd, md = det_items[i][3]
            for b, j in enumerate(gt_idx):
                fg, mg = gt_items[j][2]
                out[a, b] = mask_tube_iou(fd, md, fg, mg, convention)
        return out

    tp = video_level_tp(
        [(lab, vid) for lab, vid, _ in gt_items], [(lab, vid) for lab, vid, _, _ in det_items],
        order, matrix, iou, convention,
    )
    gt_label = np.array([lab for lab, _, _ in gt_items], dtype=np.int64)
    det_label = np.array([lab for lab, _, _, _ in det_items], dtype=np.int64)
    return per_class_ap(gt_label, det_label, order, tp, convention)


# ---------------------------------------------------------- DAVIS J and F


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray | float:
    """Region similarity J per frame: |gt & pred| / |gt | pred| outside void pixels.

    DAVIS convention: a frame where both masks are empty has J = 1.
    Accepts (H, W) (returns a float) or (T, H, W) (returns (T,)).
    """
    gt, pred, void = _frames(gt, pred, void)
    keep = ~void
    inter = np.count_nonzero(gt & pred & keep, axis=(-2, -1))
    union = np.count_nonzero((gt | pred) & keep, axis=(-2, -1))
    j = np.ones(inter.shape)
    np.divide(inter, union, out=j, where=union > 0)
    return float(j) if j.ndim == 0 else j


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask (DAVIS ``_seg2bmap``).

    A pixel is on the boundary when it differs from its east, south or
    south-east neighbour; boundaries sit half a pixel towards the origin.
    """
    seg = np.asarray(mask).astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_tolerance(shape: tuple[int, int], bound_th: float = 0.008) -> float:
    """Match tolerance in pixels: ``bound_th`` itself if >= 1, else ceil(bound_th x image diagonal)."""
    return float(bound_th) if bound_th >= 1 else float(np.ceil(bound_th * np.hypot(shape[0], shape[1])))


def boundary_f(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008
) -> np.ndarray | float:
    """Boundary F-measure per frame (DAVIS ``db_eval_boundary``).

    Boundary pixels of ``pred`` count as correct when a ground-truth boundary
    pixel lies within the tolerance disk (x^2 + y^2 <= r^2, r from
    :func:`boundary_tolerance`), and vice versa for recall. Empty cases follow
    DAVIS: both boundaries empty gives F = 1, one of them empty gives F = 0.
    """
    gt, pred, void = _frames(gt, pred, void)
    if gt.ndim == 2:
        return _f_measure(pred, gt, void, bound_th)
    return np.array([_f_measure(p, g, v, bound_th) for g, p, v in zip(gt, pred, void, strict=True)])


def _f_measure(pred: np.ndarray, gt: np.ndarray, void: np.ndarray, bound_th: float) -> float:
    radius = boundary_tolerance(pred.shape, bound_th)
    fg_b = seg2bmap(pred & ~void)
    gt_b = seg2bmap(gt & ~void)
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 or n_gt == 0:
        return 1.0 if n_fg == n_gt else 0.0
    # every boundary pixel lies in this crop, so distances to the nearest
    # boundary pixel computed inside it are exact
    ys, xs = np.nonzero(fg_b | gt_b)
    window = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    fg_c, gt_c = fg_b[window], gt_b[window]
    precision = np.count_nonzero(distance_transform_edt(~gt_c)[fg_c] <= radius) / n_fg
    recall = np.count_nonzero(distance_transform_edt(~fg_c)[gt_c] <= radius) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def _frames(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt = np.asarray(gt).astype(bool, copy=False)
    pred = np.asarray(pred).astype(bool, copy=False)
    if gt.shape != pred.shape or gt.ndim not in (2, 3):
        raise SparseLabelError(f"ground truth {gt.shape} and prediction {pred.shape} must be equal (H, W) or (T, H, W)")
    void = np.zeros_like(gt) if void is None else np.asarray(void).astype(bool, copy=False)
    if void.shape != gt.shape:
        raise SparseLabelError(f"void mask {void.shape} does not match the masks {gt.shape}")
    return gt, pred, void


def db_statistics(per_frame: np.ndarray) -> dict[str, float]:
    """DAVIS sequence statistics of per-frame values (J or F).

    mean; recall = fraction of frames scoring > 0.5; decay = mean of the first
    quarter minus mean of the last quarter (DAVIS bins: boundaries
    round(linspace(1, T, 5)) - 1, both ends included, so adjacent bins share a
    frame). NaN for an empty sequence.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "recall": float("nan"), "decay": float("nan")}
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return {
        "mean": float(np.nanmean(values)),
        "recall": float(np.nanmean(values > 0.5)),
        "decay": float(np.nanmean(bins[0]) - np.nanmean(bins[3])),
    }


def evaluate_sequence(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    exclude_first_last: bool = True,
    bound_th: float = 0.008,
) -> dict:
    """J and F statistics of one object over a sequence of (T, H, W) masks.

    ``exclude_first_last`` (default, as the DAVIS 2017 semi-supervised
    evaluation) drops the first frame (given to the method) and the last.
    Returns {"J": {mean, recall, decay}, "F": {...}, "J&F": mean of the two
    means, "J_per_frame", "F_per_frame"}.
    """
    gt, pred, void = _frames(gt, pred, void)
    if gt.ndim != 3:
        raise SparseLabelError(f"a sequence needs (T, H, W) masks, got {gt.shape}")
    if exclude_first_last:
        gt, pred, void = gt[1:-1], pred[1:-1], void[1:-1]
    j = np.atleast_1d(jaccard(gt, pred, void)) if len(gt) else np.zeros(0)
    f = np.atleast_1d(boundary_f(gt, pred, void, bound_th)) if len(gt) else np.zeros(0)
    js, fs = db_statistics(j), db_statistics(f)
    return {"J": js, "F": fs, "J&F": (js["mean"] + fs["mean"]) / 2, "J_per_frame": j, "F_per_frame": f}


def split_objects(label_maps: np.ndarray, void_label: int = 255) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Per-object bool masks from DAVIS 2017 style label maps (T, H, W).

    Objects are 1..max label of the first frame (as the DAVIS toolkit counts
    them); ``void_label`` pixels are returned as the void mask.
    """
    maps = np.asarray(label_maps)
    void = maps == void_label
    clean = np.where(void, 0, maps)
    count = int(clean[0].max()) if clean.size else 0
    return {k: clean == k for k in range(1, count + 1)}, void


def evaluate_vos(
    sequences: Mapping[str, tuple[np.ndarray, ...]],
    exclude_first_last: bool = True,
    bound_th: float = 0.008,
) -> dict:
    """DAVIS-style dataset summary over objects.

    ``sequences`` maps an object name (DAVIS uses ``<sequence>_<object id>``)
    to (gt, pred) or (gt, pred, void) (T, H, W) masks. Dataset J / F
    statistics are means over objects, each object weighing the same;
    "J&F" is the mean of the J and F means.
    """
    per: dict[str, dict] = {}
    for name, arrays in sequences.items():
        if len(arrays) not in (2, 3):
            raise SparseLabelError(f"sequence {name!r}: give (gt, pred) or (gt, pred, void)")
        gt, pred, *rest = arrays
        result = evaluate_sequence(gt, pred, rest[0] if rest else None, exclude_first_last, bound_th)
        per[name] = {"J": result["J"], "F": result["F"], "J&F": result["J&F"]}
    summary = {}
    for metric in ("J", "F"):
        summary[metric] = {
            stat: float(np.nanmean([r[metric][stat] for r in per.values()])) if per else float("nan")
            for stat in ("mean", "recall", "decay")
        }
    summary["J&F"] = (summary["J"]["mean"] + summary["F"]["mean"]) / 2
    summary["sequences"] = per
    return summary

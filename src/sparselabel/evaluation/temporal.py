"""Temporal metrics of detected action segments against ground-truth tubes.

Seed 000 names three temporal metrics (segment-level accuracy, clip-level F1
and temporal localisation precision) without defining them; these are the
standard definitions from the temporal action segmentation literature
(Lea et al. 2017; MS-TCN, Farha & Gall 2019):

- a *segment* is (label, start, end, score) over frames start..end, both
  inclusive; a ground-truth tube gives the segment of its first and last
  frame, a detected tube the same plus its tube score;
- segment IoU counts frames: (min end - max start + 1) / (max end - min start
  + 1), i.e. MS-TCN's IoU on half-open frame intervals;
- *frame labels*: each frame takes the label of the highest-scored segment
  covering it (ties: the lower label), or ``BACKGROUND`` (-1);
- **frame accuracy**: fraction of frames whose predicted label equals the
  ground-truth label (background included), MS-TCN's "Acc";
- **segment-level accuracy**: fraction of ground-truth segments whose
  majority predicted frame label (over the segment's frames; ties to the
  lower label, background = -1 included) is the segment's label;
- **clip-level F1@k** (segmental F1, Lea et al.; MS-TCN ``f_score``): predicted
  segments are taken by decreasing score (ties: earlier start first, so with
  equal scores it is MS-TCN's temporal order); each is a true positive if its
  best-IoU ground-truth segment of the same label in the same video has
  IoU >= k and is not yet used, otherwise a false positive; unused ground
  truth are false negatives. Counts are summed over videos, then
  F1 = 2PR / (P + R);
- **temporal localisation precision@k**: the precision TP / (TP + FP) of that
  same matching: how many detected segments sit on a real action instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

BACKGROUND = -1


class Segment(NamedTuple):
    """An action instance in time: frames ``start``..``end`` inclusive."""

    label: int
    start: int
    end: int
    score: float = 1.0


Segments = Mapping[str, Sequence[Segment]]


def segment_iou(a: Segment, b: Segment) -> float:
    """Frame-counting temporal IoU of two segments (0 when disjoint)."""
    inter = min(a.end, b.end) - max(a.start, b.start) + 1
    if inter <= 0:
        return 0.0
    return inter / (max(a.end, b.end) - min(a.start, b.start) + 1)


def segments_from_gttubes(gttubes: Mapping[str, Mapping[int, Sequence[np.ndarray]]]) -> dict[str, list[Segment]]:
    """Ground-truth segments per video from ACT ``gttubes`` (frame numbers kept as given)."""
    out: dict[str, list[Segment]] = {}
    for video, per_label in gttubes.items():
        segs = out.setdefault(video, [])
        for label, tubes in per_label.items():
            for tube in tubes:
                frames = np.asarray(tube)[:, 0]
                segs.append(Segment(int(label), int(round(frames[0])), int(round(frames[-1]))))
    return out


def segments_from_tube_dets(
    tube_dets: Mapping[int, Sequence[tuple]], min_score: float = -np.inf
) -> dict[str, list[Segment]]:
    """Detected segments per video from ACT-style tube detections scored at least ``min_score``."""
    out: dict[str, list[Segment]] = {}
    for label, dets in tube_dets.items():
        for video, score, tube in dets:
            if float(score) < min_score:
                continue
            frames = np.asarray(tube)[:, 0]
            out.setdefault(str(video), []).append(
                Segment(int(label), int(round(frames[0])), int(round(frames[-1])), float(score))
            )
    return out


def frame_labels(segments: Sequence[Segment], num_frames: int, first_frame: int = 1) -> np.ndarray:
    """Per-frame label array (num_frames,); entry k is frame ``first_frame + k``."""
    labels = np.full(num_frames, BACKGROUND, dtype=np.int64)
    best = np.full(num_frames, -np.inf)
    for seg in sorted(segments, key=lambda s: (s.score, -s.label)):
        lo = max(0, seg.start - first_frame)
        hi = min(num_frames, seg.end - first_frame + 1)
        if hi <= lo:
            continue
        take = np.zeros(num_frames, dtype=bool)
        take[lo:hi] = seg.score >= best[lo:hi]
        labels[take] = seg.label
        best[take] = seg.score
    return labels


def frame_accuracy(gt_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Fraction of frames with the right label (background included); NaN without frames."""
    gt = np.asarray(gt_labels)
    pred = np.asarray(pred_labels)
    if gt.shape != pred.shape:
        raise ValueError(f"{gt.shape} ground-truth labels but {pred.shape} predicted")
    return float(np.mean(gt == pred)) if gt.size else float("nan")


def _majority(values: np.ndarray) -> int:
    labels, counts = np.unique(values, return_counts=True)
    return int(labels[np.argmax(counts)])  # np.unique sorts: ties go to the lower label


def match_segments(gt: Sequence[Segment], pred: Sequence[Segment], iou: float) -> tuple[int, int, int]:
    """(TP, FP, FN) of one video's predicted segments (see the module docstring)."""
    used = np.zeros(len(gt), dtype=bool)
    tp = fp = 0
    for seg in sorted(pred, key=lambda s: (-s.score, s.start, s.end, s.label)):
        ious = np.array([segment_iou(seg, g) if g.label == seg.label else -1.0 for g in gt])
        if len(ious) and ious.max() >= iou:
            best = int(np.argmax(ious))
            if not used[best]:
                used[best] = True
                tp += 1
                continue
        fp += 1
    return tp, fp, int(len(gt) - used.sum())


def temporal_metrics(
    gt_segments: Segments,
    pred_segments: Segments,
    num_frames: Mapping[str, int],
    ious: Sequence[float] = (0.1, 0.25, 0.5),
    first_frame: int = 1,
) -> dict:
    """Frame accuracy, segment-level accuracy, and F1 / precision / recall at each IoU.

    Every video of ``num_frames`` is evaluated (a video missing from
    ``pred_segments`` has no detections). Frame accuracy pools all frames;
    segment accuracy pools all ground-truth segments; F1 counts are summed
    over videos.
    """
    correct_frames = total_frames = 0
    correct_segments = total_segments = 0
    counts = {float(k): np.zeros(3, dtype=np.int64) for k in ious}
    for video, n in num_frames.items():
        gt = list(gt_segments.get(video, []))
        pred = list(pred_segments.get(video, []))
        gl = frame_labels(gt, n, first_frame)
        pl = frame_labels(pred, n, first_frame)
        correct_frames += int(np.sum(gl == pl))
        total_frames += n
        for seg in gt:
            lo, hi = max(0, seg.start - first_frame), min(n, seg.end - first_frame + 1)
            if hi > lo:
                total_segments += 1
                correct_segments += int(_majority(pl[lo:hi]) == seg.label)
        for k in counts:
            counts[k] += match_segments(gt, pred, k)
    out: dict = {
        "frame_accuracy": correct_frames / total_frames if total_frames else float("nan"),
        "segment_accuracy": correct_segments / total_segments if total_segments else float("nan"),
    }
    for k, (tp, fp, fn) in counts.items():
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"f1@{k:g}"] = f1
        out[f"precision@{k:g}"] = precision
        out[f"recall@{k:g}"] = recall
    return out


def segment_accuracy(gt_segments: Segments, pred_segments: Segments, num_frames: Mapping[str, int], first_frame: int = 1) -> float:
    """Segment-level accuracy alone (see :func:`temporal_metrics`)."""
    return temporal_metrics(gt_segments, pred_segments, num_frames, (), first_frame)["segment_accuracy"]


def clip_f1(gt_segments: Segments, pred_segments: Segments, iou: float = 0.5) -> float:
    """Clip-level (segmental) F1@iou, counts summed over the videos of ``gt_segments`` and ``pred_segments``."""
    tp, fp, fn = _pooled_counts(gt_segments, pred_segments, iou)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def temporal_localization_precision(gt_segments: Segments, pred_segments: Segments, iou: float = 0.5) -> float:
    """Fraction of detected segments that match a ground-truth segment at IoU >= ``iou`` (0 without detections)."""
    tp, fp, _ = _pooled_counts(gt_segments, pred_segments, iou)
    return tp / (tp + fp) if tp + fp else 0.0


def _pooled_counts(gt_segments: Segments, pred_segments: Segments, iou: float) -> tuple[int, int, int]:
    total = np.zeros(3, dtype=np.int64)
    for video in set(gt_segments) | set(pred_segments):
        total += match_segments(list(gt_segments.get(video, [])), list(pred_segments.get(video, [])), iou)
    return int(total[0]), int(total[1]), int(total[2])

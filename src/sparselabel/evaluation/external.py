"""Scoring detections produced elsewhere (ACT, MOC, YOWO, ...) against an ACT GT pickle.

The ground truth is the ``*-GT.pkl`` most action-detection code ships:
a dict with ``labels, gttubes, nframes, train_videos, test_videos,
resolution``, where ``test_videos[split - 1]`` lists the evaluated videos and
frame detections index into that list. Pickles are read with the restricted
unpickler: never plain ``pickle.load`` on files from the internet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparselabel.data.safe_pickle import safe_load
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.boxes import check_convention
from sparselabel.evaluation.frame_map import frame_map
from sparselabel.evaluation.percent import percent
from sparselabel.evaluation.video_map import video_map

VIDEO_IOUS = (0.1, 0.2, 0.3, 0.5, 0.75)
FRAME_IOUS = (0.5,)
GT_KEYS = ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution")


def load_act_gt(path: str | Path) -> dict[str, Any]:
    """The ACT ground-truth dict at ``path``, checked for the keys the metrics need."""
    gt = safe_load(path)
    if not isinstance(gt, dict):
        raise SparseLabelError(f"expected a dict with keys {', '.join(GT_KEYS)}, got {type(gt).__name__}", path)
    missing = [k for k in ("labels", "gttubes", "test_videos") if k not in gt]
    if missing:
        raise SparseLabelError(f"not an ACT ground-truth pickle: missing {', '.join(missing)}", path)
    return gt


def split_videos(gt: dict[str, Any], split: int = 1, path: str | Path | None = None) -> list[str]:
    """The evaluated videos: ``test_videos[split - 1]``."""
    splits = gt["test_videos"]
    if not 1 <= split <= len(splits):
        raise SparseLabelError(f"split {split} requested but the ground truth has {len(splits)} test split(s)", path)
    return [str(v) for v in splits[split - 1]]


def load_frame_dets(path: str | Path) -> np.ndarray:
    """Frame detections (N, 8): the pickle holds the array or a dict with 'alldets' / 'dets'."""
    obj = safe_load(path)
    if isinstance(obj, dict):
        for key in ("alldets", "dets"):
            if key in obj:
                obj = obj[key]
                break
        else:
            raise SparseLabelError("a dict of frame detections needs the key 'alldets' or 'dets'", path)
    arr = np.asarray(obj, dtype=np.float64)
    if arr.size and (arr.ndim != 2 or arr.shape[1] != 8):
        raise SparseLabelError(
            f"frame detections must be (N, 8) rows video_index, frame, label, score, x1, y1, x2, y2; got {arr.shape}", path
        )
    return arr.reshape(-1, 8)


def load_tube_dets(path: str | Path) -> dict[int, list]:
    """Tube detections {label: [(video, score, (n, 6) tube)]} from a pickle."""
    obj = safe_load(path)
    if not isinstance(obj, dict):
        raise SparseLabelError("tube detections must be a dict {label: [(video, score, tube)]}", path)
    return {int(k): list(v) for k, v in obj.items()}


def evaluate_external(
    gt_pkl: str | Path,
    frame_dets_pkl: str | Path | None = None,
    tube_dets_pkl: str | Path | None = None,
    convention: str = "act",
    ious: Sequence[float] = VIDEO_IOUS,
    frame_ious: Sequence[float] = FRAME_IOUS,
    split: int = 1,
) -> dict[str, Any]:
    """f-mAP (at ``frame_ious``) and v-mAP (at ``ious``) of detection pickles.

    Returns a JSON-ready dict: convention, split, class names, number of test
    videos, and for each metric and threshold ``{"mAP": ..., "per_class":
    {class name: AP}}`` (fractions in [0, 1]; NaN where nothing has ground
    truth). Either detection file may be omitted.
    """
    check_convention(convention)
    gt = load_act_gt(gt_pkl)
    videos = split_videos(gt, split, gt_pkl)
    names = [str(n) for n in gt["labels"]]
    missing = [v for v in videos if v not in gt["gttubes"]]
    if missing:
        raise SparseLabelError(f"{len(missing)} test video(s) have no gttubes entry, e.g. {missing[0]!r}", gt_pkl)
    gttubes = {v: gt["gttubes"][v] for v in videos}
    results: dict[str, Any] = {
        "convention": convention,
        "split": split,
        "ground_truth": str(gt_pkl),
        "labels": names,
        "num_videos": len(videos),
        "frame_map": {},
        "video_map": {},
    }
    if frame_dets_pkl is not None:
        dets = load_frame_dets(frame_dets_pkl)
        for th in frame_ious:
            mean, per_class = frame_map(gttubes, dets, videos, iou=th, convention=convention)
            results["frame_map"][f"{th:g}"] = _named(mean, per_class, names)
    if tube_dets_pkl is not None:
        tubes = load_tube_dets(tube_dets_pkl)
        for th in ious:
            mean, per_class = video_map(gttubes, tubes, iou=th, convention=convention)
            results["video_map"][f"{th:g}"] = _named(mean, per_class, names)
    return results


def _named(mean: float, per_class: dict[int, float], names: list[str]) -> dict[str, Any]:
    def name(label: int) -> str:
        return names[label] if 0 <= label < len(names) else str(label)

    return {"mAP": mean, "per_class": {name(k): v for k, v in sorted(per_class.items())}}


def format_table(results: dict[str, Any], per_class: bool = False) -> str:
    """A plain-text table of :func:`evaluate_external` results, in percent."""
    head = f"convention {results.get('convention', '?')}, {results.get('num_videos', '?')} test videos"
    columns = [(f"f-mAP@{k}", v) for k, v in results.get("frame_map", {}).items()]
    columns += [(f"v-mAP@{k}", v) for k, v in results.get("video_map", {}).items()]
    if not columns:
        return head + "\n(no detections evaluated)"
    width = max(12, *(len(c) + 2 for c, _ in columns))
    lines = [head, "".join(c.rjust(width) for c, _ in columns)]
    lines.append("".join(percent(v["mAP"], "n/a").rjust(width) for _, v in columns))
    if per_class:
        classes = sorted({n for _, v in columns for n in v["per_class"]})
        name_w = max(len(n) for n in classes) + 2 if classes else 8
        lines[1] = " " * name_w + lines[1]
        lines[2] = "mAP".ljust(name_w) + lines[2]
        for n in classes:
            row = "".join(percent(v["per_class"].get(n), "n/a").rjust(width) for _, v in columns)
            lines.append(n.ljust(name_w) + row)
    return "\n".join(lines)



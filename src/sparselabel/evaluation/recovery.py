"""Dense-label recovery: how well sparse labels plus a model reproduce the unannotated frames.

This is the question a labeling-tool user asks: after annotating a few frames of
each video, how good are the boxes on all the others? Two answers are scored
with frame-mAP against the ground truth of the pool's *unannotated* frames only:

- ``model``: the detector's per-frame detections;
- ``interpolation``: what annotation tools do, linear interpolation of each
  actor's boxes between its annotated frames (nearest annotation outside them),
  scored by the MGW weight (closeness to an annotated frame) so that AP has a
  ranking to work with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sparselabel.evaluation.boxes import spatial_iou
from sparselabel.evaluation.dense import interpolated_tracks
from sparselabel.evaluation.frame_map import frame_map
from sparselabel.labels.pseudo import distance_to_annotated, mgw_weights


def restrict_gttubes(gttubes: Mapping, annotated: Mapping[str, np.ndarray]) -> dict:
    """Ground truth without the rows of annotated frames (frames 1-based, ``annotated`` 0-based)."""
    out = {}
    for vid, per_label in gttubes.items():
        skip = np.asarray(annotated.get(vid, []), dtype=np.int64) + 1
        out[vid] = {label: [t[~np.isin(t[:, 0], skip)] for t in tubes] for label, tubes in per_label.items()}
        out[vid] = {label: [t for t in tubes if len(t)] for label, tubes in out[vid].items()}
    return out


def drop_annotated_frames(frame_dets: np.ndarray, videos: Sequence[str], annotated: Mapping[str, np.ndarray]) -> np.ndarray:
    """Detections that are not on annotated frames (rows video_index, frame 1-based, ...)."""
    keep = np.ones(len(frame_dets), dtype=bool)
    for index, vid in enumerate(videos):
        rows = frame_dets[:, 0] == index
        keep[rows] = ~np.isin(frame_dets[rows, 1] - 1, annotated.get(vid, []))
    return frame_dets[keep]


def interpolation_dets(answers_by_video: Mapping[str, Sequence], num_frames: Mapping[str, int],
                       videos: Sequence[str], sigma: float = 1.3) -> np.ndarray:
    """Frame detections from interpolating each actor's answered boxes, on unannotated frames."""
    rows = []
    for index, vid in enumerate(videos):
        answers = answers_by_video.get(vid, [])
        annotated = np.array(sorted(a.frame for a in answers), dtype=np.int64)
        weight = mgw_weights(num_frames[vid], annotated, sigma)
        distance = distance_to_annotated(num_frames[vid], annotated)
        for track in interpolated_tracks(num_frames[vid], answers, distance, half_life=1.0):
            keep = ~np.isin(track.frames, annotated)
            frames = track.frames[keep]
            rows.append(np.column_stack([np.full(len(frames), index), frames + 1, np.full(len(frames), track.label),
                                         weight[frames], track.boxes[keep]]))
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 8))


def dense_quality(gttubes: Mapping, dets: np.ndarray, videos: Sequence[str], annotated: Mapping[str, np.ndarray],
                  iou: float = 0.5, convention: str = "act") -> dict:
    """How good dense labels are on the unannotated frames: f-mAP@``iou`` (rows as
    ``frame_rows``) and mean IoU, each true box's best IoU with a dense box of its frame
    (0 where the frame has none), whatever the class."""
    truth = restrict_gttubes({v: gttubes[v] for v in videos}, annotated)
    dets = drop_annotated_frames(dets, videos, annotated)
    f_map = frame_map(truth, dets, videos, iou, convention)[0]
    best = []
    for index, vid in enumerate(videos):
        mine = dets[dets[:, 0] == index]
        for tubes in truth[vid].values():
            for tube in tubes:
                for frame, *box in tube:
                    found = mine[mine[:, 1] == frame, 4:8]
                    best.append(spatial_iou(np.array([box]), found, convention).max() if len(found) else 0.0)
    return {"f-mAP": f_map, "mean IoU": float(np.mean(best)) if best else float("nan"), "boxes": len(best)}


def recovery_map(gttubes: Mapping, model_dets: np.ndarray, interp_dets: np.ndarray, videos: Sequence[str],
                 annotated: Mapping[str, np.ndarray], iou: float = 0.5, convention: str = "act") -> dict:
    """f-mAP on the unannotated frames of ``videos``: the model's and interpolation's."""
    truth = restrict_gttubes({v: gttubes[v] for v in videos}, annotated)
    model = frame_map(truth, drop_annotated_frames(model_dets, videos, annotated), videos, iou, convention)[0]
    interp = frame_map(truth, interp_dets, videos, iou, convention)[0]
    return {"model": model, "interpolation": interp, "iou": iou, "convention": convention}

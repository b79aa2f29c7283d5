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

from sparselabel.evaluation.frame_map import frame_map
from sparselabel.labels.pseudo import mgw_weights, pseudo_boxes


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
        tracks: dict[int, list] = {}
        for answer in answers:
            for actor in answer.actors:
                if actor.box is not None:
                    tracks.setdefault(actor.actor, []).append((answer.frame, actor.label, actor.box))
        for track in tracks.values():
            frames, boxes = pseudo_boxes(num_frames[vid], annotated, np.array([f for f, _, _ in track]),
                                         np.array([b for _, _, b in track]))
            label = track[0][1]
            for frame, box in zip(frames, boxes, strict=True):
                if frame not in annotated:
                    rows.append([index, frame + 1, label, weight[frame], *box])
    return np.array(rows, dtype=np.float64).reshape(-1, 8)


def recovery_map(gttubes: Mapping, model_dets: np.ndarray, interp_dets: np.ndarray, videos: Sequence[str],
                 annotated: Mapping[str, np.ndarray], iou: float = 0.5, convention: str = "act") -> dict:
    """f-mAP on the unannotated frames of ``videos``: the model's and interpolation's."""
    truth = restrict_gttubes({v: gttubes[v] for v in videos}, annotated)
    model = frame_map(truth, drop_annotated_frames(model_dets, videos, annotated), videos, iou, convention)[0]
    interp = frame_map(truth, interp_dets, videos, iou, convention)[0]
    return {"model": model, "interpolation": interp, "iou": iou, "convention": convention}

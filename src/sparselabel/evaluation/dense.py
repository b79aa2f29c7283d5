"""Dense labels: a box on every frame of a video, from its sparse answers and the model.

Three sources (pure numpy; frames 0-based):

- ``interpolation``: what annotation tools do. Each answered actor's boxes are
  linearly interpolated between its answered frames, over the frames where it is
  assumed present (``labels.pseudo.actor_presence``: between two answers that show
  it; up to the midpoint towards an answer that does not; repeated past the ends).
- ``model``: the detector's linked tubes (``link_tubes`` over ``frame_boxes``).
- ``fusion``: interpolation, with each interpolated box pulled towards the model's
  best-overlapping box (IoU >= ``gate``) by a weight that grows with the distance to
  the nearest answered frame (near an answer the interpolation is nearly exact, far
  from it the model knows more), plus the model's tubes that overlap no interpolated
  actor, away from answered frames (an actor the sparse answers never showed). How far
  the model is trusted in a video is measured there, on its answered frames: the
  ``agreement``, the mean IoU of each answered box with the model's best box on that
  frame, scales both the pull and the extra tubes' confidence, so a model that does not
  see what the annotator drew changes little (measured: RESULTS.md "Dense labels").

Answered frames always carry the answers exactly, whatever the source. Each box has
a source (``SOURCES``) and a confidence in [0, 1], so a reviewer can sort by it:
1 for an answer; for interpolation ``0.5 ** (distance / half_life)``; the model's
score for its boxes, blended by the same weight for fused ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparselabel.config import LinkConfig
from sparselabel.evaluation.boxes import paired_box_iou, spatial_iou
from sparselabel.evaluation.detections import link_tubes
from sparselabel.labels.pseudo import distance_to_annotated, pseudo_boxes
from sparselabel.labels.rows import FrameAnnotation

SOURCES = ("answer", "interpolated", "model", "fused")
ANSWER, INTERPOLATED, MODEL, FUSED = range(4)
METHODS = ("interpolation", "model", "fusion")


@dataclass(frozen=True)
class FusionConfig:
    half_life: float = 8.0  # frames from an answer at which interpolation's confidence halves
    gate: float = 0.3  # IoU the model's box needs with the interpolated one to refine it
    model_weight: float = 0.5  # the model's share of a fused box far from every answer (times agreement)


@dataclass
class DenseTrack:
    """One actor over the frames it is in: a box, source and confidence per frame."""

    actor: int
    label: int
    frames: np.ndarray  # (n,) int, increasing
    boxes: np.ndarray  # (n, 4) x1, y1, x2, y2 in video pixels
    source: np.ndarray  # (n,) int index into SOURCES
    confidence: np.ndarray  # (n,) in [0, 1]


def dense_tracks(method: str, num_frames: int, answers: Sequence[FrameAnnotation],
                 model_boxes: Sequence[np.ndarray] | None = None, model_label: int = 0,
                 link: LinkConfig | None = None, fusion: FusionConfig | None = None) -> list[DenseTrack]:
    """Every actor of one video on every frame, by ``method`` (see module doc).

    ``model_boxes``: per frame an (n, 5) array x1, y1, x2, y2, score (``frame_boxes``),
    needed by ``model`` and ``fusion``; ``model_label`` is the class of the model's tubes.
    """
    if method not in METHODS:
        raise ValueError(f"unknown dense-label method {method!r}; choose one of {METHODS}")
    fusion = fusion or FusionConfig()
    annotated = np.unique([a.frame for a in answers]).astype(np.int64)
    distance = distance_to_annotated(num_frames, annotated)
    if method == "interpolation" or model_boxes is None:
        return interpolated_tracks(num_frames, answers, distance, fusion.half_life)
    tubes = model_tracks(model_boxes, link, model_label, annotated, distance, fusion.half_life,
                         first_actor=_next_actor(answers))
    if method == "model":
        return answer_tracks(answers) + tubes
    trust = agreement(answers, model_boxes)
    trusted = FusionConfig(fusion.half_life, fusion.gate, fusion.model_weight * trust)
    fused = [refine(t, model_boxes, distance, trusted)
             for t in interpolated_tracks(num_frames, answers, distance, fusion.half_life)]
    extra = [t for t in tubes if not overlaps_any(t, fused, fusion.gate)]
    return fused + [DenseTrack(t.actor, t.label, t.frames, t.boxes, t.source, t.confidence * trust) for t in extra]


def agreement(answers: Sequence[FrameAnnotation], model_boxes: Sequence[np.ndarray]) -> float:
    """How well the model sees what the annotator drew: the mean, over the answered boxes of a
    video, of the IoU with the model's best box on the same frame (0 where it has none)."""
    best = []
    for answer in answers:
        candidates = model_boxes[answer.frame]
        for actor in answer.actors:
            if actor.box is not None:
                found = len(candidates) > 0
                best.append(float(spatial_iou(np.array([actor.box]), candidates[:, :4]).max()) if found else 0.0)
    return float(np.mean(best)) if best else 0.0


def interpolated_tracks(num_frames: int, answers: Sequence[FrameAnnotation], distance: np.ndarray,
                        half_life: float) -> list[DenseTrack]:
    """Each answered actor interpolated over the frames where it is assumed present."""
    annotated = np.unique([a.frame for a in answers]).astype(np.int64)
    out = []
    for actor, (label, frames, boxes) in sorted(_actor_answers(answers).items()):
        present, interp = pseudo_boxes(num_frames, annotated, frames, boxes)
        answered = np.isin(present, frames)
        out.append(DenseTrack(actor, label, present, interp, np.where(answered, ANSWER, INTERPOLATED),
                              np.where(answered, 1.0, 0.5 ** (distance[present] / half_life))))
    return out


def answer_tracks(answers: Sequence[FrameAnnotation]) -> list[DenseTrack]:
    """The answers alone, one track per actor (what every method keeps on answered frames)."""
    return [DenseTrack(actor, label, frames, boxes, np.full(len(frames), ANSWER), np.ones(len(frames)))
            for actor, (label, frames, boxes) in sorted(_actor_answers(answers).items())]


def model_tracks(model_boxes: Sequence[np.ndarray], link: LinkConfig | None, label: int, annotated: np.ndarray,
                 distance: np.ndarray, half_life: float, first_actor: int) -> list[DenseTrack]:
    """The model's linked tubes off the answered frames, numbered from ``first_actor``.

    A tube's confidence is its score, scaled down near answered frames: an annotator
    who looked at a nearby frame and drew no such actor makes the tube less likely."""
    out = []
    for tube in link_tubes(model_boxes, link):
        frames = tube[:, 0].astype(np.int64)
        keep = ~np.isin(frames, annotated)
        if not keep.any():
            continue
        frames = frames[keep]
        trust = 1 - 0.5 ** (distance[frames] / half_life) if annotated.size else np.ones(len(frames))
        out.append(DenseTrack(first_actor + len(out), label, frames, tube[keep, 1:5],
                              np.full(len(frames), MODEL), np.clip(tube[keep, 5] * trust, 0, 1)))
    return out


def refine(track: DenseTrack, model_boxes: Sequence[np.ndarray], distance: np.ndarray,
           cfg: FusionConfig) -> DenseTrack:
    """Interpolated boxes pulled towards the model's best match, more so far from answers."""
    boxes, source, confidence = track.boxes.copy(), track.source.copy(), track.confidence.copy()
    for k in np.flatnonzero(track.source == INTERPOLATED):
        candidates = model_boxes[track.frames[k]]
        if len(candidates) == 0:
            continue
        overlap = spatial_iou(boxes[k][None], candidates[:, :4])[0]
        best = int(np.argmax(overlap))
        if overlap[best] < cfg.gate:
            continue
        weight = cfg.model_weight * (1 - 0.5 ** (distance[track.frames[k]] / cfg.half_life))
        boxes[k] = (1 - weight) * boxes[k] + weight * candidates[best, :4]
        confidence[k] = (1 - weight) * confidence[k] + weight * candidates[best, 4]
        source[k] = FUSED
    return DenseTrack(track.actor, track.label, track.frames, boxes, source, confidence)


def overlaps_any(tube: DenseTrack, tracks: Sequence[DenseTrack], gate: float) -> bool:
    """Whether ``tube`` overlaps one of ``tracks`` by ``gate`` IoU on a shared frame."""
    for track in tracks:
        shared, in_tube, in_track = np.intersect1d(tube.frames, track.frames, return_indices=True)
        if shared.size and np.any(paired_box_iou(tube.boxes[in_tube], track.boxes[in_track]) >= gate):
            return True
    return False


def _actor_answers(answers: Sequence[FrameAnnotation]) -> dict[int, tuple[int, np.ndarray, np.ndarray]]:
    """{actor: (label, answered frames, boxes)}; the label of its earliest answer."""
    rows: dict[int, list[tuple[int, int, tuple]]] = {}
    for answer in sorted(answers, key=lambda a: a.frame):
        for actor in answer.actors:
            if actor.box is not None:
                rows.setdefault(actor.actor, []).append((answer.frame, actor.label, actor.box))
    return {actor: (r[0][1], np.array([f for f, _, _ in r], dtype=np.int64),
                    np.array([b for _, _, b in r], dtype=np.float64).reshape(-1, 4))
            for actor, r in rows.items()}


def _next_actor(answers: Sequence[FrameAnnotation]) -> int:
    return 1 + max((actor.actor for a in answers for actor in a.actors), default=-1)


def frame_rows(tracks: Sequence[DenseTrack], video_index: int) -> np.ndarray:
    """(n, 8) frame detections video_index, frame (1-based), label, confidence, x1, y1, x2, y2."""
    rows = [np.column_stack([np.full(len(t.frames), video_index), t.frames + 1, np.full(len(t.frames), t.label),
                             t.confidence, t.boxes]) for t in tracks]
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 8))

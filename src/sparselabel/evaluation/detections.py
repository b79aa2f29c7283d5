"""From per-frame foreground maps to frame detections and linked tubes (pure numpy).

A detector of this kind predicts *where* the actor is (a foreground map per
frame) and *what* the video shows (class scores). Detections are built in
three steps:

1. boxes: the map of every frame is thresholded and split into connected
   components (``largest`` keeps the biggest, ``all`` keeps each); a box's score
   is the mean foreground probability inside its component. Boxes are scaled
   from the map's resolution to the video's, right/bottom edges exclusive.
2. tubes: boxes are linked frame to frame, greedily by IoU with each open
   tube's last box (highest-scoring tube first); a tube survives ``max_gap``
   frames without a match, and the missing frames are filled by linear
   interpolation so tubes are contiguous, as ACT-style metrics expect.
   Optional temporal smoothing averages boxes and scores over a window.
   Optional temporal decoding (``temporal="viterbi"``) then re-decides each
   tube's extent: see ``viterbi_decode``.
3. classes: every box and tube is reported for the ``top_k`` classes of the
   video's class scores, scored ``class score x box (or tube) score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from sparselabel.config import LinkConfig
from sparselabel.evaluation.boxes import spatial_iou
from sparselabel.evaluation.nms import nms_tubes


def frame_boxes(fg: np.ndarray, size: tuple[int, int], cfg: LinkConfig | None = None) -> list[np.ndarray]:
    """Per frame an (n, 5) array of x1, y1, x2, y2, score in video pixels."""
    cfg = cfg or LinkConfig()
    height, width = size
    scale = np.array([width / fg.shape[2], height / fg.shape[1]] * 2)
    out = []
    for prob in fg:
        labels, count = ndimage.label(prob > cfg.threshold)
        rows = []
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            inside = labels[region] == index
            if inside.sum() < cfg.min_area:
                continue
            ys, xs = region
            box = np.array([xs.start, ys.start, xs.stop, ys.stop]) * scale
            rows.append([*box, float(prob[region][inside].mean()), float(inside.sum())])
        rows = np.array(rows).reshape(-1, 6)
        if cfg.components == "largest" and len(rows):
            rows = rows[np.argmax(rows[:, 5])][None]
        out.append(rows[:, :5])
    return out


@dataclass
class _OpenTube:
    rows: list[np.ndarray] = field(default_factory=list)  # frame, x1, y1, x2, y2, score
    last_frame: int = -1

    @property
    def score(self) -> float:
        return float(np.mean([r[5] for r in self.rows]))


def link_tubes(boxes: Sequence[np.ndarray], cfg: LinkConfig | None = None) -> list[np.ndarray]:
    """Contiguous tubes, each an (n, 6) array of frame (0-based), x1, y1, x2, y2, score."""
    cfg = cfg or LinkConfig()
    open_tubes: list[_OpenTube] = []
    closed: list[_OpenTube] = []
    for frame, candidates in enumerate(boxes):
        still_open = []
        for tube in open_tubes:
            (closed if frame - tube.last_frame > cfg.max_gap + 1 else still_open).append(tube)
        open_tubes = sorted(still_open, key=lambda t: -t.score)
        free = np.ones(len(candidates), dtype=bool)
        for tube in open_tubes:
            if not free.any():
                break
            ious = spatial_iou(tube.rows[-1][None, 1:5], candidates[:, :4], "voc")[0]
            ious[~free] = -1
            best = int(np.argmax(ious))
            if ious[best] >= cfg.link_iou:
                tube.rows.append(np.r_[frame, candidates[best]])
                tube.last_frame, free[best] = frame, False
        for k in np.flatnonzero(free):
            open_tubes.append(_OpenTube([np.r_[frame, candidates[k]]], frame))
    tubes = [fill_gaps(np.array(t.rows)) for t in closed + open_tubes]
    tubes = [smooth_tube(t, cfg.smooth) if cfg.smooth > 1 else t for t in tubes]
    return sorted((t for t in tubes if len(t) >= cfg.min_length), key=lambda t: (t[0, 0], -t[:, 5].mean()))


def fill_gaps(tube: np.ndarray) -> np.ndarray:
    """Linear interpolation of boxes and scores over frames a tube skipped."""
    frames = np.arange(tube[0, 0], tube[-1, 0] + 1)
    return np.column_stack([frames] + [np.interp(frames, tube[:, 0], tube[:, c]) for c in range(1, 6)])


def smooth_tube(tube: np.ndarray, window: int) -> np.ndarray:
    """Moving average of boxes and scores (edges use the frames available)."""
    kernel, start = np.ones(window), (window - 1) // 2

    def window_sums(values: np.ndarray) -> np.ndarray:
        # "full" then cut, not mode="same", which returns the kernel's length for a tube shorter than it.
        return np.convolve(values, kernel, mode="full")[start : start + len(values)]

    counts = window_sums(np.ones(len(tube)))
    return np.column_stack([tube[:, 0], *(window_sums(tube[:, c]) / counts for c in range(1, 6))])


def viterbi_states(evidence: np.ndarray, switch_prob: float) -> np.ndarray:
    """Most likely action (True) / background (False) sequence of a two-state HMM.

    ``evidence[t]`` is the log-likelihood ratio log P(obs | action) / P(obs | background)
    of frame t; each frame switches state with probability ``switch_prob`` (a geometric
    duration prior with mean 1 / switch_prob frames), both states equally likely at the
    start. Exact dynamic programming in log space, ties to background.
    """
    stay, switch = np.log1p(-switch_prob), np.log(switch_prob)
    score = np.array([0.0, evidence[0]])  # background, action
    came_from = np.zeros((len(evidence), 2), dtype=np.int8)
    for t in range(1, len(evidence)):
        # to background from (bg, action); to action from (bg, action)
        options = score[:, None] + np.array([[stay, switch], [switch, stay]])
        came_from[t] = np.argmax(options, axis=0)
        score = options.max(axis=0) + np.array([0.0, evidence[t]])
    states = np.zeros(len(evidence), dtype=np.int8)
    states[-1] = np.argmax(score)
    for t in range(len(evidence) - 1, 0, -1):
        states[t - 1] = came_from[t, states[t]]
    return states.astype(bool)


def box_actionness(fg: np.ndarray, size: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """Highest foreground probability inside ``boxes[t]`` (video pixels) on frame t's map.

    The maximum, not the mean: a detected component's box holds background corners,
    so its mean can sit below the threshold while the component itself is above it.
    """
    height, width = size
    scale = np.array([fg.shape[2] / width, fg.shape[1] / height] * 2)
    cells = np.round(boxes[:, :4] * scale).astype(int)
    limit = np.array([fg.shape[2], fg.shape[1]])
    cells[:, :2] = np.clip(cells[:, :2], 0, limit - 1)
    cells[:, 2:] = np.clip(cells[:, 2:], cells[:, :2] + 1, limit)  # at least one cell, never empty
    return np.array([prob[y1:y2, x1:x2].max() for prob, (x1, y1, x2, y2) in zip(fg, cells, strict=True)])


def viterbi_decode(tube: np.ndarray, fg: np.ndarray, size: tuple[int, int], cfg: LinkConfig) -> list[np.ndarray]:
    """A tube's action segments, re-decided over the whole video by a duration-prior HMM.

    Linking keeps every frame it linked however short the tube, and splits an actor
    into fragments when it is missed for more than ``max_gap`` frames. Here the
    tube's box is held beyond its ends and interpolated inside it; a frame's evidence
    is the highest foreground probability inside that box, as a log-odds ratio against
    the detection threshold (without the prior a frame is action exactly when a pixel
    in the box would be detected). The prior (a state lasts ``cfg.duration`` frames
    on average) removes short, weak tubes and flickers and bridges drops, which joins
    fragments of one actor. Segments that share no frame with the tube are dropped
    (they belong to whatever else passes through the held box); fragments joined from
    several tubes come out once per tube and are left to ``decode_tubes``'s NMS.
    """
    frames = np.arange(len(fg))
    boxes = np.column_stack([np.interp(frames, tube[:, 0], tube[:, c]) for c in range(1, 5)])
    # Clipped so that one frame's evidence is at most +/- 4.6 nats: a single hard 0 cannot
    # outweigh a long run of detections.
    prob = np.clip(box_actionness(fg, size, boxes), 0.01, 0.99)
    thr = np.clip(cfg.threshold, 0.01, 0.99)
    evidence = np.log(prob / (1 - prob)) - np.log(thr / (1 - thr))
    action = viterbi_states(evidence, 1.0 / max(cfg.duration, 2.0))  # under 2 the prior favours switching
    inside = (frames >= tube[0, 0]) & (frames <= tube[-1, 0])
    scores = np.where(inside, np.interp(frames, tube[:, 0], tube[:, 5]), prob)
    edges = np.flatnonzero(np.diff(np.r_[0, action.astype(np.int8), 0]))
    return [np.column_stack([frames[a:b], boxes[a:b], scores[a:b]])
            for a, b in zip(edges[::2], edges[1::2], strict=True) if inside[a:b].any()]


def decode_tubes(tubes: list[np.ndarray], fg: np.ndarray, size: tuple[int, int], cfg: LinkConfig) -> list[np.ndarray]:
    """``cfg.temporal`` decoding of one video's linked tubes (``none``: unchanged)."""
    if cfg.temporal == "none":
        return tubes
    if cfg.temporal != "viterbi":
        raise ValueError(f"unknown temporal decoding {cfg.temporal!r}; choose none or viterbi")
    decoded = [t for tube in tubes for t in viterbi_decode(tube, fg, size, cfg) if len(t) >= cfg.min_length]
    if not decoded:
        return []
    # Joined fragments come out once per fragment: keep one (IoU 0.9 keeps distinct actors apart).
    keep = nms_tubes([t[:, :5] for t in decoded], [float(t[:, 5].mean()) for t in decoded], iou=0.9)
    return [decoded[i] for i in sorted(keep)]


def top_classes(class_scores: np.ndarray, k: int) -> np.ndarray:
    """The k best classes, best first (ties by class index)."""
    return np.lexsort((np.arange(len(class_scores)), -np.asarray(class_scores)))[:k]


def act_detections(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]],
    videos: Sequence[str],
    cfg: LinkConfig | None = None,
) -> tuple[np.ndarray, dict[int, list]]:
    """``frame_dets`` and ``tube_dets`` in the ACT structures of ``frame_map`` / ``video_map``.

    ``predictions[video] = (fg (T, h, w), class_scores (C,), (H, W))``; ``videos``
    fixes the order that ``video_index`` refers to. Frames become 1-based.
    """
    cfg = cfg or LinkConfig()
    frame_rows, tube_dets = [], {}
    for index, video in enumerate(videos):
        fg, class_scores, size = predictions[video]
        boxes = frame_boxes(fg, size, cfg)
        classes = top_classes(class_scores, cfg.top_k)
        for frame, rows in enumerate(boxes):
            for label in classes:
                for x1, y1, x2, y2, score in rows:
                    frame_rows.append([index, frame + 1, label, class_scores[label] * score, x1, y1, x2, y2])
        for tube in decode_tubes(link_tubes(boxes, cfg), fg, size, cfg):
            act_tube = np.column_stack([tube[:, 0] + 1, tube[:, 1:]])
            for label in classes:
                tube_dets.setdefault(int(label), []).append(
                    (video, float(class_scores[label] * tube[:, 5].mean()), act_tube))
    return np.array(frame_rows, dtype=np.float64).reshape(-1, 8), tube_dets

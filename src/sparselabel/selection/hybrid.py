"""Hybrid selection: choose videos first (diverse and uncertain), then frames in them by APU.

After Hybrid CLAUS (CVPR 2023), which selects videos and frames together. Frame-level
APU spends the whole budget where U is highest, which can concentrate the picks on a
few similar videos; choosing the videos first spreads the annotation over the pool's
kinds of content while still preferring uncertain videos.

    1. candidates    the pool videos with an unannotated frame; each video's score is
                     its mean U over its unannotated frames
    2. n videos      n = max(1, round_half_up(videos * candidates))
    3. diversity     k-means (k-means++ seeding and Lloyd iterations, from the rng
                     passed to the query) on the L2-normalised per-video features into
                     n clusters; from each cluster its most uncertain video
                     (ties: smaller video id)
    4. enough frames if the chosen videos have fewer unannotated frames than the
                     budget, further videos join in order of mean U until they do
    5. frames        global greedy APU (Eqs. 2-3, lam, sigma) over the chosen videos
                     only, under the whole budget; U' is normalised over the whole
                     pool, so the recorded pick scores are plain APU scores

k is capped at the number of distinct feature vectors, and every cluster is kept
non-empty, so exactly k videos are chosen before step 4. Given the same inputs and
rng state the picks are identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sparselabel.selection.apu import apu_select
from sparselabel.selection.base import (
    Annotated,
    FrameScores,
    QueryStrategy,
    Selection,
    free_frames,
    strategy,
)
from sparselabel.selection.budget import round_half_up


@strategy
@dataclass
class Hybrid(QueryStrategy):
    """Videos by k-means diversity + mean uncertainty, then frames by APU inside them."""

    name = "hybrid"
    needs = ("uncertainty", "features")
    lam: float = 0.5
    sigma: float = 1.3
    videos: float = 0.5  # fraction of the videos with unannotated frames chosen before frames
    iterations: int = 50  # Lloyd iterations at most (stops earlier once assignments settle)

    def __post_init__(self) -> None:
        if not 0.0 <= self.videos <= 1.0:
            raise ValueError(f"videos must be a fraction in [0, 1], got {self.videos}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        chosen = self.choose_videos(scores, annotated, budget, rng)
        return apu_select(scores.require("uncertainty"), annotated, budget, self.lam, self.sigma, only=chosen)

    def choose_videos(self, scores: FrameScores, annotated: Annotated, budget: int,
                      rng: np.random.Generator) -> list[str]:
        """Steps 1-4 of the module doc: the videos APU may pick from (sorted ids)."""
        features = scores.require("features")
        free = free_frames(scores, annotated)
        means = mean_uncertainty(scores.require("uncertainty"), free)
        if not means:
            return []
        ids = sorted(means)
        n = max(1, round_half_up(self.videos * len(ids)))
        points = l2_normalised(np.stack([features[v] for v in ids]))
        labels = kmeans(points, n, rng, self.iterations)
        chosen = cluster_leaders(ids, labels, means)
        return sorted(fill_budget(chosen, means, {v: int(free[v].sum()) for v in ids}, budget))


def mean_uncertainty(uncertainty: Mapping[str, np.ndarray], free: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean U over each video's unannotated frames (videos with none are left out)."""
    return {v: float(uncertainty[v][m].mean()) for v, m in free.items() if m.any()}


def l2_normalised(points: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), so k-means compares directions:
    pooled activations differ in overall magnitude between videos for reasons (brightness,
    actor size) that say little about what the video shows."""
    if not np.isfinite(points).all():
        raise ValueError("video features have NaN or inf")
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return points / np.maximum(norms, np.finfo(np.float64).tiny)


def cluster_leaders(ids: list[str], labels: np.ndarray, means: Mapping[str, float]) -> list[str]:
    """From each cluster its video of highest mean U (ties: smaller id)."""
    best: dict[int, str] = {}
    for vid, label in zip(ids, labels.tolist(), strict=True):
        if label not in best or (-means[vid], vid) < (-means[best[label]], best[label]):
            best[label] = vid
    return [best[k] for k in sorted(best)]


def fill_budget(chosen: list[str], means: Mapping[str, float], available: Mapping[str, int],
                budget: int) -> list[str]:
    """``chosen`` plus, if its free frames fall short of ``budget``, the next videos by mean U."""
    chosen = list(chosen)
    room = sum(available[v] for v in chosen)
    taken = set(chosen)
    rest = sorted((v for v in means if v not in taken), key=lambda v: (-means[v], v))
    for vid in rest:
        if room >= budget:
            break
        chosen.append(vid)
        room += available[vid]
    return chosen


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 50) -> np.ndarray:
    """Cluster labels 0..k'-1 of every point, k' = min(k, distinct points), none empty.

    Our own small k-means rather than ``scipy.cluster.vq.kmeans2``: kmeans2 may leave a
    cluster empty (it only warns), and here every cluster must yield a video. k-means++
    seeding draws from ``rng`` only, so the result is a function of (points, k, rng state).
    """
    k = min(k, len(np.unique(points, axis=0)))
    centres = kmeans_pp(points, k, rng)
    labels = np.full(len(points), -1)
    for _ in range(iterations):
        new, dist = _assign(points, centres)
        new = _fill_empty(new, dist, centres, points)
        if np.array_equal(new, labels):
            break
        labels = new
        centres = np.stack([points[labels == j].mean(0) for j in range(k)])
    return labels


def kmeans_pp(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability proportional to its squared
    distance from the nearest centre so far. Distances are exact differences, so a point
    equal to a centre has weight 0 and (k <= distinct points) the centres are distinct."""
    first = int(rng.integers(len(points)))
    centres = [points[first]]
    d2 = ((points - points[first]) ** 2).sum(1)
    for _ in range(1, k):
        nxt = int(rng.choice(len(points), p=d2 / d2.sum()))
        centres.append(points[nxt])
        d2 = np.minimum(d2, ((points - points[nxt]) ** 2).sum(1))
    return np.stack(centres)


def _assign(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of each point (ties: lower index) and the squared distance to it.

    |x|^2 - 2 x.c + |c|^2 keeps memory at points x centres (not x dims) for large pools."""
    d2 = (points**2).sum(1)[:, None] - 2.0 * points @ centres.T + (centres**2).sum(1)[None, :]
    labels = d2.argmin(1)
    return labels, np.maximum(d2[np.arange(len(points)), labels], 0.0)


def _fill_empty(labels: np.ndarray, dist: np.ndarray, centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Give each empty cluster the point farthest from its centre among clusters of 2 or more
    (ties: lower point index); that point becomes the cluster's centre."""
    labels = labels.copy()
    dist = dist.copy()
    for j in range(len(centres)):
        if (labels == j).any():
            continue
        sizes = np.bincount(labels, minlength=len(centres))
        movable = np.flatnonzero(sizes[labels] > 1)
        far = int(movable[np.argmax(dist[movable])])
        labels[far], dist[far] = j, 0.0
        centres[j] = points[far]
    return labels

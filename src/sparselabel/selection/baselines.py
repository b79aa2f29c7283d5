"""The paper's baseline strategies (section 4.1); with APU (``apu``) and ``hybrid``, all in
one registry (``base.STRATEGIES``).

    random        uniformly among all unannotated frames of the pool (seeded rng)
    equidistant   the budget is shared among videos in proportion to their length;
                  each video's frames go, one at a time, to the middle of its largest gap
    uncertainty   Gal et al.: the B frames of highest U, no distance term
    entropy       Aghdam et al.: highest mean binary entropy first, each pick and each
                  annotated frame blocking the frames within +/- ``window``
    video         videos ranked by mean U over their unannotated frames, annotated whole
    apu           APU, global greedy selection (``apu.apu_select``, apu.py)
    apu-local     APU, each video its equal share (apu.py)
    hybrid        videos first (k-means on per-video features for diversity, the most
                  uncertain of each cluster), then APU inside them (``hybrid.Hybrid``)

Ties are always broken by (video id, frame) ascending, so every strategy is a pure
function of its inputs and the rng.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sparselabel.selection.base import (
    Annotated,
    FrameScores,
    Pick,
    QueryStrategy,
    Selection,
    free_frames,
    ranked,
    strategy,
)


@strategy
@dataclass
class Random(QueryStrategy):
    """Uniform over the pool's unannotated frames, without replacement."""

    name = "random"

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        free = free_frames(scores, annotated)
        candidates = [(v, int(f)) for v in sorted(free) for f in np.flatnonzero(free[v])]
        chosen = rng.choice(len(candidates), size=min(budget, len(candidates)), replace=False)
        return Selection([candidates[i] for i in chosen], None)


@strategy
@dataclass
class Equidistant(QueryStrategy):
    """Frames spread evenly: each new frame splits the largest gap of its video.

    Shares: video v gets B * n_v / sum n (its length n_v, not its free frames) rounded
    down, the leftover frames one each by largest fractional part (ties: video id), the
    largest-remainder rule. A share above the video's free frames is capped and the
    excess re-shared among the other videos by the same rule.

    Gaps: the annotated frames plus virtual marks at -1 and n cut a video into gaps
    (p, q); a pick goes to the middle (p + q) // 2 of the longest gap (ties: earliest
    gap), which splits it in two. An empty video gets its middle frame first, then the
    middles of the halves, and so on. Picks are listed video by video (id order).
    """

    name = "equidistant"

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        free = free_frames(scores, annotated)
        available = {v: int(m.sum()) for v, m in free.items()}
        shares = proportional_shares(scores.num_frames, available, budget)
        picks = [(v, f) for v in sorted(shares) for f in gap_midpoints(free[v], shares[v])]
        return Selection(picks, None)


def proportional_shares(weights: Mapping[str, int], available: Mapping[str, int], budget: int) -> dict[str, int]:
    """Largest-remainder apportionment of ``budget`` by ``weights``, capped at ``available``."""
    shares = dict.fromkeys(sorted(weights), 0)
    remaining = min(budget, sum(available.values()))
    open_ = [v for v in shares if available[v] > 0]
    while remaining > 0:
        total = sum(weights[v] for v in open_)
        quota = {v: divmod(remaining * weights[v], total) for v in open_}  # exact integers
        extra = remaining - sum(q for q, _ in quota.values())
        lucky = set(sorted(open_, key=lambda v: (-quota[v][1], v))[:extra])
        for v in open_:
            take = min(quota[v][0] + (v in lucky), available[v] - shares[v])
            shares[v] += take
            remaining -= take
        open_ = [v for v in open_ if shares[v] < available[v]]
    return shares


def gap_midpoints(free: np.ndarray, count: int) -> list[int]:
    """``count`` frames, each the middle of the longest remaining gap (see ``Equidistant``)."""
    marks = [-1, *np.flatnonzero(~free).tolist(), len(free)]
    gaps = [(-(q - p), p, q) for p, q in zip(marks[:-1], marks[1:], strict=True) if q - p >= 2]
    heapq.heapify(gaps)
    picks = []
    while len(picks) < count:
        _, p, q = heapq.heappop(gaps)
        m = (p + q) // 2
        picks.append(m)
        for a, b in ((p, m), (m, q)):
            if b - a >= 2:
                heapq.heappush(gaps, (-(b - a), a, b))
    return picks


@strategy
@dataclass
class Uncertainty(QueryStrategy):
    """Gal et al.: the frames of highest MC-dropout uncertainty U (Eq. 1), no distance term."""

    name = "uncertainty"
    needs = ("uncertainty",)

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        ranking = ranked(scores.require("uncertainty"), free_frames(scores, annotated))
        top = range(min(budget, len(ranking)))
        return Selection([ranking.pick(i) for i in top], [float(ranking.value[i]) for i in top])


@strategy
@dataclass
class Entropy(QueryStrategy):
    """Aghdam et al.: highest entropy first, with a fixed +/- ``window`` exclusion filter.

    A frame within ``window`` frames of an earlier pick, or (``exclude_annotated``) of an
    annotated frame, is skipped: the filter is there to avoid near-duplicate frames, and
    a neighbour of an annotated frame is as redundant as a neighbour of a pick. When the
    filter leaves too few frames the budget is filled with the best skipped frames, in
    the same order, so every strategy spends the same budget.
    """

    name = "entropy"
    needs = ("entropy",)
    window: int = 4
    exclude_annotated: bool = True

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        free = free_frames(scores, annotated)
        ranking = ranked(scores.require("entropy"), free)
        blocked = {v: np.zeros(len(m), dtype=bool) for v, m in free.items()}
        if self.exclude_annotated:
            for v, m in free.items():
                for f in np.flatnonzero(~m):
                    self._block(blocked[v], int(f))
        chosen: list[int] = []
        skipped: list[int] = []
        for i in range(len(ranking)):
            if len(chosen) == budget:
                break
            v, f = ranking.pick(i)
            if blocked[v][f]:
                skipped.append(i)
                continue
            chosen.append(i)
            self._block(blocked[v], f)
        chosen += skipped[: max(0, budget - len(chosen))]
        return Selection([ranking.pick(i) for i in chosen], [float(ranking.value[i]) for i in chosen])

    def _block(self, blocked: np.ndarray, frame: int) -> None:
        blocked[max(0, frame - self.window): frame + self.window + 1] = True


@strategy
@dataclass
class VideoLevel(QueryStrategy):
    """Whole videos, most uncertain first (mean U over their unannotated frames).

    Each video in turn gives all its unannotated frames (in frame order) until the budget
    is spent; the video that does not fit gives its frames of highest U (ties: earlier
    frame), in that order. A pick's score is its video's mean U.
    """

    name = "video"
    needs = ("uncertainty",)

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        u = scores.require("uncertainty")
        free = free_frames(scores, annotated)
        means = {v: float(u[v][m].mean()) for v, m in free.items() if m.any()}
        picks: list[Pick] = []
        values: list[float] = []
        for v in sorted(means, key=lambda v: (-means[v], v)):
            left = budget - len(picks)
            if left <= 0:
                break
            frames = np.flatnonzero(free[v])
            if len(frames) > left:
                frames = frames[np.lexsort((frames, -u[v][frames]))][:left]
            picks += [(v, int(f)) for f in frames]
            values += [means[v]] * len(frames)
        return Selection(picks, values)

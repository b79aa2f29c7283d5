"""Adaptive Proximity-aware Uncertainty (paper Eqs. 2-3) with global greedy selection.

    U'_i = (U_i - min U) / (max U - min U)   once, over every unannotated frame of the
                                            pool (0 everywhere when all are equal)
    D_i  = 1 - exp(-0.5 ((i - a*) / sigma)^2)   a* the nearest annotated frame of the same
                                            video; 1 when the video has none
    S_i  = lam U'_i + (1 - lam) D_i

Global selection repeats: take the unannotated frame with the highest S over all
videos (ties: smallest (video id, frame)), count it as annotated, re-score. Only D
changes, and only downwards, so a lazy max-heap gives exactly the picks of full
re-scoring: pop the best stored score, recompute it, take the frame if the score is
unchanged, else push it back with the new score. A stored score is an upper bound of
the current one, so an entry whose bound is exact beats every other entry's bound.
Only frames within a few sigma of a pick change (beyond ~11 sigma D is exactly 1.0 in
float64), so B picks cost O((N + B w) log N) for N frames and a window w.

The N initial entries are one ``np.lexsort``ed array rather than a heap; a second,
small heap holds the re-scored entries, and each step takes the better of the two
heads. Every unpicked frame has exactly one entry at any time.

D is read from a table over integer distances (one ``np.exp`` call, made monotone),
so a recomputed score is bit-identical to the initial one whenever the distance did
not change: the "unchanged" test is an exact float comparison.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from sparselabel.labels.pseudo import distance_to_annotated
from sparselabel.selection.base import (
    Annotated,
    FrameScores,
    Pick,
    QueryStrategy,
    Selection,
    annotated_marks,
    strategy,
)


def apu_select(uncertainty: Mapping[str, np.ndarray], annotated: Annotated, budget: int,
               lam: float = 0.5, sigma: float = 1.3, local: bool = False,
               only: Iterable[str] | None = None) -> Selection:
    """``budget`` frames (all unannotated frames if fewer) in the order APU picks them, each
    with its APU score at the time it was picked. The one entry point of APU.

    ``local=True`` gives each video floor(budget / V) picks, V the videos with an
    unannotated frame; the remaining budget mod V go one each to the videos whose best
    initial S is highest (ties: smaller video id). A video with fewer unannotated frames
    than its share gives them all, and the shortfall is shared again by the same rule
    among the others, so the total is still min(budget, unannotated frames). Local picks
    are listed video by video (video id order), each in its picking order.

    ``only`` (global selection only) restricts the picks to those videos while U' is
    still normalised over the whole pool, so the scores stay on plain APU's scale and
    the balance of U' against D does not depend on which videos were allowed.
    """
    _check_params(budget, lam, sigma)
    pool = _Pool(uncertainty, annotated, lam, sigma)
    if local:
        if only is not None:
            raise ValueError("local APU cannot be restricted to some videos")
        return Selection(*pool.local(budget))
    if only is None:
        return Selection(*pool.greedy(range(len(pool.videos)), budget))
    index = {video.id: k for k, video in enumerate(pool.videos)}
    unknown = sorted(set(only) - set(index))
    if unknown:
        raise ValueError(f"video {unknown[0]!r} is not in the pool")
    return Selection(*pool.greedy(sorted(index[v] for v in set(only)), budget))


@strategy
@dataclass
class Apu(QueryStrategy):
    """Adaptive proximity-aware uncertainty, global greedy selection (paper Eqs. 2-3)."""

    name = "apu"
    needs = ("uncertainty",)
    lam: float = 0.5
    sigma: float = 1.3
    local = False

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        return apu_select(scores.require("uncertainty"), annotated, budget, self.lam, self.sigma, local=self.local)


@strategy
@dataclass
class ApuLocal(Apu):
    """APU with each video its equal share of the budget (paper Fig. 6 a-b)."""

    name = "apu-local"
    local = True


def proximity_table(max_distance: int, sigma: float) -> np.ndarray:
    """D at integer distances 0..max_distance, then 1.0 (the "no annotated frame" entry)."""
    d = np.arange(max_distance + 1, dtype=np.float64)
    table = np.append(1.0 - np.exp(-0.5 * (d / sigma) ** 2), 1.0)
    return np.maximum.accumulate(table)  # D never rises as a frame gets closer (keeps the heap exact)


def normalise_unannotated(uncertainty: Mapping[str, np.ndarray], free: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max normalise U with the min and max taken over the unannotated frames only."""
    values = [np.asarray(uncertainty[v], dtype=np.float64)[free[v]] for v in uncertainty]
    values = np.concatenate(values) if values else np.zeros(0)
    if values.size == 0:
        return {v: np.zeros(len(u)) for v, u in uncertainty.items()}
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return {v: np.zeros(len(u)) for v, u in uncertainty.items()}
    return {v: (np.asarray(u, dtype=np.float64) - lo) / (hi - lo) for v, u in uncertainty.items()}


def _check_params(budget: int, lam: float, sigma: float) -> None:
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1] (the lazy heap needs D's weight >= 0), got {lam}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


@dataclass
class _Video:
    id: str
    lam_u: np.ndarray  # lam * U' per frame
    marks: list[int]  # annotated + picked frames, sorted
    free: np.ndarray  # bool per frame: unannotated at the start


class _Pool:
    """Per-video arrays and the greedy loop."""

    def __init__(self, uncertainty: Mapping[str, np.ndarray], annotated: Mapping[str, Iterable[int]],
                 lam: float, sigma: float):
        ids = sorted(uncertainty)  # video index order == video id order: the tie-break
        arrays = {v: _as_scores(v, uncertainty[v]) for v in ids}
        marks = annotated_marks(annotated, {v: len(a) for v, a in arrays.items()})
        free = {}
        for v in ids:
            free[v] = np.ones(len(arrays[v]), dtype=bool)
            free[v][marks[v]] = False
        normed = normalise_unannotated(arrays, free)
        longest = max((len(a) for a in arrays.values()), default=0)
        self.none = longest + 1  # table index of "no annotated frame"
        self.d_term = ((1.0 - lam) * proximity_table(longest, sigma)).tolist()
        self.videos = [_Video(v, lam * normed[v], marks[v].tolist(), free[v]) for v in ids]

    def initial(self, k: int) -> np.ndarray:
        """Current S of every frame of video k (valid for the unannotated ones)."""
        video = self.videos[k]
        distance = distance_to_annotated(len(video.free), video.marks)
        index = np.where(np.isfinite(distance), distance, self.none).astype(np.int64)
        return video.lam_u + np.asarray(self.d_term)[index]

    def score(self, k: int, frame: int) -> float:
        """S of one frame now: lam U' + (1 - lam) D with D from the nearest mark."""
        video = self.videos[k]
        marks = video.marks
        j = bisect_left(marks, frame)
        distance = self.none
        if j < len(marks):
            distance = marks[j] - frame
        if j > 0:
            distance = min(distance, frame - marks[j - 1])
        return video.lam_u.item(frame) + self.d_term[distance]

    def greedy(self, which: Iterable[int], budget: int) -> tuple[list[Pick], list[float]]:
        """Global greedy selection among the videos ``which`` (indices), lazily re-scored."""
        neg, vid, frame = self._sorted_entries(list(which))
        budget = min(budget, len(neg))
        entries = _best_first(neg, vid, frame)
        head = next(entries, None)
        heap: list[tuple[float, int, int]] = []
        picks: list[Pick] = []
        scores: list[float] = []
        while len(picks) < budget:
            if head is not None and (not heap or head < heap[0]):
                key, k, f = head
                head = next(entries, None)
            else:
                key, k, f = heapq.heappop(heap)
            now = self.score(k, f)
            if now == -key:
                picks.append((self.videos[k].id, f))
                scores.append(float(now))
                insort(self.videos[k].marks, f)
            else:
                heapq.heappush(heap, (-now, k, f))
        return picks, scores

    def _sorted_entries(self, which: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(-S, video index, frame) of every unannotated frame of ``which`` (unsorted).

        Vectorised over the whole pool: frames and marks get global positions (video by
        video), so one ``searchsorted`` finds every frame's nearest marks, kept only when
        they are of the same video.
        """
        if not which:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
        videos = [self.videos[k] for k in which]
        lengths = np.array([len(v.free) for v in videos], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        owner = np.repeat(np.arange(len(videos)), lengths)
        local = np.arange(lengths.sum()) - offsets[owner]
        marks = np.concatenate([np.asarray(v.marks, dtype=np.int64) + o for v, o in zip(videos, offsets, strict=True)])
        mark_owner = np.repeat(np.arange(len(videos)), [len(v.marks) for v in videos])
        position = np.arange(lengths.sum())
        right = np.searchsorted(marks, position)
        distance = np.full(position.size, self.none, dtype=np.int64)
        for side in (right, right - 1):
            ok = (side >= 0) & (side < marks.size)
            ok[ok] &= mark_owner[side[ok]] == owner[ok]
            distance[ok] = np.minimum(distance[ok], np.abs(marks[side[ok]] - position[ok]))
        free = np.concatenate([v.free for v in videos])
        lam_u = np.concatenate([v.lam_u for v in videos])
        neg = -(lam_u + np.asarray(self.d_term)[distance])[free]
        return neg, np.asarray(which, dtype=np.int64)[owner[free]], local[free]

    def local(self, budget: int) -> tuple[list[Pick], list[float]]:
        """Each video's share (see ``apu_select``), chosen by the greedy rule inside the video."""
        available = {k: int(v.free.sum()) for k, v in enumerate(self.videos)}
        best = {k: float(self.initial(k)[v.free].max()) for k, v in enumerate(self.videos) if available[k]}
        order = sorted(best, key=lambda k: (-best[k], self.videos[k].id))
        shares = equal_shares(order, available, budget)
        picks: list[Pick] = []
        scores: list[float] = []
        for k in sorted(shares):
            p, s = self.greedy([k], shares[k])
            picks += p
            scores += s
        return picks, scores


def _best_first(neg: np.ndarray, vid: np.ndarray, frame: np.ndarray, band: int = 1 << 18
                ) -> Iterator[tuple[float, int, int]]:
    """The entries in (-S, video, frame) order, as Python tuples (fast to compare with the
    heap's), sorted a band at a time: the greedy loop usually stops after a few bands, so
    most of a large pool is never sorted, and its N entries stay three numpy arrays rather
    than 3N Python objects. A band is every entry with -S <= the band-th smallest, ties
    included, so the order across bands is exact."""
    rest = np.arange(len(neg))
    while rest.size:
        if rest.size > band:
            keys = neg[rest]
            take = keys <= np.partition(keys, band)[band]
            part, rest = rest[take], rest[~take]
        else:
            part, rest = rest, rest[:0]
        part = part[np.lexsort((frame[part], vid[part], neg[part]))]
        for i in range(0, len(part), 1 << 16):
            chunk = part[i : i + (1 << 16)]
            yield from zip(neg[chunk].tolist(), vid[chunk].tolist(), frame[chunk].tolist(), strict=True)


def equal_shares(order: list, available: Mapping, budget: int) -> dict:
    """floor(B / V) each, the remainder one each to the first videos of ``order``; capped
    at what a video has, the shortfall shared again the same way among the rest."""
    shares = dict.fromkeys(order, 0)
    remaining = min(budget, sum(available[k] for k in order))
    open_ = [k for k in order if available[k] > 0]
    while remaining > 0:
        base, extra = divmod(remaining, len(open_))
        for i, k in enumerate(open_):
            take = min(base + (i < extra), available[k] - shares[k])
            shares[k] += take
            remaining -= take
        open_ = [k for k in open_ if shares[k] < available[k]]
    return shares


def _as_scores(video_id: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"video {video_id!r}: uncertainty must be 1-D (one value per frame), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"video {video_id!r}: uncertainty has NaN or inf")
    return array

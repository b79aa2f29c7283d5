"""The contract every selection strategy follows (in the spirit of small-text / baal).

A strategy is a small class with

    query(scores: FrameScores, annotated, budget, rng) -> [(video_id, frame), ...]

``scores`` holds the pool (every video's frame count) and whatever per-frame arrays
scoring produced; ``annotated`` maps a video to its annotated (or already selected)
frames, a missing video having none. The picks are min(budget, unannotated frames)
distinct unannotated frames, deterministic for a given ``rng`` state. ``query_scored``
also returns each pick's score at pick time (None where a strategy has no score),
which is what the ledger records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import numpy as np

from sparselabel.registry import Registry

Pick = tuple[str, int]  # (video id, frame)
Annotated = Mapping[str, Iterable[int]]  # video id -> its annotated (or already selected) frames
SCORE_NAMES = ("uncertainty", "entropy", "mean_fg")


@dataclass
class FrameScores:
    """The pool: frames per video, and per-frame score arrays where scoring has run.

    ``features`` holds one vector per video (all of one length), for strategies that
    choose among videos by content (hybrid); score files older than it have none.
    """

    num_frames: dict[str, int]
    uncertainty: dict[str, np.ndarray] | None = None  # Eq. 1 U (raw, not normalised)
    entropy: dict[str, np.ndarray] | None = None  # mean binary entropy of the mean prediction
    mean_fg: dict[str, np.ndarray] | None = None  # mean foreground probability
    features: dict[str, np.ndarray] | None = None  # per video: pooled encoder features (1-D)

    def __post_init__(self) -> None:
        for name in SCORE_NAMES:
            arrays = getattr(self, name)
            if arrays is None:
                continue
            self._check_videos(name, arrays)
            for vid, values in arrays.items():
                if np.shape(values) != (self.num_frames[vid],):
                    raise ValueError(f"{name} of {vid!r} has shape {np.shape(values)}, "
                                     f"video has {self.num_frames[vid]} frames")
        if self.features is not None:
            self._check_videos("features", self.features)
            shapes = {np.shape(f) for f in self.features.values()}
            if len(shapes) > 1 or any(len(s) != 1 for s in shapes):
                raise ValueError(f"features must be 1-D vectors of one length, got shapes {sorted(shapes)}")

    def _check_videos(self, name: str, arrays: Mapping[str, np.ndarray]) -> None:
        if set(arrays) != set(self.num_frames):
            missing = sorted(set(self.num_frames) ^ set(arrays))
            raise ValueError(f"{name} scores and the pool differ in videos (e.g. {missing[0]!r})")

    def require(self, name: str) -> dict[str, np.ndarray]:
        """The named arrays as float64, or an error that says how to get them."""
        arrays = getattr(self, name)
        if arrays is None and name == "features":
            raise ValueError("this strategy needs per-video features, which these scores lack (written "
                             "before features were stored, or by a scorer that stores none); "
                             "delete the cycle's scores folder and run `sparselabel score` again")
        if arrays is None:
            raise ValueError(f"this strategy needs per-frame {name} scores; run `sparselabel score` first")
        return {v: np.asarray(a, dtype=np.float64) for v, a in arrays.items()}

    @property
    def total_frames(self) -> int:
        return sum(self.num_frames.values())


@dataclass
class Selection:
    picks: list[Pick]
    scores: list[float] | None  # each pick's score at pick time, or None


class QueryStrategy:
    """Base class: subclasses set ``name``, ``needs`` and implement ``query_scored``."""

    name: str = ""
    needs: tuple[str, ...] = ()  # FrameScores arrays read; () = works from frame counts alone

    def query(self, scores: FrameScores, annotated: Annotated, budget: int,
              rng: np.random.Generator) -> list[Pick]:
        return self.query_scored(scores, annotated, budget, rng).picks

    def query_scored(self, scores: FrameScores, annotated: Annotated, budget: int,
                     rng: np.random.Generator) -> Selection:
        raise NotImplementedError

    @classmethod
    def from_options(cls, **options: object) -> QueryStrategy:
        """An instance with the options this strategy has (others ignored), e.g. from the config."""
        names = {f.name for f in fields(cls)} if hasattr(cls, "__dataclass_fields__") else set()
        return cls(**{k: v for k, v in options.items() if k in names})


STRATEGIES: Registry[type[QueryStrategy]] = Registry("strategy")


def strategy(cls: type[QueryStrategy]) -> type[QueryStrategy]:
    """Class decorator: register a strategy under its ``name``."""
    return STRATEGIES.register(cls.name)(cls)


def make_strategy(name: str, **options: object) -> QueryStrategy:
    """The named strategy with the options it takes (lam, sigma, window, videos, ...; others ignored)."""
    import sparselabel.selection  # noqa: F401  (registers every strategy)

    return STRATEGIES.lookup(name).from_options(**options)


def select(strategy: str | QueryStrategy, scores: FrameScores, annotated: Annotated, budget: int,
           seed: int | np.random.Generator = 0, **options: object) -> Selection:
    """Run a strategy (by name or instance) and check its picks against the contract."""
    if isinstance(strategy, str):
        strategy = make_strategy(strategy, **options)
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    selection = strategy.query_scored(scores, annotated, budget, rng)
    check_selection(selection.picks, scores, annotated, budget)
    return selection


def annotated_marks(annotated: Annotated, num_frames: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Sorted unique annotated frames of every video of the pool (videos missing: none).

    Videos that are not in the pool are ignored; a frame outside its video is an error.
    """
    marks = {}
    for vid, n in num_frames.items():
        frames = np.unique(np.asarray(list(annotated.get(vid, ())), dtype=np.int64))
        if frames.size and (frames[0] < 0 or frames[-1] >= n):
            raise ValueError(f"video {vid!r}: annotated frame outside 0..{n - 1}")
        marks[vid] = frames
    return marks


def free_frames(scores: FrameScores, annotated: Annotated) -> dict[str, np.ndarray]:
    """Boolean mask of the unannotated frames of every pool video."""
    marks = annotated_marks(annotated, scores.num_frames)
    free = {}
    for vid, n in sorted(scores.num_frames.items()):
        mask = np.ones(n, dtype=bool)
        mask[marks[vid]] = False
        free[vid] = mask
    return free


@dataclass
class Ranking:
    """Every free frame of the pool, highest value first, ties (video id, frame) ascending."""

    ids: list[str]  # sorted video ids; ``video`` indexes into it
    video: np.ndarray
    frame: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def pick(self, i: int) -> Pick:
        return self.ids[int(self.video[i])], int(self.frame[i])


def ranked(values: Mapping[str, np.ndarray], free: Mapping[str, np.ndarray]) -> Ranking:
    """Sort the free frames by value (descending) with the (video id, frame) tie-break."""
    ids = sorted(free)
    vid = np.concatenate([np.full(int(free[v].sum()), k) for k, v in enumerate(ids)] or [np.zeros(0, int)])
    frame = np.concatenate([np.flatnonzero(free[v]) for v in ids] or [np.zeros(0, int)])
    value = np.concatenate([values[v][free[v]] for v in ids] or [np.zeros(0)])
    order = np.lexsort((frame, vid, -value))
    return Ranking(ids, vid[order], frame[order], value[order])


def check_selection(picks: list[Pick], scores: FrameScores, annotated: Annotated, budget: int) -> None:
    """The contract: known frames, none annotated, no duplicates, min(budget, free) of them."""
    free = free_frames(scores, annotated)
    available = sum(int(m.sum()) for m in free.values())
    if len(picks) != min(budget, available):
        raise AssertionError(f"{len(picks)} picks for a budget of {budget} ({available} frames free)")
    if len(set(picks)) != len(picks):
        raise AssertionError("a frame was picked twice")
    for vid, frame in picks:
        if vid not in free or not 0 <= frame < len(free[vid]) or not free[vid][frame]:
            raise AssertionError(f"picked {vid!r}:{frame}, which is annotated or not in the pool")

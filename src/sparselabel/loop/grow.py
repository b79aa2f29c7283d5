"""A pool that grows: videos of further datasets join a running workspace's pool.

``sparselabel add-videos WORKSPACE PATH...`` (or ``loop.add_videos`` with
``loop.add_at_cycle``) loads each dataset with the loaders ``init`` uses, takes
one split of it (default: the workspace's ``dataset.pool_split``), and gives its
videos initial labels exactly as at init: I% random frames per video seeded by
(seed, video id), answered by the simulated oracle. From then on they compete
for the budget with the old videos in every selection; no earlier row of the
ledger changes.

When: the videos' initial labels belong to the next cycle to be trained (the
ledger's ``growth_cycle``). Between cycles (a fresh workspace, or the loop's
``annotate`` step of the latest trained cycle done) they join at once. Inside a
cycle, or after a loop stopped by its stop condition right after evaluating
cycle c, the source is recorded as pending and its videos join right before the
loop trains cycle c + 1 (loop step ``add-videos``), after cycle c's selection:
labels of cycle c + 1 written before that selection exists would make the step
commands take c + 1 for the current cycle.

Everything is checked before anything is written (paths, formats, classes, ids
already in the workspace, decodable videos), and each call is one transaction.
A dataset split that is already a source is skipped: adding it again is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparselabel.data.dataset import Dataset, load_dataset
from sparselabel.data.merge import select_videos
from sparselabel.errors import SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.labels.ledger import ADDED, PENDING, Joining, Source
from sparselabel.loop.oracle import reveal
from sparselabel.loop.workspace import (
    POOL,
    Workspace,
    check_decodable,
    initial_picks,
    initial_strategy,
    load_source,
    oracle_clicks,
)

ADD_STEP = "add-videos"


@dataclass
class Growth:
    """What one call did: the cycle the videos belong to, and whether they joined already."""

    cycle: int
    now: bool
    sources: list[Source] = field(default_factory=list)  # recorded by this call
    videos: int = 0
    frames: int = 0  # frames of those videos
    initial: int = 0  # initial frames picked for them (answered at once by the simulated oracle)
    skipped: list[str] = field(default_factory=list)  # already sources: nothing to do

    def summary(self) -> str:
        lines = [f"{path}: already a source of the pool; nothing to do" for path in self.skipped]
        if self.sources and self.now:
            lines.append(f"added {self.videos} videos ({self.frames} frames) to the pool; their {self.initial} "
                         f"initial frames belong to cycle {self.cycle}")
        elif self.sources:
            lines.append(f"queued {self.videos} videos ({self.frames} frames): they join the pool with their "
                         f"initial frames when the loop starts cycle {self.cycle} (`sparselabel loop --resume`)")
        return "\n".join(lines)


@dataclass
class _Candidate:
    source: Source
    part: Dataset  # its videos, labelled with the workspace's classes


def add_videos(workspace: Workspace, paths: Sequence[str | Path], kind: str | None = None,
               split: str | None = None, *, verify_videos: bool = True,
               expect: tuple[int, bool] | None = None) -> Growth:
    """Add the videos of split ``split`` of each dataset at ``paths`` to the pool (see the module docstring).

    ``kind`` defaults to the workspace's ``dataset.kind`` (whose ``dataset.options`` then
    apply too), ``split`` to its ``dataset.pool_split``; ``"all"`` takes every video.
    ``expect``: the loop's (cycle, now), refused if the cycle rule says otherwise.
    """
    cfg = workspace.config.dataset
    kind = kind or cfg.kind
    split = split or cfg.pool_split
    options = dict(cfg.options) if kind == cfg.kind else {}
    known = {s.key for s in workspace.ledger.sources()}
    candidates: list[_Candidate] = []
    skipped: list[str] = []
    for path in paths:
        wanted = Source(kind, str(Path(path).expanduser().resolve()), split, options, ())
        if wanted.key in known:  # checked before loading: a recorded source is a no-op even if moved since
            skipped.append(wanted.path)
            continue
        known.add(wanted.key)
        candidates.append(_candidate(workspace, Path(wanted.path), kind, split, options))
    _check_ids(workspace, candidates)
    if verify_videos:
        for c in candidates:
            check_decodable(c.part, list(c.source.video_ids))
    if not candidates:
        return Growth(*workspace.ledger.growth_cycle(), skipped=skipped)
    batch = [_joining(workspace, c.source, c.part) for c in candidates]
    cycle, now = workspace.ledger.add_sources(batch, split=POOL, strategy=initial_strategy(workspace.config),
                                              clicks_per_actor=oracle_clicks(workspace.config.labels),
                                              expect=expect)
    fault_point("grow:joined")
    return Growth(cycle, now, [c.source for c in candidates], sum(len(j.videos) for j in batch),
                  sum(v.num_frames for j in batch for v in j.videos), sum(len(j.picks) for j in batch), skipped)


def growth_due(workspace: Workspace, cycle: int) -> bool:
    """Whether the loop has an ``add-videos`` step before training ``cycle`` (config route or pending sources)."""
    loop, ledger = workspace.config.loop, workspace.ledger
    if loop.add_videos and cycle == loop.add_at_cycle:
        return True
    if any(s.cycle == cycle for s in ledger.sources(PENDING)):
        return True
    return ledger.step_status(cycle, ADD_STEP) is not None  # a step started and killed: finish it (a no-op by then)


def grow_step(workspace: Workspace, cycle: int) -> dict:
    """The loop's ``add-videos`` step before training ``cycle``: ``loop.add_videos``, then pending sources."""
    loop = workspace.config.loop
    if loop.add_videos and cycle == loop.add_at_cycle:
        rule = workspace.ledger.growth_cycle()
        if rule != (cycle, True) and _new_paths(workspace, loop.add_videos):
            raise SparseLabelError(f"loop.add_at_cycle={cycle}, but cycle {cycle} has started training "
                                   f"already; videos added now would join cycle {rule[0]}", workspace.root)
        add_videos(workspace, loop.add_videos, expect=(cycle, True))
    activate_pending(workspace, cycle)
    return joined_at(workspace, cycle)


def joined_at(workspace: Workspace, cycle: int) -> dict:
    """Sources, videos and initial frames that joined the pool at ``cycle`` (read from the ledger,
    so a step finished after a kill records what an uninterrupted one would)."""
    sources = [s for s in workspace.ledger.sources(ADDED) if s.cycle == cycle]
    ids = {v for s in sources for v in s.video_ids}
    initial = sum(vid in ids for _, _, vid, _, _ in workspace.ledger.selections(cycle))
    return {"sources": len(sources), "videos": len(ids), "initial_frames": initial}


def activate_pending(workspace: Workspace, cycle: int) -> list[Source]:
    """Let the sources pending for ``cycle`` join the pool (one transaction); returns them."""
    pending = [s for s in workspace.ledger.sources(PENDING) if s.cycle == cycle]
    if not pending:
        return []
    classes = workspace.ledger.classes
    batch = [_joining(workspace, s, load_source(s, classes)) for s in pending]
    workspace.ledger.activate_sources(batch, cycle=cycle, split=POOL, strategy=initial_strategy(workspace.config),
                                      clicks_per_actor=oracle_clicks(workspace.config.labels))
    fault_point("grow:joined")
    return pending


def _new_paths(workspace: Workspace, paths: Sequence[str]) -> bool:
    recorded = {s.path for s in workspace.ledger.sources()}
    return any(str(Path(p).expanduser().resolve()) not in recorded for p in paths)


def _candidate(workspace: Workspace, resolved: Path, kind: str, split: str, options: dict) -> _Candidate:
    """Load one dataset and take its ``split``, labelled with the workspace's classes."""
    if not resolved.exists():
        raise SparseLabelError("no such file or folder", resolved)
    dataset = load_dataset(kind, resolved, **options)
    where = dataset.source or resolved
    try:
        ids = sorted(dataset.split(split))
    except SparseLabelError as exc:
        raise SparseLabelError(exc.problem, where) from None
    if not ids:
        raise SparseLabelError(f"split {split!r} has no videos", where)
    part = select_videos(dataset, ids, workspace.ledger.classes)
    return _Candidate(Source(kind, str(resolved), split, options, tuple(ids)), part)


def _check_ids(workspace: Workspace, candidates: list[_Candidate]) -> None:
    """No video id may be in the workspace already (any split, any source, pending ones too) or twice here."""
    taken = {vid: "the workspace" for vid in [*workspace.ledger.videos(), *workspace.dataset.videos]}
    for s in workspace.ledger.sources(PENDING):
        taken.update(dict.fromkeys(s.video_ids, f"pending source {s.path}"))
    for c in candidates:
        for vid in c.source.video_ids:
            if vid in taken:
                raise SparseLabelError(f"video id {vid!r} is already in {taken[vid]}", c.part.source)
            taken[vid] = f"dataset {c.source.path}"


def _joining(workspace: Workspace, source: Source, part: Dataset) -> Joining:
    """The source's videos with their initial random frames and, with the simulated oracle, the answers."""
    labels = workspace.config.labels
    picks = initial_picks(part.videos, workspace.config)
    answers = reveal(part, picks, with_masks=labels.annotation == "mask") if labels.oracle == "simulated" else []
    return Joining(source, [part.videos[v] for v in source.video_ids], picks, answers)

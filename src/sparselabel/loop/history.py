"""A workspace's loop history, read back from its ledger (the single source of truth): what
reports draw and experiments summarise. It lives with the loop, whose records it reads, so
the loop never imports from reports (data flows loop -> reports, DESIGN section 6)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from sparselabel.loop.cycle import CycleRecord, cycle_record
from sparselabel.loop.workspace import POOL, Workspace


@dataclass
class History:
    strategy: str
    records: list[CycleRecord]
    selected: dict[str, dict[int, list[int]]]  # video -> cycle -> frames (cycle 0 = initial labels)
    num_frames: dict[str, int]
    extents: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # video -> actor (first, last)


def history(workspace: Workspace) -> History:
    """Per-cycle metrics and every selection of ``workspace``'s loop."""
    ledger = workspace.ledger
    rows = ledger.done_steps("evaluate")
    records = [cycle_record(workspace, cycle, json.loads(detail)) for cycle, detail in rows]
    pool = ledger.videos(POOL)
    selected: dict[str, dict[int, list[int]]] = {v: {} for v in pool}
    for cycle, _, vid, frame, _ in ledger.selections():
        if vid in selected:
            selected[vid].setdefault(cycle, []).append(frame)
    extents = {v: [(t.start, t.end) for t in workspace.dataset.tubes.get(v, [])] for v in pool}
    return History(workspace.config.selection.strategy, records, selected,
                   {v: video.num_frames for v, video in pool.items()}, extents)


@dataclass
class ScoreCurves:
    """What APU saw when it chose cycle ``cycle + 1``'s frames of one video."""

    video: str
    u: np.ndarray  # U min-max normalised over the pool's unannotated frames
    d: np.ndarray  # proximity to the nearest annotated frame (Eq. 2)
    s: np.ndarray  # APU score lambda U + (1 - lambda) D (Eq. 3), before any pick of this cycle
    annotated: np.ndarray  # frames annotated before the selection
    picked: np.ndarray  # frames picked for cycle + 1


def score_curves(workspace: Workspace, cycle: int, videos: int = 6) -> list[ScoreCurves]:
    """U, D and S of cycle ``cycle``'s scores and the picks they led to, for a few pool videos."""
    from sparselabel.labels.pseudo import distance_to_annotated
    from sparselabel.loop.steps import load_scores
    from sparselabel.selection.apu import normalise_unannotated

    cfg = workspace.config.selection
    before: dict[str, list[int]] = {}
    for answer in workspace.ledger.annotations():
        if answer.cycle <= cycle:
            before.setdefault(answer.video_id, []).append(answer.frame)
    scores = load_scores(workspace, f"cycle-{cycle:03d}", videos=set(before))  # the pool as it was then
    picks: dict[str, list[int]] = {}
    for _, _, vid, frame, _ in workspace.ledger.selections(cycle + 1):
        picks.setdefault(vid, []).append(frame)
    free = {v: ~np.isin(np.arange(n), before.get(v, [])) for v, n in scores.num_frames.items()}
    u = normalise_unannotated(scores.uncertainty, free)
    shown = sorted(picks, key=lambda v: (-len(picks[v]), v))[:videos] or sorted(scores.num_frames)[:videos]
    out = []
    for vid in shown:
        distance = distance_to_annotated(scores.num_frames[vid], before.get(vid, []))
        d = 1.0 - np.exp(-0.5 * (distance / cfg.sigma) ** 2)
        out.append(ScoreCurves(vid, u[vid], d, cfg.lam * u[vid] + (1 - cfg.lam) * d,
                               np.array(sorted(before.get(vid, [])), dtype=int), np.array(sorted(picks.get(vid, [])), dtype=int)))
    return out

"""The active-learning loop: cycles of train -> predict -> evaluate -> score -> select -> annotate.

Cycle c trains on the answers of cycles 0..c, evaluates that model, then (unless
a stop condition holds) selects the frames of cycle c + 1 and has them answered.
Every step's start and completion is recorded in the ledger (``cycle_steps``,
with the step's small result as JSON), so a loop killed anywhere resumes at the
first step not completed. Every step is safe to repeat: training resumes from
its checkpoint, predicting and scoring rewrite or skip whole files, a cycle's
selection is recorded in one transaction and returned as it is if it exists, and
the oracle answers only frames not yet answered, in one transaction. So a
resumed loop ends with the same ledger as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sparselabel.config import save_config
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.percent import percent
from sparselabel.faults import fault_point
from sparselabel.jsonio import finite
from sparselabel.loop.grow import ADD_STEP, grow_step, growth_due
from sparselabel.loop.steps import (
    cycle_config,
    evaluate_step,
    predict_step,
    recovery_step,
    score_step,
    select_step,
    train_seed_members,
)
from sparselabel.loop.workspace import CONFIG_FILE, POOL, TEST, Workspace
from sparselabel.scoring.ensemble import check_ensemble
from sparselabel.selection import make_strategy, parse_budget
from sparselabel.train.pretrain import pretrain_workspace
from sparselabel.train.trainer import FINAL, train_workspace

# "pretrain" runs once, at cycle 0, and only with pretrain.task set.
STEPS = ("pretrain", "train", "predict", "evaluate", "score", "select", "annotate")


@dataclass
class CycleRecord:
    """One row of the loop's table: what a cycle's labels cost and what its model scores."""

    cycle: int
    strategy: str
    frames: int
    percent: float
    clicks: int
    f_map: float | None
    v_map: float | None  # v-mAP@0.5
    recovery: dict | None  # f-mAP@0.5 on the pool's unannotated frames: model, interpolation


@dataclass
class LoopOutcome:
    records: list[CycleRecord]
    stopped_because: str
    waiting_for: int = 0  # selected frames still without an answer (no simulated oracle)


def loop_started(workspace: Workspace) -> bool:
    return workspace.ledger.loop_started()


def start_loop(workspace: Workspace) -> None:
    """Fix the loop's config: saved into the workspace, so ``--resume`` runs with exactly it."""
    if loop_started(workspace):
        raise SparseLabelError("this workspace's loop has already started; continue it with --resume",
                               workspace.root)
    make_strategy(workspace.config.selection.strategy)  # fail now on an unknown name, not after training
    save_config(workspace.config, workspace.root / CONFIG_FILE)


def share_first_model(trained: Workspace, fresh: Workspace) -> bool:
    """Give ``fresh`` the cycle-0 model of ``trained`` when it would train the very same one.

    Cycle 0 trains on the initial labels before any strategy has chosen a frame, so with the
    same data, labels, seed and training settings both workspaces would compute the same
    weights (a run is a pure function of them); copying saves one training. Anything that
    differs, or a cycle 0 already started, leaves ``fresh`` to train its own.
    """
    source, target = trained.root / "runs" / "cycle-000", fresh.root / "runs" / "cycle-000"
    same_labels = _answers(trained, 0) == _answers(fresh, 0)
    same_config = replace(trained.config, selection=fresh.config.selection) == fresh.config
    if target.exists() or not (source / FINAL).exists() or not (same_labels and same_config):
        return False
    tmp = target.with_name("cycle-000.copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    tmp.rename(target)
    return True


def _answers(ws: Workspace, cycle: int) -> list:
    return sorted((a.video_id, a.frame, str(a.actors)) for a in ws.ledger.annotations() if a.cycle <= cycle)


def run_loop(workspace: Workspace, on_cycle: Callable[[CycleRecord], None] | None = None) -> LoopOutcome:
    """Run (or resume) cycles until a stop condition; see the module docstring."""
    cfg = workspace.config
    records: list[CycleRecord] = []
    cycle = 0
    if cfg.pretrain.task != "none":  # before cycle 0's training, which starts from its encoder
        _step(workspace, 0, "pretrain", lambda: _pretrain(workspace))
    while True:
        run = f"cycle-{cycle:03d}"
        if growth_due(workspace, cycle):  # a growing pool: new videos join right before this cycle trains
            _step(workspace, cycle, ADD_STEP, lambda c=cycle: grow_step(workspace, c))
        pool_frames = sum(v.num_frames for v in workspace.ledger.videos(POOL).values())  # of the pool now
        budget = parse_budget(cfg.loop.budget, pool_frames)
        _step(workspace, cycle, "train", lambda c=cycle: _train(workspace, c))
        _step(workspace, cycle, "predict", lambda r=run: _relative(workspace, predict_step(workspace, r)))
        results = _step(workspace, cycle, "evaluate", lambda r=run, c=cycle: _evaluate(workspace, r, c))
        records.append(cycle_record(workspace, cycle, results))
        if on_cycle:
            on_cycle(records[-1])
        reason = _stop_reason(workspace, cycle, records[-1], budget)
        if reason:
            return LoopOutcome(records, reason)
        if make_strategy(cfg.selection.strategy).needs:
            _step(workspace, cycle, "score", lambda r=run: _relative(workspace, score_step(workspace, run=r)))
        step_frames = min(parse_budget(cfg.selection.budget, pool_frames), budget - records[-1].frames)
        picked = _step(workspace, cycle, "select", lambda c=cycle, n=step_frames: _select(workspace, c, n))
        waiting = _step(workspace, cycle, "annotate", lambda c=cycle: _annotate(workspace, c + 1))
        if waiting:
            return LoopOutcome(records, f"waiting for answers to {waiting} of the {picked} frames selected "
                               f"for cycle {cycle + 1}", waiting)
        cycle += 1


def _step(workspace: Workspace, cycle: int, name: str, work: Callable[[], Any]) -> Any:
    """Run a step unless the ledger says it is done; record start, completion and result."""
    ledger = workspace.ledger
    if ledger.step_done(cycle, name):
        detail = ledger.step_detail(cycle, name)
        return json.loads(detail) if detail else None
    fault_point(f"loop:{name}:before")
    ledger.start_step(cycle, name)
    result = work()
    if name != "annotate" or not result:  # an annotate step waiting for people stays open
        ledger.finish_step(cycle, name, json.dumps(result))
    fault_point(f"loop:{name}:after")
    return result


def _relative(workspace: Workspace, path) -> str:
    """Paths recorded relative to the workspace, which can then be moved."""
    return str(path.relative_to(workspace.root))


def _train(workspace: Workspace, cycle: int) -> dict:
    previous = workspace.root / "runs" / f"cycle-{cycle - 1:03d}" / FINAL
    init = previous if workspace.config.loop.warm_start and cycle > 0 else None
    check_ensemble(workspace.config)  # before training, not at the score step after it
    config = cycle_config(workspace.config, cycle)
    result = train_workspace(workspace, config, run_name=f"cycle-{cycle:03d}", init_from=init, cycle=cycle)
    train_seed_members(workspace, cycle)  # ensemble.kind=seeds: the other members of this cycle
    return {"steps": result.steps, "loss": result.last_loss}


def _pretrain(workspace: Workspace) -> dict:
    result = pretrain_workspace(workspace)
    return {"encoder": _relative(workspace, result.encoder), "steps": result.steps,
            "loss": result.loss, "accuracy": result.accuracy}


def _evaluate(workspace: Workspace, run: str, cycle: int) -> dict:
    # Without a test split (a pool of test-list videos, say) the model is scored on the pool itself.
    split = TEST if workspace.ledger.videos(TEST) else POOL
    results = evaluate_step(workspace, run, split)
    out: dict[str, Any] = {"split": split, "f_map": results["frame_map"]["0.5"]["mAP"],
                           "v_map": {t: v["mAP"] for t, v in results["video_map"].items()}}
    if "segmentation" in results:
        out["segmentation"] = results["segmentation"]
    if workspace.config.loop.dense_recovery:
        out["recovery"] = recovery_step(workspace, run, cycle)
    return finite(out)


def _select(workspace: Workspace, cycle: int, frames: int) -> int:
    return len(select_step(workspace, budget=frames, cycle=cycle + 1).picks)


def _annotate(workspace: Workspace, cycle: int) -> int:
    """Answer cycle ``cycle``'s selection with the simulated oracle; returns frames still unanswered."""
    picks = [(v, f) for _, _, v, f, _ in workspace.ledger.selections(cycle)]
    if workspace.config.labels.oracle == "simulated":
        workspace.annotate(picks, cycle=cycle, source="oracle")
    answered = {v: set(frames.tolist()) for v, frames in workspace.ledger.annotated_frames().items()}
    return sum(f not in answered[v] for v, f in picks)


def cycle_record(workspace: Workspace, cycle: int, results: dict) -> CycleRecord:
    """The table row of ``cycle`` from its evaluate step's results and the ledger's counts."""
    rows = [r for r in workspace.status() if r.cycle <= cycle]
    last = rows[-1]
    v_map = (results.get("v_map") or {}).get("0.5")
    return CycleRecord(cycle, workspace.config.selection.strategy, last.frames, last.percent, last.clicks,
                       results.get("f_map"), v_map, results.get("recovery"))


def _stop_reason(workspace: Workspace, cycle: int, record: CycleRecord, budget: int) -> str | None:
    loop = workspace.config.loop
    if cycle >= loop.cycles:
        return f"ran {loop.cycles} cycles"
    if record.frames >= budget:
        return f"annotation budget {loop.budget} spent"
    if loop.until_v_map > 0 and record.v_map is not None and record.v_map >= loop.until_v_map:
        return f"v-mAP@0.5 {record.v_map:.3f} reached {loop.until_v_map}"
    return None


def format_record(r: CycleRecord, header: bool = False) -> str:
    rec = r.recovery or {}
    line = (f"{r.cycle:>5} {r.strategy:>12} {r.percent:>8.2f} {r.frames:>7} {r.clicks:>7} {percent(r.f_map):>9} "
            f"{percent(r.v_map):>9} {percent(rec.get('model')):>10} {percent(rec.get('interpolation')):>10}")
    if not header:
        return line
    head = (f"{'cycle':>5} {'strategy':>12} {'% frames':>8} {'frames':>7} {'clicks':>7} {'f-mAP@.5':>9} "
            f"{'v-mAP@.5':>9} {'pool:model':>10} {'pool:interp':>10}")
    return head + "\n" + line

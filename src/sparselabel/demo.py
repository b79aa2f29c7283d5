"""``sparselabel demo``: the whole loop on the embedded synthetic data, APU against random.

Both strategies start from the same initial labels (same seed, same pool) and
run the same number of cycles with the small model on the CPU; the demo prints
a table per cycle and writes a report folder. Everything is cached or resumable:
running it again reuses the dataset and continues loops that were interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sparselabel.config import load_config
from sparselabel.data.synthetic import generate, synth_config
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.percent import percent
from sparselabel.loop.cycle import (
    CycleRecord,
    loop_started,
    run_loop,
    share_first_model,
    start_loop,
)
from sparselabel.loop.workspace import LEDGER_FILE, Workspace
from sparselabel.reports.build import write_report

# Small enough for a 2-core CPU in minutes, large enough for the curves to mean something:
# the recipe measured in benchmarks/RESULTS.md ("A detector that learns").
DEMO_SETTINGS = [
    "model.input_size=[64,64]",
    "model.head=conv",
    "model.motion_input=true",
    "model.widths=[32,64,128]",
    "model.clip_stride=1",
    "detection.trajectory_classes=true",
    "detection.network_classes=false",
    "detection.link_iou=0.2",
    "detection.threshold=0.7",
    "detection.min_length=6",
    "labels.initial_percent=5",
    "selection.budget=5%",
    "train.steps=400",
    "train.batch_size=8",
    "train.lr=0.003",
    "train.classify_actor_clips=true",
    "train.dice_weight=1",
    "loop.warm_start=true",
    "loop.warm_start_steps=200",
    "loop.warm_start_lr=0.001",
    "selection.passes=10",
]
DIFFICULTY = "medium"
STRATEGIES = ("apu", "random")


def run_demo(out: Path, videos: int = 160, seed: int = 0, cycles: int = 2,
             strategies: Sequence[str] = STRATEGIES, overrides: Sequence[str] = ()) -> Path:
    """Run (or resume) the demo into ``out``; returns the report page."""
    data = out / f"synthetic-{DIFFICULTY}-{videos}v-seed{seed}"
    if (data / "dataset.json").exists():
        print(f"using cached synthetic dataset {data}")
    else:
        generate(data, num_videos=videos, seed=seed, config=synth_config(DIFFICULTY))
        print(f"generated synthetic dataset {data}")
    settings = [f"dataset.path={data}", f"seed={seed}", f"loop.cycles={cycles}", *DEMO_SETTINGS, *overrides]
    results: dict[str, list[CycleRecord]] = {}
    workspaces = []
    for strategy in strategies:
        ws = _workspace(out / f"workspace-{strategy}", [*settings, f"selection.strategy={strategy}"])
        if workspaces:
            share_first_model(workspaces[0], ws)
        print(f"\n== {strategy}: {ws.root}")
        outcome = run_loop(ws, on_cycle=lambda r: print(f"   cycle {r.cycle}: {r.percent:.1f}% of frames, "
                                                         f"v-mAP@0.5 {percent(r.v_map)}", flush=True))
        results[strategy] = outcome.records
        workspaces.append(ws)
    print("\n" + comparison_table(results))
    page = write_report(workspaces, out / "report", "sparselabel demo: APU against random selection")
    print(f"\nreport: {page}")
    return page


def _workspace(root: Path, settings: list[str]) -> Workspace:
    config = load_config(None, settings)
    if (root / LEDGER_FILE).exists():
        ws = Workspace.open(root)
        config.dataset.path = str(Path(config.dataset.path).resolve())  # as Workspace.create stores it
        if ws.config != config:  # an earlier version's demo, or other overrides: never mix the two
            ws.close()
            raise SparseLabelError("holds a demo run with other settings (an earlier version of sparselabel, "
                                   "or other overrides); remove the folder or choose another --out", root)
        if loop_started(ws):
            return ws
    else:
        ws = Workspace.create(root, config)
    start_loop(ws)
    return ws


def comparison_table(results: dict[str, list[CycleRecord]]) -> str:
    """One row per cycle, the strategies side by side."""
    names = list(results)
    head = f"{'cycle':>5}" + "".join(f" | {n + ' %':>9} {'clicks':>6} {'f-mAP':>6} {'v-mAP':>6}" for n in names)
    lines = [head, "-" * len(head)]
    for cycle in sorted({r.cycle for rs in results.values() for r in rs}):
        cells = []
        for n in names:
            r = next((r for r in results[n] if r.cycle == cycle), None)
            cells.append(f" | {'':>9} {'':>6} {'':>6} {'':>6}" if r is None else
                         f" | {r.percent:>9.2f} {r.clicks:>6} {percent(r.f_map):>6} {percent(r.v_map):>6}")
        lines.append(f"{cycle:>5}" + "".join(cells))
    return "\n".join(lines)

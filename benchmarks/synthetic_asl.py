"""The paper's comparisons on the synthetic benchmark (the demo's data and recipe, CPU), mean +/- std over 3 seeds.

    python benchmarks/synthetic_asl.py                          # every grid (resumable)
    python benchmarks/synthetic_asl.py --grids strategies       # Table 1 only
    python benchmarks/synthetic_asl.py --grids strategies --strategies apu random \
        --set model.clip_stride=2 --tag stride2                # another recipe, its own folder

The demo's data (the "medium" synthetic preset, 160 videos: 120 pool, 40 test) and model
and training recipe; 1% of each pool video's frames at random, then two cycles of 4.5%
chosen by each strategy: 1% -> 5.5% -> 10% of the pool's frames.
Table 1 (strategies): APU against random, equidistant, uncertainty and entropy, all with MGW.
Fig. 4 (losses): MGW against mask and interp, all with APU.
Fig. 6 (selection): global APU against local APU and whole-video selection, all with MGW.
Results: benchmarks/results/synthetic-medium-{strategies,losses,selection}[-TAG]/results.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparselabel.data.synthetic import generate, synth_config
from sparselabel.demo import DEMO_SETTINGS, DIFFICULTY
from sparselabel.loop.experiment import Experiment, format_summary, run_experiment

HERE = Path(__file__).parent
DATA = HERE / "data" / f"synthetic-{DIFFICULTY}-160v-seed0"  # the same folder benchmarks/learning_curve.py writes
SETTINGS = {**dict(s.split("=", 1) for s in DEMO_SETTINGS), "labels.initial_percent": 1,
            "selection.budget": "4.5%", "loop.cycles": 2, "loop.budget": "10%"}
SEEDS = [0, 1, 2]
GRIDS = {
    "strategies": {"selection.strategy": ["apu", "random", "equidistant", "uncertainty", "entropy"],
                   "train.loss": ["mgw"], "seed": SEEDS},
    "losses": {"selection.strategy": ["apu"], "train.loss": ["mask", "interp"], "seed": SEEDS},
    "selection": {"selection.strategy": ["apu-local", "video"], "train.loss": ["mgw"], "seed": SEEDS},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grids", nargs="+", choices=list(GRIDS), default=list(GRIDS))
    parser.add_argument("--strategies", nargs="+", help="only these strategies of the strategies grid")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="changes to the recipe; results go to folders named with --tag")
    parser.add_argument("--tag", help="suffix of the results folders (required with --set)")
    args = parser.parse_args()
    if args.set and not args.tag:
        parser.error("--set needs --tag, so that its results never overwrite the recipe's own")
    if any("=" not in s for s in args.set):
        parser.error("--set takes KEY=VALUE pairs")
    settings = {**SETTINGS, **dict(s.split("=", 1) for s in args.set), "dataset.path": str(DATA)}
    if not (DATA / "dataset.json").exists():
        generate(DATA, num_videos=160, seed=0, config=synth_config(DIFFICULTY))
    for name in args.grids:
        grid = dict(GRIDS[name])
        if name == "strategies" and args.strategies:
            grid["selection.strategy"] = args.strategies
        folder = f"synthetic-{DIFFICULTY}-{name}" + (f"-{args.tag}" if args.tag else "")
        exp = Experiment.create(folder, settings, grid, workers=1)
        summary = run_experiment(exp, HERE / "results" / folder)
        print(format_summary(summary))


if __name__ == "__main__":
    main()

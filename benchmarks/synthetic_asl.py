"""The paper's comparisons on the synthetic benchmark (small model, CPU), mean +/- std over 3 seeds.

    python benchmarks/synthetic_asl.py            # data, then both grids (resumable)

Table 1 (strategies): APU against random, both with the MGW loss.
Fig. 4 (losses): MGW against mask and interp, all with APU.
Fig. 6 (selection): global APU against local APU and whole-video selection, all with MGW.
Both from 2% of the frames (random initial labels) to 10% in two cycles of 4%, with the
demo's training settings. Results: benchmarks/results/synthetic-{strategies,losses,selection}/results.md
"""

from __future__ import annotations

from pathlib import Path

from sparselabel.data.synthetic import generate
from sparselabel.demo import DEMO_SETTINGS
from sparselabel.loop.experiment import Experiment, format_summary, run_experiment

HERE = Path(__file__).parent
DATA = HERE / "data" / "synthetic-24v-seed0"
SETTINGS = {**dict(s.split("=", 1) for s in DEMO_SETTINGS), "labels.initial_percent": 2, "selection.budget": "4%",
            "loop.cycles": 2, "loop.budget": "10%"}
GRIDS = {
    "synthetic-strategies": {"selection.strategy": ["apu", "random"], "train.loss": ["mgw"], "seed": [0, 1, 2]},
    "synthetic-losses": {"selection.strategy": ["apu"], "train.loss": ["mask", "interp"], "seed": [0, 1, 2]},
    "synthetic-selection": {"selection.strategy": ["apu-local", "video"], "train.loss": ["mgw"], "seed": [0, 1, 2]},
}


def main() -> None:
    if not (DATA / "dataset.json").exists():
        generate(DATA, num_videos=24, seed=0)
    for name, grid in GRIDS.items():
        exp = Experiment.create(name, {**SETTINGS, "dataset.path": str(DATA)}, grid, workers=2)
        summary = run_experiment(exp, HERE / "results" / name)
        print(format_summary(summary))


if __name__ == "__main__":
    main()

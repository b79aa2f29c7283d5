"""Dense-label quality: interpolation, the model and their fusion on the pool's unannotated frames.

    python benchmarks/dense_labels.py                        # synthetic and UCF101-24, 3 seeds each
    python benchmarks/dense_labels.py --data ucf24 --seeds 1 # adds to (replaces in) the saved records

A labeling-tool user annotates a few frames per video and wants boxes on all the
others (``sparselabel export --dense``). For 5% and 10% of each pool video's frames,
chosen at random, this trains the model on those answers, predicts the pool, and
scores each dense source on the frames that were NOT annotated: f-mAP@0.5 and mean
IoU (each true box's best IoU with a dense box of its frame).

- synthetic: the demo's data and recipe (medium preset, 160 videos, 120 in the pool).
- ucf24: the ten UCF101-24 clips of ../shared/data/ucf24 as the pool, the frozen
  Kinetics I3D encoder with the conv head (benchmarks/ucf24_loop.py --frozen's recipe, imported from it).

Prints a table (mean +/- std over seeds, in %) and writes benchmarks/results/dense-labels.json
(records of earlier runs are kept: a run of one dataset or seed adds its own).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ucf24_loop import COMMON, FROZEN, UCF24

from sparselabel.config import load_config
from sparselabel.data.synthetic import generate, synth_config
from sparselabel.demo import DEMO_SETTINGS, DIFFICULTY
from sparselabel.evaluation.dense import METHODS, dense_tracks, frame_rows
from sparselabel.evaluation.detections import frame_boxes
from sparselabel.evaluation.recovery import dense_quality
from sparselabel.loop.steps import predict_step, train_step
from sparselabel.loop.workspace import POOL, Workspace
from sparselabel.scoring.predict import VideoPrediction

HERE = Path(__file__).parent
RESULTS = HERE / "results"
OUTPUT = RESULTS / "dense-labels.json"
SYNTHETIC = HERE / "data" / f"synthetic-{DIFFICULTY}-160v-seed0"  # as benchmarks/synthetic_asl.py
DATASETS = {
    "synthetic": [f"dataset.path={SYNTHETIC}", *DEMO_SETTINGS],
    "ucf24": [f"{key}={value}" for key, value in {**COMMON, **FROZEN}.items()],
}
PERCENTS = (5, 10)


def measure(data: str, percent: int, seed: int, out: Path) -> dict:
    """Train on ``percent``% random frames per pool video; score every dense source."""
    root = out / f"{data}-{percent}pct-seed{seed}"
    settings = [*DATASETS[data], f"labels.initial_percent={percent}", f"seed={seed}"]
    ws = Workspace.open(root) if (root / "ledger.sqlite").exists() else Workspace.create(root, load_config(None, settings))
    run = train_step(ws).run_dir.name  # resumes (or skips) a run killed or done earlier
    folder = predict_step(ws, run=run, split=POOL)
    pool = sorted(ws.ledger.videos(POOL))
    answers: dict[str, list] = {}
    for answer in ws.ledger.annotations():
        answers.setdefault(answer.video_id, []).append(answer)
    annotated = {v: np.unique([a.frame for a in answers.get(v, [])]).astype(np.int64) for v in pool}
    rows: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    for index, vid in enumerate(pool):
        video, prediction = ws.dataset.videos[vid], VideoPrediction.load(folder, vid)
        boxes = frame_boxes(prediction.fg, prediction.size, ws.config.detection)
        for method in METHODS:
            tracks = dense_tracks(method, video.num_frames, answers.get(vid, []), boxes, max(video.label, 0),
                                  ws.config.detection)
            rows[method].append(frame_rows(tracks, index))
    truth = ws.dataset.act_gttubes(pool)
    scores = {m: dense_quality(truth, np.concatenate(rows[m]), pool, annotated) for m in METHODS}
    ws.close()
    return {"data": data, "percent": percent, "seed": seed,
            **{f"{m} {k}": v for m, s in scores.items() for k, v in s.items() if k != "boxes"}}


def table(records: list[dict]) -> str:
    columns = [f"{m} {k}" for k in ("f-mAP", "mean IoU") for m in METHODS]
    lines = ["| data | % frames | seeds | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
    for data in dict.fromkeys(r["data"] for r in records):
        for percent in PERCENTS:
            group = [r for r in records if r["data"] == data and r["percent"] == percent]
            if group:
                cells = [f"{100 * np.mean([r[c] for r in group]):.2f} ± {100 * np.std([r[c] for r in group]):.2f}"
                         for c in columns]
                lines.append(f"| {data} | {percent} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "dense-labels")
    args = parser.parse_args()
    if "synthetic" in args.data and not SYNTHETIC.exists():
        generate(SYNTHETIC, num_videos=160, seed=0, config=synth_config(DIFFICULTY))
    # Earlier runs' records stay (a run of one dataset or seed adds to them, replacing its own).
    saved = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else []
    records = []
    for data in args.data:
        if data == "ucf24" and not UCF24.exists():
            print(f"skipping ucf24: {UCF24} is absent")
            continue
        for seed in args.seeds:
            for percent in PERCENTS:
                records.append(measure(data, percent, seed, args.out))
                print(json.dumps(records[-1]), flush=True)
    ran = {(r["data"], r["percent"], r["seed"]) for r in records}
    records = [r for r in saved if (r["data"], r["percent"], r["seed"]) not in ran] + records
    records.sort(key=lambda r: (list(DATASETS).index(r["data"]), r["percent"], r["seed"]))
    print(table(records))
    OUTPUT.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()

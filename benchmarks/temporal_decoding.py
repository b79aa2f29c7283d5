"""Viterbi temporal decoding of tubes (detection.temporal=viterbi) against plain linking, on v-mAP.

    python benchmarks/temporal_decoding.py      # after benchmarks/synthetic_asl.py
    python benchmarks/temporal_decoding.py synthetic-medium-strategies-recipe4   # another results folder

Re-decodes the stored foreground maps of the synthetic benchmark's Table 1 runs
(APU and random, MGW, seeds 0-2, cycles 0-2: 18 models) on their test videos, with
each decoding (the rest of each run's own detection config unchanged), and scores them
with the ACT convention. No training: only how maps become tubes changes, so the
comparison is paired model by model. Prints a table and writes
benchmarks/results/temporal_decoding-<folder without "synthetic-">.json.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from sparselabel.demo import DIFFICULTY
from sparselabel.evaluation import frame_map, video_map
from sparselabel.evaluation.detections import LinkConfig, act_detections
from sparselabel.jsonio import write_json
from sparselabel.loop.steps import VIDEO_IOUS, videos_of
from sparselabel.loop.workspace import TEST, Workspace
from sparselabel.scoring.predict import VideoPrediction

HERE = Path(__file__).parent
FOLDER = f"synthetic-{DIFFICULTY}-strategies"  # temporal_decoding.json holds issue 8's runs
STRATEGIES = ("selection.strategy=apu", "selection.strategy=random")
DECODINGS = {"linking only": {"temporal": "none"},
             **{f"viterbi, duration {d}": {"temporal": "viterbi", "duration": d} for d in (10, 30, 60)}}


def model_scores(workspace: Workspace, run: str, link: LinkConfig) -> dict[str, float]:
    """f-mAP@0.5 and v-mAP at each IoU of one run's stored test predictions."""
    videos = videos_of(workspace, TEST)
    folder = workspace.root / "predictions" / run
    predictions = {vid: VideoPrediction.load(folder, vid).as_input() for vid in videos}
    frame_dets, tube_dets = act_detections(predictions, videos, link)
    gt = workspace.dataset.act_gttubes(videos)
    out = {"f-mAP@0.5": frame_map(gt, frame_dets, videos, 0.5)[0]}
    out |= {f"v-mAP@{t}": video_map(gt, tube_dets, t)[0] for t in VIDEO_IOUS}
    return out


def seed_mean_std(rows: list[dict], models: list[str], seeds: list[str], metric: str) -> list[float]:
    per_seed = [np.mean([r[metric] for r, m in zip(rows, models, strict=True) if f"seed={seed}/" in m])
                for seed in seeds]
    return [float(np.mean(per_seed)), float(np.std(per_seed))]


def paired_difference(values: list[float], baseline: list[float]) -> dict:
    diff = np.array(values) - np.array(baseline)
    return {"mean": float(diff.mean()), "std": float(diff.std()), "better": int((diff > 1e-12).sum()),
            "worse": int((diff < -1e-12).sum())}


def main(folder: str = FOLDER) -> None:
    runs = HERE / "results" / folder / "runs"
    results = HERE / "results" / f"temporal_decoding-{folder.removeprefix('synthetic-')}.json"
    roots = sorted(p for p in runs.glob("*") if (p / "predictions").is_dir() and p.name.split(",")[0] in STRATEGIES)
    if not roots:
        raise SystemExit(f"no runs under {runs}: run benchmarks/synthetic_asl.py first")
    per_model: dict[str, list[dict[str, float]]] = {name: [] for name in DECODINGS}
    models = []
    for root in roots:
        with Workspace.open(root) as ws:
            for run in sorted(p.name for p in (root / "predictions").iterdir()):
                models.append(f"{root.name}/{run}")
                for name, options in DECODINGS.items():
                    link = dataclasses.replace(ws.config.detection, **options)
                    per_model[name].append(model_scores(ws, run, link))
    metrics = list(per_model["linking only"][0])
    table = {name: {m: [float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows]))]
                    for m in metrics} for name, rows in per_model.items()}
    seeds = sorted({m.split("seed=")[1].split("/")[0] for m in models})
    over_seeds = {name: {m: seed_mean_std(rows, models, seeds, m) for m in metrics} for name, rows in per_model.items()}
    print(f"\nmean ± std over seeds {', '.join(seeds)} (each seed: the mean of its {len(models) // len(seeds)} models), in %")
    for name, row in over_seeds.items():
        print(f"{name:<22}" + "".join(f"{100 * a:>9.2f} ± {100 * s:<4.2f}" for a, s in row.values()))
    base = per_model["linking only"]
    paired = {name: {m: paired_difference([r[m] for r in rows], [b[m] for b in base]) for m in metrics}
              for name, rows in per_model.items() if name != "linking only"}
    print(f"{len(models)} models; mean ± std over models, in %")
    print(f"{'decoding':<22}" + "".join(f"{m:>16}" for m in metrics))
    for name, row in table.items():
        print(f"{name:<22}" + "".join(f"{100 * a:>9.2f} ± {100 * s:<4.2f}" for a, s in row.values()))
    print("\npaired difference to linking only (mean ± std over models, in %; models better / worse)")
    for name, row in paired.items():
        print(f"{name:<22}" + "".join(f"{100 * d['mean']:>+7.2f} ± {100 * d['std']:<4.2f} {d['better']:>2}/{d['worse']:<2}"
                                      for d in row.values()))
    write_json({"models": models, "decodings": DECODINGS, "mean_std": table, "mean_std_over_seeds": over_seeds,
                "paired_difference": paired,
                "per_model": per_model}, results)
    print(f"wrote {results}")


if __name__ == "__main__":
    main(*sys.argv[1:2])

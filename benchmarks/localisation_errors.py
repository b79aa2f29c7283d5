"""What the class-agnostic boxes get wrong, on the test videos of trained learning-curve workspaces.

    python benchmarks/learning_curve.py --seeds 0 1 2 --steps 400      # trains the workspaces
    python benchmarks/localisation_errors.py --seeds 0 1 2 --steps 400  # reads their predictions

Every ground-truth box of a test video falls in one class: found (a predicted box on its
frame with IoU >= 0.5), too small or too large (the best predicted box overlaps it with IoU
in (0.05, 0.5) and is smaller / larger), merged (that box also overlaps another actor: the
connected component joined two), or missed. Predicted boxes are false alarms when they
overlap no actor, on frames that show an actor (distractors, occluders) or on frames that
show none (before or after the action). Shares in %, mean +/- std over seeds.

Results: benchmarks/results/localisation-errors.json (and the table, printed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from learning_curve import OUT, RECIPE, recipe_name

from sparselabel.evaluation.boxes import box_area, spatial_iou
from sparselabel.evaluation.detections import frame_boxes
from sparselabel.jsonio import write_json
from sparselabel.loop.steps import current_run, videos_of
from sparselabel.loop.workspace import TEST, Workspace
from sparselabel.scoring.predict import VideoPrediction

TRUTH = ("found", "too_small", "too_large", "merged", "missed")
ALARMS = ("alarm_actor_frame", "alarm_empty_frame")


def ground_truth(ws: Workspace, vid: str) -> dict[int, np.ndarray]:
    boxes: dict[int, list] = {}
    for tube in ws.dataset.tubes.get(vid, []):
        for frame, box in zip(tube.frames, tube.boxes, strict=True):
            boxes.setdefault(int(frame), []).append(np.asarray(box, dtype=np.float64))
    return {frame: np.stack(b) for frame, b in boxes.items()}


def count_frame(gt: np.ndarray, pred: np.ndarray, counts: dict[str, int]) -> None:
    if not len(gt):
        counts["alarm_empty_frame"] += len(pred)
        return
    iou = spatial_iou(gt, pred) if len(pred) else np.zeros((len(gt), 0))  # the convention frame_map uses
    for i in range(len(gt)):
        best = int(iou[i].argmax()) if len(pred) else -1
        if best < 0 or iou[i, best] <= 0.05:
            counts["missed"] += 1
        elif iou[i, best] >= 0.5:
            counts["found"] += 1
        elif (np.delete(iou[:, best], i) > 0.05).any():
            counts["merged"] += 1
        else:
            counts["too_small" if box_area(pred[best:best + 1])[0] < box_area(gt[i:i + 1])[0] else "too_large"] += 1
    counts["alarm_actor_frame"] += int((iou.max(axis=0) <= 0.05).sum()) if len(pred) else 0


def shares(ws: Workspace) -> dict[str, float]:
    counts = dict.fromkeys(TRUTH + ALARMS, 0)
    run, predicted = current_run(ws), 0
    for vid in videos_of(ws, TEST):
        fg, _, size = VideoPrediction.load(ws.root / "predictions" / run, vid).as_input()
        truth = ground_truth(ws, vid)
        for frame, rows in enumerate(frame_boxes(fg, size, ws.config.detection)):
            count_frame(truth.get(frame, np.zeros((0, 4))), rows[:, :4], counts)
            predicted += len(rows)
    actors = sum(counts[k] for k in TRUTH)
    return {k: counts[k] / actors for k in TRUTH} | {k: counts[k] / max(predicted, 1) for k in ALARMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tags", nargs="+", default=[f"{recipe_name(RECIPE)}-default"],
                        help="recipe-settings tags of benchmarks/learning_curve.py workspaces, e.g. "
                             "'demo-default', 'demo-time_strides[1,2,2]' (default: %(default)s)")
    args = parser.parse_args()
    rows = []
    for tag in args.tags:
        per_seed = []
        for seed in args.seeds:
            root = OUT / f"{args.difficulty}-160v-{args.steps}steps-seed{seed}-{tag}"
            if not root.exists():
                raise SystemExit(f"error: {root}: no such workspace; run benchmarks/learning_curve.py first")
            with Workspace.open(root) as ws:
                per_seed.append(shares(ws))
        rows.append({"difficulty": args.difficulty, "tag": tag, "steps": args.steps, "seeds": args.seeds,
                     **{k: [s[k] for s in per_seed] for k in TRUTH + ALARMS}})
    head = f"{'workspaces':>24} " + " ".join(f"{k:>18}" for k in TRUTH + ALARMS)
    print(head + "\n" + "-" * len(head))
    for row in rows:
        print(f"{row['tag']:>24} " + " ".join(
            f"{100 * np.mean(row[k]):>11.1f}+-{100 * np.std(row[k]):<5.1f}" for k in TRUTH + ALARMS))
    write_json(merged(rows, Path(__file__).parent / "results" / "localisation-errors.json"),
               Path(__file__).parent / "results" / "localisation-errors.json")


def merged(rows: list[dict], path: Path) -> list[dict]:
    """The rows already in ``path`` (rows without a difficulty were measured on the earlier
    ``medium``, now ``medium1``), with those of the same data, tag and steps replaced."""
    def key(row: dict) -> tuple:
        return row.get("difficulty", "medium1"), row["tag"], row["steps"]

    new = {key(row) for row in rows}
    old = json.loads(path.read_text()) if path.exists() else []
    return [r for r in old if key(r) not in new] + rows


if __name__ == "__main__":
    main()

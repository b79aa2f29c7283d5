"""Where accuracy is lost: full supervision on the synthetic data, train videos against test videos.

    python benchmarks/learning_curve.py                       # the demo's data and recipe
    python benchmarks/learning_curve.py --difficulty hard --videos 24 --steps 250 700 --old-recipe
    python benchmarks/learning_curve.py --steps 400 1200 --seeds 0 1 2 \\
        --set model.encoder=i3d model.freeze_encoder=true

Every pool frame is annotated (labels.initial_percent=100), so nothing here depends on
selection or on sparse labels. Per (pool size, steps, seed, settings) one workspace is
trained, every video predicted, and one row printed with, on the pool ("train") and the
test videos:

    f-mAP / v-mAP@0.5     the detector as evaluated everywhere else
    agnostic f-mAP        every class merged into one: localisation alone
    video acc             the predicted video class (argmax of the mean class scores)
    true-class f-mAP      foreground decoded with the true class and scored with it:
                          localisation and decoding, with classification taken out
    ceiling               f-mAP / v-mAP of the ground-truth boxes painted into maps and
                          decoded as predictions are: what maps -> boxes -> tubes allows

Results: benchmarks/results/learning-curve.json (and the table, printed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sparselabel.config import load_config
from sparselabel.data.synthetic import DIFFICULTIES, generate, synth_config
from sparselabel.demo import DEMO_SETTINGS, DIFFICULTY
from sparselabel.evaluation import frame_map, video_map
from sparselabel.evaluation.detections import LinkConfig, act_detections
from sparselabel.jsonio import write_json
from sparselabel.loop.steps import current_run, predict_step, train_step, videos_of, workspace_cache
from sparselabel.loop.workspace import LEDGER_FILE, POOL, TEST, Workspace
from sparselabel.models.runs import load_trained
from sparselabel.scoring.predict import VideoPrediction, predict_video
from sparselabel.train.clips import paint_box
from sparselabel.train.runner import clip_spec, dist_env, pick_device

HERE = Path(__file__).parent
OUT = HERE / "results" / "learning-curve"
# The demo's model and training recipe (its loop settings do not matter here), every frame annotated.
RECIPE = [s for s in DEMO_SETTINGS if s.split(".")[0] in ("model", "train", "detection")] + ["labels.initial_percent=100"]
# The recipe before issue 12 (capsule head, 250-700 steps at lr 0.002), for the "hard" rows.
OLD_RECIPE = ["model.input_size=[64,64]", "train.batch_size=8", "train.lr=0.002", "labels.initial_percent=100"]


def recipe_name(recipe: list[str]) -> str:
    # "new" names the rows of the demo's recipe of issue 12's first session (kept in the JSON
    # and RESULTS.md), "demo4" / "demo5" / "demo8" those of its fourth / fifth / eighth session
    # ("demo5b": the fifth's re-measured on the eighth session's CPU); "demo" the demo's recipe now.
    return "old" if recipe is OLD_RECIPE else "demo"


def dataset(videos: int, difficulty: str) -> Path:
    # "hard" keeps the name of the data the earlier benchmarks wrote (the generator's defaults).
    name = f"synthetic-{videos}v-seed0" if difficulty == "hard" else f"synthetic-{difficulty}-{videos}v-seed0"
    path = HERE / "data" / name
    if not (path / "dataset.json").exists():
        generate(path, num_videos=videos, seed=0, config=synth_config(difficulty))
    return path


def workspace(videos: int, steps: int, seed: int, settings: list[str], difficulty: str, recipe: list[str]) -> Workspace:
    tag = "-".join(s.replace("model.", "").replace("=", "").replace("/", "") for s in settings) or "default"
    root = OUT / f"{difficulty}-{videos}v-{steps}steps-seed{seed}-{recipe_name(recipe)}-{tag}"
    if (root / LEDGER_FILE).exists():
        return Workspace.open(root)
    config = load_config(None, [f"dataset.path={dataset(videos, difficulty)}", f"seed={seed}", *recipe,
                                f"train.steps={steps}", *settings])
    return Workspace.create(root, config)


def painted(ws: Workspace, vid: str) -> np.ndarray:
    video = ws.dataset.videos[vid]
    maps = np.zeros((video.num_frames, video.height, video.width), dtype=np.float32)
    for tube in ws.dataset.tubes.get(vid, []):
        for frame, box in zip(tube.frames, tube.boxes, strict=True):
            paint_box(maps[frame], box)
    return maps


def metrics(ws: Workspace, videos: list[str], preds: dict, true_preds: dict) -> dict:
    gt = ws.dataset.act_gttubes(videos)
    link = ws.config.detection
    fd, td = act_detections(preds, videos, link)
    labels = {v: ws.dataset.videos[v].label for v in videos}
    merged = {v: {0: [t for ts in g.values() for t in ts]} for v, g in gt.items()}
    agnostic = {v: (p[0], np.ones(1, np.float32), p[2]) for v, p in preds.items()}
    fa, _ = act_detections(agnostic, videos, LinkConfig(**{**vars(link), "top_k": 1}))
    onehot = {v: (p[0], np.eye(len(p[1]), dtype=np.float32)[labels[v]], p[2]) for v, p in true_preds.items()}
    ft, _ = act_detections(onehot, videos, link)
    ceiling = {v: (painted(ws, v), np.eye(len(p[1]), dtype=np.float32)[labels[v]], p[2]) for v, p in preds.items()}
    fc, tc = act_detections(ceiling, videos, link)
    return {"f_map": frame_map(gt, fd, videos)[0], "v_map": video_map(gt, td, 0.5)[0],
            "agnostic_f_map": frame_map(merged, fa, videos)[0],
            "video_acc": float(np.mean([preds[v][1].argmax() == labels[v] for v in videos])),
            "true_class_f_map": frame_map(gt, ft, videos)[0],
            "ceiling_f_map": frame_map(gt, fc, videos)[0], "ceiling_v_map": video_map(gt, tc, 0.5)[0]}


def run(videos: int, steps: int, seed: int, settings: list[str], difficulty: str, old: bool) -> dict:
    ws = workspace(videos, steps, seed, settings, difficulty, OLD_RECIPE if old else RECIPE)
    train_step(ws)
    run_name = current_run(ws)
    predict_step(ws, run_name, split="all")
    device = pick_device(ws.config.train.device, dist_env())
    model = load_trained(ws.root / "runs" / run_name, ws.config, len(ws.ledger.classes), device)
    row = {"difficulty": difficulty, "recipe": recipe_name(OLD_RECIPE if old else RECIPE), "videos": videos, "steps": steps,
           "seed": seed, "settings": settings}
    for split, name in ((POOL, "train"), (TEST, "test")):
        ids = videos_of(ws, split)
        folder = ws.root / "predictions" / run_name
        preds = {v: VideoPrediction.load(folder, v).as_input() for v in ids}
        cache = workspace_cache(ws, model, [ws.dataset.videos[v] for v in ids], device)
        true_preds = {}
        for v in ids:
            video = ws.dataset.videos[v]
            true_preds[v] = predict_video(model, video, clip_spec(ws.config, augment=False), device, cache=cache,
                                          label=video.label).as_input()
        row[name] = metrics(ws, ids, preds, true_preds)
    return row


COLUMNS = ("f_map", "v_map", "agnostic_f_map", "video_acc", "true_class_f_map", "ceiling_f_map", "ceiling_v_map")


def table(rows: list[dict]) -> str:
    """Mean +/- std over seeds per (difficulty, recipe, videos, steps, settings, split), in %."""
    head = (f"{'data':>6} {'recipe':>6} {'videos':>6} {'steps':>5} {'seeds':>5} {'split':>5} "
            + " ".join(f"{c:>16}" for c in COLUMNS) + "  settings")
    lines = [head, "-" * len(head)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["difficulty"], r["recipe"], r["videos"], r["steps"], tuple(r["settings"])), []).append(r)
    for (difficulty, recipe, videos, steps, settings), rs in groups.items():
        for split in ("train", "test"):
            vals = " ".join(f"{_mean_std([100 * r[split][c] for r in rs]):>16}" for c in COLUMNS)
            lines.append(f"{difficulty:>6} {recipe:>6} {videos:>6} {steps:>5} {len(rs):>5} {split:>5} {vals}  "
                         f"{' '.join(settings)}")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.1f}" if len(values) == 1 else f"{np.mean(values):.1f}+-{np.std(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--difficulty", default=DIFFICULTY, choices=tuple(DIFFICULTIES))
    parser.add_argument("--old-recipe", action="store_true", help="the capsule-head recipe before issue 12")
    parser.add_argument("--videos", type=int, nargs="+", default=[160])
    parser.add_argument("--steps", type=int, nargs="+", default=[400, 1200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [run(v, s, seed, list(args.set), args.difficulty, args.old_recipe)
            for v in args.videos for s in args.steps for seed in args.seeds]
    print(table(rows))
    results = OUT.parent / "learning-curve.json"
    old = json.loads(results.read_text()) if results.exists() else []
    keep = [r for r in old if "difficulty" in r and not any(_same(r, n) for n in rows)]
    write_json(keep + rows, results)
    print(f"\nall rows so far ({results}):\n" + table(keep + rows))


def _same(a: dict, b: dict) -> bool:
    keys = ("difficulty", "recipe", "videos", "steps", "seed", "settings")
    return all(a[k] == b[k] for k in keys)


if __name__ == "__main__":
    main()

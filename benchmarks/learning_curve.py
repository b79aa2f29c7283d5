"""Where accuracy is lost: full supervision on the synthetic data, train videos against test videos.

    python benchmarks/learning_curve.py                       # the default grid below
    python benchmarks/learning_curve.py --steps 250 700 --videos 24 96 --seeds 0 1 2 \\
        --set model.head=conv model.encoder=i3d model.freeze_encoder=true

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
from sparselabel.data.synthetic import generate
from sparselabel.evaluation import frame_map, video_map
from sparselabel.evaluation.detections import LinkConfig, act_detections
from sparselabel.jsonio import write_json
from sparselabel.loop.steps import current_run, predict_step, train_step, videos_of, workspace_cache
from sparselabel.loop.workspace import LEDGER_FILE, POOL, TEST, Workspace
from sparselabel.scoring.predict import VideoPrediction, predict_video
from sparselabel.train.clips import paint_box
from sparselabel.train.trainer import clip_spec, dist_env, load_trained, pick_device

HERE = Path(__file__).parent
OUT = HERE / "results" / "learning-curve"
DEMO = ["model.input_size=[64,64]", "train.batch_size=8", "train.lr=0.002", "labels.initial_percent=100"]


def dataset(videos: int) -> Path:
    path = HERE / "data" / f"synthetic-{videos}v-seed0"
    if not (path / "dataset.json").exists():
        generate(path, num_videos=videos, seed=0)
    return path


def workspace(videos: int, steps: int, seed: int, settings: list[str]) -> Workspace:
    tag = "-".join(s.replace("model.", "").replace("=", "").replace("/", "") for s in settings) or "default"
    root = OUT / f"{videos}v-{steps}steps-seed{seed}-{tag}"
    if (root / LEDGER_FILE).exists():
        return Workspace.open(root)
    config = load_config(None, [f"dataset.path={dataset(videos)}", f"seed={seed}", f"train.steps={steps}",
                                *DEMO, *settings])
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


def run(videos: int, steps: int, seed: int, settings: list[str]) -> dict:
    ws = workspace(videos, steps, seed, settings)
    train_step(ws)
    run_name = current_run(ws)
    predict_step(ws, run_name, split="all")
    device = pick_device(ws.config.train.device, dist_env())
    model = load_trained(ws.root / "runs" / run_name, ws.config, len(ws.ledger.classes), device)
    row = {"videos": videos, "steps": steps, "seed": seed, "settings": settings}
    for split, name in ((POOL, "train"), (TEST, "test")):
        ids = videos_of(ws, split)
        folder = ws.root / "predictions" / run_name
        preds = {}
        for v in ids:
            p = VideoPrediction.load(folder, v)
            preds[v] = (p.fg, p.class_scores, p.size)
        cache = workspace_cache(ws, model, [ws.dataset.videos[v] for v in ids], device)
        true_preds = {}
        for v in ids:
            video = ws.dataset.videos[v]
            p = predict_video(model, video, clip_spec(ws.config, augment=False), device, cache=cache,
                              label=video.label)
            true_preds[v] = (p.fg, p.class_scores, p.size)
        row[name] = metrics(ws, ids, preds, true_preds)
    return row


COLUMNS = ("f_map", "v_map", "agnostic_f_map", "video_acc", "true_class_f_map", "ceiling_f_map", "ceiling_v_map")


def table(rows: list[dict]) -> str:
    head = f"{'videos':>6} {'steps':>5} {'seed':>4} {'split':>5} " + " ".join(f"{c:>16}" for c in COLUMNS) + "  settings"
    lines = [head, "-" * len(head)]
    for r in rows:
        for split in ("train", "test"):
            vals = " ".join(f"{100 * r[split][c]:>16.2f}" for c in COLUMNS)
            lines.append(f"{r['videos']:>6} {r['steps']:>5} {r['seed']:>4} {split:>5} {vals}  {' '.join(r['settings'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[24])
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 700])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], help="KEY=VALUE config overrides")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [run(v, s, seed, list(args.set)) for v in args.videos for s in args.steps for seed in args.seeds]
    print(table(rows))
    results = OUT.parent / "learning-curve.json"
    old = json.loads(results.read_text()) if results.exists() else []
    keep = [r for r in old if not any((r["videos"], r["steps"], r["seed"], r["settings"]) ==
                                      (n["videos"], n["steps"], n["seed"], n["settings"]) for n in rows)]
    write_json(keep + rows, results)


if __name__ == "__main__":
    main()

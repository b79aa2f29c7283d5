"""The steps of a cycle on a workspace: train, predict, evaluate.

Each step reads the workspace (config, ledger, earlier steps' files) and writes
its own files under the workspace; the CLI commands and the loop call these.

    runs/cycle-NNN/          training run (see train.trainer)
    predictions/cycle-NNN/   <video>.npz (foreground maps, class scores),
                             frame_dets.pkl, tube_dets.pkl, videos.json (ACT structures)
    reports/eval-cycle-NNN.json
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from sparselabel.errors import SparseLabelError
from sparselabel.evaluation import frame_map, video_map
from sparselabel.evaluation.detections import LinkConfig, act_detections
from sparselabel.evaluation.masks import evaluate_sequence
from sparselabel.loop.workspace import POOL, TEST, Workspace
from sparselabel.scoring.predict import VideoPrediction, predict_video, prediction_path
from sparselabel.train.trainer import (
    TrainResult,
    clip_spec,
    dist_env,
    load_trained,
    pick_device,
    train_workspace,
)

VIDEO_IOUS = (0.1, 0.2, 0.3, 0.5, 0.75)


def current_run(workspace: Workspace) -> str:
    """The run name of the workspace's latest annotated cycle."""
    cycles = [a.cycle for a in workspace.ledger.annotations()]
    if not cycles:
        raise SparseLabelError("no annotated frames yet", workspace.ledger.path)
    return f"cycle-{max(cycles):03d}"


def train_step(workspace: Workspace, restart: bool = False) -> TrainResult:
    return train_workspace(workspace, run_name=current_run(workspace), restart=restart)


def videos_of(workspace: Workspace, split: str) -> list[str]:
    if split == "all":
        return sorted(workspace.ledger.videos())
    if split not in (POOL, TEST):
        raise SparseLabelError(f"unknown split {split!r}; use pool, test or all")
    return sorted(workspace.ledger.videos(split))


def predict_step(workspace: Workspace, run: str | None = None, split: str = "all",
                 link: LinkConfig | None = None) -> Path:
    """Foreground maps and class scores of every frame, then boxes and linked tubes."""
    run = run or current_run(workspace)
    config = workspace.config
    device = pick_device(config.train.device, dist_env())
    model = load_trained(workspace.root / "runs" / run, config, len(workspace.ledger.classes), device)
    out = workspace.root / "predictions" / run
    out.mkdir(parents=True, exist_ok=True)
    spec = clip_spec(config, augment=False)
    videos = videos_of(workspace, split)
    for vid in tqdm(videos, desc="predict", unit="video", disable=None):
        video = workspace.dataset.videos[vid]
        predict_video(model, video, spec, device, config.train.batch_size, config.train.bf16).save(out)
    write_detections(out, videos, link or config.detection)
    return out


def write_detections(folder: Path, videos: list[str], link: LinkConfig) -> None:
    """ACT-structured detections of the stored maps: frame_dets.pkl, tube_dets.pkl, videos.json."""
    predictions = {}
    for vid in videos:
        p = VideoPrediction.load(folder, vid)
        predictions[vid] = (p.fg, p.class_scores, p.size)
    frame_dets, tube_dets = act_detections(predictions, videos, link)
    (folder / "frame_dets.pkl").write_bytes(pickle.dumps(frame_dets))
    (folder / "tube_dets.pkl").write_bytes(pickle.dumps(tube_dets))
    (folder / "videos.json").write_text(json.dumps(videos))


def evaluate_step(workspace: Workspace, run: str | None = None, split: str = TEST,
                  convention: str = "act", link: LinkConfig | None = None) -> dict:
    """f-mAP@0.5 and v-mAP@0.1..0.75 of a run's predictions on ``split``, plus J&F where masks exist."""
    run = run or current_run(workspace)
    folder = workspace.root / "predictions" / run
    videos = videos_of(workspace, split)
    missing = [v for v in videos if not prediction_path(folder, v).exists()]
    if missing:
        raise SparseLabelError(f"no predictions for {len(missing)} videos (e.g. {missing[0]!r}); "
                               "run `sparselabel predict` first", folder)
    predictions = {v: _loaded(folder, v) for v in videos}
    frame_dets, tube_dets = act_detections(predictions, videos, link or workspace.config.detection)
    gt = workspace.dataset.act_gttubes(videos)
    results = {"run": run, "split": split, "convention": convention, "num_videos": len(videos),
               "frame_map": {"0.5": _named(*frame_map(gt, frame_dets, videos, 0.5, convention), workspace)},
               "video_map": {str(t): _named(*video_map(gt, tube_dets, t, convention), workspace)
                             for t in VIDEO_IOUS}}
    segmentation = mask_scores(workspace, predictions, videos)
    if segmentation:
        results["segmentation"] = segmentation
    report = workspace.root / "reports" / f"eval-{run}-{split}-{convention}.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps(_finite(results), indent=1))
    results["report"] = str(report)
    return results


def _loaded(folder: Path, vid: str):
    p = VideoPrediction.load(folder, vid)
    return p.fg, p.class_scores, p.size


def _named(mean: float, per_class: dict[int, float], workspace: Workspace) -> dict:
    names = workspace.ledger.classes
    return {"mAP": mean, "per_class": {names[k]: v for k, v in sorted(per_class.items())}}


def mask_scores(workspace: Workspace, predictions: dict, videos: list[str], threshold: float = 0.5) -> dict:
    """Mean J and F of the thresholded foreground against the union of the actors' masks."""
    per_video = {}
    for vid in videos:
        tubes = workspace.dataset.tubes.get(vid, [])
        if not tubes or any(t.masks is None for t in tubes):
            continue
        fg, _, (height, width) = predictions[vid]
        gt = np.zeros((len(fg), height, width), dtype=bool)
        for tube in tubes:
            gt[tube.frames] |= tube.masks
        zoom = (1, height / fg.shape[1], width / fg.shape[2])
        pred = ndimage.zoom(fg, zoom, order=1)[:, :height, :width] > threshold
        per_video[vid] = evaluate_sequence(gt, pred, exclude_first_last=False)
    if not per_video:
        return {}
    keys = ("J", "F")
    mean = {k: float(np.mean([s[k]["mean"] for s in per_video.values()])) for k in keys}
    return {"J&F": (mean["J"] + mean["F"]) / 2, **mean, "num_videos": len(per_video)}


def _finite(x):
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return x


def format_results(results: dict) -> str:
    cols = [("f-mAP@0.5", results["frame_map"]["0.5"]["mAP"])]
    cols += [(f"v-mAP@{t}", v["mAP"]) for t, v in results["video_map"].items()]
    if "segmentation" in results:
        cols += [(k, results["segmentation"][k]) for k in ("J&F", "J", "F")]
    head = f"{results['run']} on {results['split']} ({results['num_videos']} videos, convention {results['convention']})"
    return "\n".join([head, "".join(f"{c:>11}" for c, _ in cols),
                      "".join(f"{100 * v:>11.2f}" if v is not None and np.isfinite(v) else f"{'-':>11}"
                              for _, v in cols)])


"""The steps of a cycle on a workspace: train, predict, evaluate.

Each step reads the workspace (config, ledger, earlier steps' files) and writes
its own files under the workspace; the CLI commands and the loop call these.

    runs/cycle-NNN/          training run (see train.trainer)
    predictions/cycle-NNN/   <video>.npz (foreground maps, class scores),
                             frame_dets.pkl, tube_dets.pkl, videos.json (ACT structures)
    reports/eval-cycle-NNN.json
    scores/cycle-NNN/        <video>.npz (per-frame MC-dropout U, entropy, mean fg)
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import torch.distributed as dist
from scipy import ndimage
from tqdm import tqdm

from sparselabel.config import Config
from sparselabel.data.dataset import Video
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation import frame_map, video_map
from sparselabel.evaluation.detections import LinkConfig, act_detections, frame_boxes, link_tubes
from sparselabel.evaluation.masks import evaluate_sequence
from sparselabel.evaluation.trajectory import (
    combined_scores,
    fit_trajectory_classifier,
    tube_features,
)
from sparselabel.faults import fault_point
from sparselabel.jsonio import write_json
from sparselabel.loop.workspace import POOL, TEST, Workspace
from sparselabel.models.features import FeatureCache
from sparselabel.models.runs import FINAL, load_trained
from sparselabel.scoring.ensemble import (
    check_ensemble,
    ensemble_predict_video,
    ensemble_score_video,
    load_members,
    seed_run,
)
from sparselabel.scoring.mc_dropout import VideoScores, score_video
from sparselabel.scoring.predict import VideoPrediction, prediction_path
from sparselabel.selection import FrameScores, make_strategy, parse_budget, select
from sparselabel.train.runner import DistEnv, clip_spec, dist_env, pick_device
from sparselabel.train.trainer import TrainResult, filled_cache, train_workspace

VIDEO_IOUS = (0.1, 0.2, 0.3, 0.5, 0.75)


def current_run(workspace: Workspace) -> str:
    """The run name of the workspace's latest annotated cycle."""
    return f"cycle-{latest_annotated_cycle(workspace):03d}"


def train_step(workspace: Workspace, restart: bool = False) -> TrainResult:
    """Train the latest annotated cycle's model (and, with ensemble.kind=seeds, its other members)."""
    run = current_run(workspace)
    result = train_workspace(workspace, run_name=run, restart=restart)
    train_seed_members(workspace, latest_annotated_cycle(workspace))
    return result


def train_seed_members(workspace: Workspace, cycle: int) -> list[str]:
    """Train cycle ``cycle``'s seed members (ensemble.kind=seeds); returns their run names.

    Each is the main run's config with seed + m: the same labels, different initial head
    weights, batch order and dropout masks. With loop.warm_start a member continues its own
    previous-cycle member, so each member stays one chain of runs. Resumable as any run.
    """
    config, ens = workspace.config, workspace.config.ensemble
    if ens.members < 2 or ens.kind != "seeds":
        return []
    run, names = f"cycle-{cycle:03d}", []
    for m in range(1, ens.members):
        previous = workspace.root / "runs" / seed_run(f"cycle-{cycle - 1:03d}", m) / FINAL
        init = previous if config.loop.warm_start and cycle > 0 else None
        names.append(seed_run(run, m))
        member = replace(cycle_config(config, cycle), seed=config.seed + m)
        train_workspace(workspace, member, run_name=names[-1], init_from=init, cycle=cycle)
    return names


def run_config(workspace: Workspace, run: str) -> Config:
    """The config ``run`` trained with: a loop cycle after the first that continued the previous
    cycle's weights trained with ``continued`` (fewer steps, so its snapshots sit elsewhere)."""
    match = re.fullmatch(r"cycle-(\d+)(-seed\d+)?", run)
    return cycle_config(workspace.config, int(match.group(1))) if match else workspace.config


def cycle_config(config: Config, cycle: int) -> Config:
    """The config the loop trains cycle ``cycle`` with: ``continued`` after cycle 0 with loop.warm_start."""
    return continued(config) if config.loop.warm_start and cycle > 0 else config


def continued(config: Config) -> Config:
    """The config of a cycle that continues the previous cycle's weights (loop.warm_start):
    loop.warm_start_steps and warm_start_lr, where set, in place of train.steps and train.lr.
    Continuing needs fewer steps than starting, and a gentler rate keeps what was learnt."""
    loop, train = config.loop, config.train
    return replace(config, train=replace(train, steps=loop.warm_start_steps or train.steps,
                                         lr=loop.warm_start_lr or train.lr))


def videos_of(workspace: Workspace, split: str) -> list[str]:
    if split == "all":
        return sorted(workspace.ledger.videos())
    if split not in (POOL, TEST):
        raise SparseLabelError(f"unknown split {split!r}; use pool, test or all")
    return sorted(workspace.ledger.videos(split))


def predict_step(workspace: Workspace, run: str | None = None, split: str = "all",
                 link: LinkConfig | None = None) -> Path:
    """Foreground maps and class scores of every frame, then boxes and linked tubes.

    Under torchrun rank r predicts videos r, r + world, ... (one file per video, written
    then renamed); after a barrier rank 0 alone links them into tubes, so 2 processes
    write exactly the files of 1.
    """
    run = run or current_run(workspace)
    config = workspace.config
    env = dist_env()
    device = pick_device(config.train.device, env)
    models = load_members(workspace, run, device, run_config(workspace, run))  # or its ensemble.members averaged
    out = workspace.root / "predictions" / run
    out.mkdir(parents=True, exist_ok=True)
    spec = clip_spec(config, augment=False)
    link = link or config.detection
    # The trajectory classifier is fitted on the pool's tubes: predicting the test split needs them.
    videos = videos_of(workspace, "all" if link.trajectory_classes and split == TEST else split)
    cache = workspace_cache(workspace, models[0], [workspace.dataset.videos[v] for v in videos], device)
    pool = set(workspace.ledger.videos(POOL)) if config.detection.pool_label else set()
    for vid in tqdm(videos[env.rank :: env.world], desc="predict", unit="video", disable=None if env.is_main else True):
        video = workspace.dataset.videos[vid]
        label = video.label if vid in pool and video.label >= 0 else None  # the user's own class for the pool
        ensemble_predict_video(models, video, spec, device, config.train.batch_size, config.train.bf16,
                               cache, label, actor_weighted=config.train.classify_actor_clips).save(out)
    _barrier(env)
    if env.is_main:
        if link.trajectory_classes:
            classify_trajectories(workspace, out, videos, link)
        write_detections(out, videos, link)
    _barrier(env)
    return out


def classify_trajectories(workspace: Workspace, folder: Path, videos: list[str], link: LinkConfig) -> None:
    """Fit the trajectory classifier on the pool's tubes (their videos' classes are the user's)
    and make every video's class scores the product of the network's and its tubes'
    (evaluation.trajectory). The classifier and both scores go to ``trajectory.json``.

    Runs on freshly predicted maps (``predict_step`` rewrites every file first), so running
    it again gives the same files. Nothing changes without two labelled classes in the pool.
    """
    dataset, pool, stored = workspace.dataset, set(workspace.ledger.videos(POOL)), StoredPredictions(folder)
    (folder / "trajectory.json").unlink(missing_ok=True)  # an earlier prediction's, about other maps

    def long_tubes(vid: str) -> list[np.ndarray]:
        fg, _, size = stored[vid]
        return [t for t in link_tubes(frame_boxes(fg, size, link), link) if len(t) >= link.trajectory_min_length]

    tubes = {v: long_tubes(v) for v in videos}
    train = [(tube_features(t), dataset.videos[v].label) for v in videos if v in pool and dataset.videos[v].label >= 0
             for t in tubes[v]]
    if len({label for _, label in train}) < 2:
        return
    classifier = fit_trajectory_classifier(np.stack([f for f, _ in train]), np.array([lab for _, lab in train]),
                                           len(workspace.ledger.classes))
    record = {"classifier": classifier.to_json(), "videos": {}}
    for vid in videos:
        prediction = VideoPrediction.load(folder, vid)
        moving = classifier.video_scores(tubes[vid])
        record["videos"][vid] = {"network": prediction.class_scores.tolist(),
                                 "trajectory": None if moving is None else moving.tolist()}
        scores = combined_scores(prediction.class_scores, moving, link.network_classes)
        replace(prediction, class_scores=scores).save(folder)
    write_json(record, folder / "trajectory.json")


def workspace_cache(workspace: Workspace, model, videos: list[Video], device) -> FeatureCache | None:
    """With ``model.freeze_encoder``, the workspace's feature cache, filled for ``videos``
    (under torchrun each process fills its share; all wait for the whole); else None."""
    if not workspace.config.model.freeze_encoder:
        return None
    return filled_cache(workspace.root, model, workspace.config, videos, device)


def write_detections(folder: Path, videos: list[str], link: LinkConfig) -> None:
    """ACT-structured detections of the stored maps: frame_dets.pkl, tube_dets.pkl, videos.json."""
    frame_dets, tube_dets = act_detections(StoredPredictions(folder), videos, link)
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
    predictions = StoredPredictions(folder)
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
    write_json(results, report)
    results["report"] = str(report)
    return results


class StoredPredictions(Mapping):
    """A run's stored predictions by video id, each read from disk when asked for and not
    kept: linking and scoring walk the videos one at a time, so memory holds one video's
    maps, not the pool's."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __getitem__(self, vid: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        if not prediction_path(self.folder, vid).exists():
            raise KeyError(vid)
        return VideoPrediction.load(self.folder, vid).as_input()

    def __iter__(self) -> Iterator[str]:
        return (unquote(p.name.removesuffix(".npz")) for p in sorted(self.folder.glob("*.npz")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _named(mean: float, per_class: dict[int, float], workspace: Workspace) -> dict:
    names = workspace.ledger.classes
    return {"mAP": mean, "per_class": {names[k]: v for k, v in sorted(per_class.items())}}


def mask_scores(workspace: Workspace, predictions: Mapping, videos: list[str], threshold: float = 0.5) -> dict:
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


def format_results(results: dict) -> str:
    cols = [("f-mAP@0.5", results["frame_map"]["0.5"]["mAP"])]
    cols += [(f"v-mAP@{t}", v["mAP"]) for t, v in results["video_map"].items()]
    if "segmentation" in results:
        cols += [(k, results["segmentation"][k]) for k in ("J&F", "J", "F")]
    head = f"{results['run']} on {results['split']} ({results['num_videos']} videos, convention {results['convention']})"
    return "\n".join([head, "".join(f"{c:>11}" for c, _ in cols),
                      "".join(f"{100 * v:>11.2f}" if v is not None and np.isfinite(v) else f"{'-':>11}"
                              for _, v in cols)])


# --------------------------------------------------------------------------------------
# Scoring (MC-dropout, Eq. 1) and selection (APU and baselines)
# --------------------------------------------------------------------------------------


def scores_dir(workspace: Workspace, run: str) -> Path:
    return workspace.root / "scores" / run


def score_step(workspace: Workspace, passes: int | None = None, run: str | None = None) -> Path:
    """U, entropy and mean foreground of every frame of every pool video, by the run's model
    (MC-dropout) or by its ensemble members (selection.uncertainty=ensemble).

    Resumable: a video whose file exists with the same passes and tau is skipped (files
    are written then renamed, so a killed run leaves no half file). Under torchrun rank
    r scores videos r, r + world, ... and all ranks meet at a barrier at the end.
    Each video's dropout masks are seeded from (seed, video id): sharding and resuming
    give the same scores as one uninterrupted process.
    """
    run = run or current_run(workspace)
    config, cfg = workspace.config, workspace.config.selection
    env = dist_env()
    device = pick_device(config.train.device, env)
    score, passes = _video_scorer(workspace, run, device, passes or cfg.passes)
    out = scores_dir(workspace, run)
    out.mkdir(parents=True, exist_ok=True)
    mine = videos_of(workspace, POOL)[env.rank :: env.world]
    needs_features = "features" in make_strategy(cfg.strategy).needs
    todo = [v for v in mine if not _already_scored(out, v, passes, cfg.tau, needs_features, cfg.uncertainty)]
    for vid in tqdm(todo, desc="score", unit="video", disable=None if env.is_main else True):
        video = workspace.dataset.videos[vid]
        score(video).save(out)
        fault_point("score:video-saved")
    _barrier(env)
    return out


def _video_scorer(workspace: Workspace, run: str, device, passes: int) -> tuple[Callable[[Video], VideoScores], int]:
    """Scores of one video by ``selection.uncertainty``, and the ``passes`` its files record.

    mc-dropout: T dropout passes of the run's model; ensemble: one deterministic pass of
    each of the run's ensemble members, and passes = their number (see scoring.ensemble).
    """
    config, cfg = workspace.config, workspace.config.selection
    spec = clip_spec(config, augment=False)
    if cfg.uncertainty == "ensemble":
        check_ensemble(config)
        models = load_members(workspace, run, device, run_config(workspace, run))

        def by_members(video: Video) -> VideoScores:
            return ensemble_score_video(models, video, spec, device, tau=cfg.tau, batch_size=cfg.batch_size,
                                        bf16=cfg.bf16)

        return by_members, len(models)
    model = load_trained(workspace.root / "runs" / run, config, len(workspace.ledger.classes), device)
    pool = [workspace.dataset.videos[v] for v in videos_of(workspace, POOL)]
    cache = workspace_cache(workspace, model, pool, device)

    def by_dropout(video: Video) -> VideoScores:
        return score_video(model, video, spec, device, passes=passes, tau=cfg.tau, batch_size=cfg.batch_size,
                           seed=config.seed, pass_chunk=cfg.pass_chunk or None, bf16=cfg.bf16, cache=cache)

    return by_dropout, passes


def _already_scored(folder: Path, video_id: str, passes: int, tau: float, features: bool = False,
                    method: str = "mc-dropout") -> bool:
    """A usable score file exists. ``features``: the strategy needs per-video features, so a
    file from before they were stored is redone; otherwise such a file is still good.
    ``method``: MC-dropout and ensemble files are never taken for one another."""
    if not prediction_path(folder, video_id).exists():
        return False
    try:
        done = VideoScores.load(folder, video_id)
    except (OSError, ValueError, KeyError):
        return False
    return (done.passes == passes and done.tau == tau and (done.features is not None or not features)
            and done.method == method)


def _barrier(env: DistEnv) -> None:
    if env.world > 1:
        dist.barrier()


def load_scores(workspace: Workspace, run: str | None = None, videos: set[str] | None = None) -> FrameScores:
    """The pool's stored per-frame scores of ``run`` (default: the latest cycle's).

    ``videos`` limits them to those pool videos: an earlier cycle's scores do not cover
    videos that joined a growing pool later.
    """
    run = run or current_run(workspace)
    folder = scores_dir(workspace, run)
    pool = {v: video for v, video in workspace.ledger.videos(POOL).items() if videos is None or v in videos}
    missing = [v for v in pool if not prediction_path(folder, v).exists()]
    if missing:
        raise SparseLabelError(f"no scores for {len(missing)} pool videos (e.g. {missing[0]!r}); "
                               "run `sparselabel score` first", folder)
    loaded = {v: VideoScores.load(folder, v) for v in pool}
    for vid, s in loaded.items():
        if len(s.uncertainty) != pool[vid].num_frames:
            raise SparseLabelError(f"scores of {vid!r} have {len(s.uncertainty)} frames, "
                                   f"the video has {pool[vid].num_frames}", folder)
    # Per-video features only when every file has them (older files have none).
    features = {v: s.features for v, s in loaded.items()}
    features = None if any(f is None for f in features.values()) else features
    return FrameScores({v: pool[v].num_frames for v in pool},
                       uncertainty={v: s.uncertainty for v, s in loaded.items()},
                       entropy={v: s.entropy for v, s in loaded.items()},
                       mean_fg={v: s.mean_fg for v, s in loaded.items()},
                       features=features)


@dataclass
class SelectResult:
    cycle: int
    strategy: str
    picks: list[tuple[str, int]]
    scores: list[float | None]
    resumed: bool  # True: the cycle's recorded selection, returned without selecting again


def latest_annotated_cycle(workspace: Workspace) -> int:
    cycle = workspace.ledger.latest_answered_cycle()
    if cycle is None:
        raise SparseLabelError("no annotated frames yet", workspace.ledger.path)
    return cycle


def select_step(workspace: Workspace, strategy: str | None = None, budget: str | int | None = None,
                cycle: int | None = None) -> SelectResult:
    """Choose the next cycle's frames and record them in the ledger (no annotating here).

    ``cycle`` defaults to the latest annotated cycle + 1. If that cycle already has a
    selection it is returned as it is (resuming never selects twice). Frames selected
    earlier but not yet answered count as annotated, so they are not picked again.
    Strategies that read scores use those of the latest cycle's model (``score_step``).
    """
    cfg = workspace.config.selection
    ledger = workspace.ledger
    name = strategy or cfg.strategy
    try:
        query = make_strategy(name, lam=cfg.lam, sigma=cfg.sigma, window=cfg.entropy_window, videos=cfg.videos)
    except ValueError as exc:
        raise SparseLabelError(str(exc)) from None
    latest = latest_annotated_cycle(workspace)
    cycle = latest + 1 if cycle is None else cycle
    recorded = ledger.selections(cycle)
    if recorded:
        used = sorted({row[1] for row in recorded})
        if used != [name]:
            raise SparseLabelError(f"cycle {cycle} already has a selection by {', '.join(used)}, "
                                   f"not {name}", ledger.path)
        return SelectResult(cycle, name, [(v, f) for _, _, v, f, _ in recorded],
                            [s for *_, s in recorded], resumed=True)
    pool = ledger.videos(POOL)
    num_frames = {v: video.num_frames for v, video in pool.items()}
    frames = parse_budget(cfg.budget if budget is None else budget, sum(num_frames.values()))
    taken = {v: set(a.tolist()) for v, a in ledger.annotated_frames().items() if v in pool}
    for _, _, vid, frame, _ in ledger.selections():
        if vid in taken:
            taken[vid].add(frame)
    scores = load_scores(workspace, f"cycle-{latest:03d}") if query.needs else FrameScores(num_frames)
    rng = np.random.default_rng([workspace.config.seed, cycle])
    try:
        chosen = select(query, scores, taken, frames, seed=rng)
    except ValueError as exc:  # e.g. scores without the features a strategy needs
        raise SparseLabelError(str(exc), scores_dir(workspace, f"cycle-{latest:03d}")) from None
    ledger.record_selection(cycle, name, chosen.picks, chosen.scores)
    values = chosen.scores if chosen.scores is not None else [None] * len(chosen.picks)
    return SelectResult(cycle, name, chosen.picks, list(values), resumed=False)


# --------------------------------------------------------------------------------------
# Dense-label recovery (the pool's unannotated frames)
# --------------------------------------------------------------------------------------


def recovery_step(workspace: Workspace, run: str, cycle: int, convention: str = "act") -> dict:
    """f-mAP@0.5 of the model and of linear interpolation on the pool's unannotated frames."""
    from sparselabel.evaluation.recovery import interpolation_dets, recovery_map

    folder = workspace.root / "predictions" / run
    pool = videos_of(workspace, POOL)
    answers: dict[str, list] = {}
    for answer in workspace.ledger.annotations():
        if answer.cycle <= cycle:
            answers.setdefault(answer.video_id, []).append(answer)
    annotated = {v: np.array(sorted(a.frame for a in answers.get(v, [])), dtype=np.int64) for v in pool}
    model_dets, _ = act_detections(StoredPredictions(folder), pool, workspace.config.detection)
    num_frames = {v: workspace.dataset.videos[v].num_frames for v in pool}
    interp = interpolation_dets(answers, num_frames, pool, workspace.config.train.sigma)
    return recovery_map(workspace.dataset.act_gttubes(pool), model_dets, interp, pool, annotated,
                        convention=convention)

"""Training on a workspace's current sparse labels.

One run per cycle lives in ``WORKSPACE/runs/cycle-NNN/``: ``checkpoint.pt``
(resumable), ``model.pt`` (final weights) and ``metrics.jsonl`` (one line per
step). Resuming is exact: batch contents are a pure function of (seed, step),
dropout is re-seeded from (seed, step, rank) at every step, and the learning
rate is a function of the step, so a run killed after its last checkpoint and
resumed repeats the same computation bit for bit on the CPU.

Runs unchanged under ``torchrun --nproc_per_node N``: each process takes its
share of every global batch and DistributedDataParallel averages gradients.
The step loop, shared with self-supervised pretraining, is ``runner.run_steps``;
this module gives it the detector's loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sparselabel.config import Config, TrainConfig
from sparselabel.errors import SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.models import EncodedClip, detector_from_config
from sparselabel.models.features import FeatureCache
from sparselabel.models.runs import CHECKPOINT, FINAL, METRICS, snapshot_path, snapshot_steps
from sparselabel.train.clips import (
    CachedWindowDataset,
    SparseClipDataset,
    VideoLabels,
    video_labels,
)
from sparselabel.train.losses import actor_clips, consistency_loss, detector_loss, ramp
from sparselabel.train.pretrain import pretrained_encoder
from sparselabel.train.runner import (
    DistEnv,
    Losses,
    StepBatches,
    clip_spec,
    dist_env,
    last_logged_loss,
    learning_rate,
    load_checkpoint,
    make_optimizer,
    pick_device,
    run_steps,
    save_atomic,
    save_checkpoint,
    step_seed,
    truncate_metrics,
)


def training_labels(videos: dict, answers: list, loss: str, sigma: float) -> list[VideoLabels]:
    """Pseudo-labels of every video that has at least one answered frame."""
    by_video: dict[str, list] = {}
    for answer in answers:
        by_video.setdefault(answer.video_id, []).append(answer)
    return [video_labels(videos[v], by_video[v], loss, sigma) for v in sorted(by_video)]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    last_loss: float | None


def train_workspace(workspace, config: Config | None = None, run_name: str | None = None,
                    restart: bool = False, init_from: Path | None = None, cycle: int | None = None) -> TrainResult:
    """Train a detector on ``workspace``'s answers up to ``cycle`` (default: all; resumes its run)."""
    config = config or workspace.config
    answers = [a for a in workspace.ledger.annotations() if cycle is None or a.cycle <= cycle]
    if not answers:
        raise SparseLabelError("no annotated frames yet", workspace.ledger.path)
    cycle = max(a.cycle for a in answers)
    pool = workspace.ledger.videos("pool")
    videos = {vid: workspace.dataset.videos[vid] for vid in pool}
    labels = training_labels(videos, answers, config.train.loss, config.train.sigma)
    run_dir = workspace.root / "runs" / (run_name or f"cycle-{cycle:03d}")
    encoder = None
    if init_from is None and config.pretrain.task != "none":  # init_from holds an encoder already
        encoder = pretrained_encoder(workspace.root, config)
    return train(labels, len(workspace.ledger.classes), config, run_dir, restart=restart, init_from=init_from,
                 init_encoder=encoder, features_root=workspace.root)


def train(labels: list[VideoLabels], num_classes: int, config: Config, run_dir: Path,
          restart: bool = False, init_from: Path | None = None, init_encoder: Path | None = None,
          features_root: Path | None = None) -> TrainResult:
    """The training loop; see the module docstring for what makes it resumable.

    With ``model.freeze_encoder`` only the head trains, on the encoder maps cached under
    ``features_root`` (default: the folder above ``runs/``), computed first if missing.
    """
    cfg, env = config.train, dist_env()
    device = pick_device(cfg.device, env)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(step_seed(config.seed, 0, 0, 1))  # identical initial weights on every rank
    model = detector_from_config(config.model, num_classes).to(device)
    if init_encoder is not None and init_from is None:  # init_from's weights include the encoder
        model.encoder.load_state_dict(torch.load(init_encoder, map_location=device, weights_only=True))
    if init_from is not None:
        model.load_state_dict(torch.load(init_from, map_location=device, weights_only=True))
    if config.model.freeze_encoder:
        model.freeze_encoder()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start = 0 if restart else load_checkpoint(run_dir / CHECKPOINT, model, optimizer, device)
    if start >= cfg.steps:
        if env.is_main and not (run_dir / FINAL).exists():  # killed after the last checkpoint
            save_atomic(model.state_dict(), run_dir / FINAL)
        return TrainResult(run_dir, start, last_logged_loss(run_dir / METRICS))
    if env.is_main:
        truncate_metrics(run_dir / METRICS, start)
    dataset = training_dataset(labels, config, model, device, features_root or run_dir.parent.parent)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(len(dataset), cfg, config.seed, env, start),
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )
    net = DistributedDataParallel(model) if env.world > 1 else model
    if cfg.compile:
        net = torch.compile(net)
    loss = _run_steps(net, model, optimizer, loader, config, env, device, run_dir, start)
    if env.is_main:
        fault_point("train:finished")  # after the last checkpoint, before model.pt
        save_atomic(model.state_dict(), run_dir / FINAL)
    return TrainResult(run_dir, cfg.steps, loss)


def training_dataset(labels: list[VideoLabels], config: Config, model, device, root: Path):
    """Clips drawn around annotated frames, or, with a frozen encoder, its cached windows."""
    cfg = config.train
    if not config.model.freeze_encoder:
        return SparseClipDataset(labels, clip_spec(config), cfg.clips_per_video, config.seed, cfg.augment,
                                 colour=cfg.colour_jitter, balance_anchors=cfg.balance_anchors)
    if cfg.consistency_weight > 0:
        raise SparseLabelError("train.consistency_weight needs clips to flip; it does not work with "
                               "model.freeze_encoder=true (cached maps are of unflipped frames)")
    cache = filled_cache(root, model, config, [lab.video for lab in labels], device)
    return CachedWindowDataset(labels, cache, clip_spec(config, augment=False))


def filled_cache(root: Path, model, config: Config, videos: list, device) -> FeatureCache:
    """The workspace's cache of ``model``'s frozen encoder maps, filled for ``videos``
    (under torchrun each process fills its share; all wait for the whole)."""
    env = dist_env()
    cache = FeatureCache(root, model, config.model.encoder, clip_spec(config, augment=False),
                         config.model.feature_cache_gb)
    cache.ensure(videos, device, config.train.batch_size, env.rank, env.world)
    return cache


def model_inputs(batch: dict) -> torch.Tensor | EncodedClip:
    """A batch's clips, or its cached encoder maps as an ``EncodedClip``."""
    if "deep" not in batch:
        return batch["clip"]
    return EncodedClip(batch["fine"], batch["mid"], batch["deep"], tuple(batch["target"].shape[1:]))


def _run_steps(net, model, optimizer, loader, config: Config, env: DistEnv, device, run_dir: Path, start: int):
    cfg = config.train
    use_bf16 = cfg.bf16 and device.type == "cuda"

    def losses(step: int, batch: dict) -> Losses:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if cfg.channels_last and "clip" in batch:
            batch["clip"] = batch["clip"].contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            output = net(model_inputs(batch), labels=batch["label"])
        clip_weights = actor_clips(batch["target"], batch["weight"]) if cfg.classify_actor_clips else None
        total, parts = detector_loss(output, batch["label"], batch["target"], batch["weight"],
                                     localization_weight=cfg.localization_weight, dice_weight=cfg.dice_weight,
                                     weight_total=global_weight_total(batch["weight"], env),
                                     clip_weights=clip_weights)
        if cfg.consistency_weight > 0:  # off: no extra pass, the same computation as without it
            total, parts = add_consistency(model, output, batch, cfg, step, total, parts, use_bf16)
        return total, parts

    def checkpoint(steps_done: int) -> None:
        save_checkpoint(run_dir / CHECKPOINT, model, optimizer, steps_done)
        fault_point("train:checkpointed")

    # A snapshot is kept before its step's checkpoint (see save_snapshot_if_due).
    return run_steps(net, optimizer, loader, start=start, steps=cfg.steps, losses=losses,
                     lr=lambda step: learning_rate(cfg, step), seed=(config.seed, 2), env=env, run_dir=run_dir,
                     checkpoint=checkpoint, checkpoint_every=cfg.checkpoint_every, batch_size=cfg.batch_size,
                     desc="train", grad_clip=cfg.grad_clip, after_step=lambda steps_done: save_snapshot_if_due(run_dir, model, config,
                                                                                      steps_done, env))


def add_consistency(model, output, batch: dict, cfg: TrainConfig, step: int, total: torch.Tensor,
                    parts: dict, use_bf16: bool) -> tuple[torch.Tensor, dict]:
    """``total`` + w x ramp(step) x the consistency loss on the batch's unannotated frames.

    The flipped clip goes through the unwrapped model under ``no_grad`` (its output is a
    stop-gradient target; see ``consistency_loss``), in training mode, so its dropout
    masks differ too (Pi-model noise), drawn from the step's seeded stream: resuming
    stays exact. Its fg maps are flipped back to line up with the clip's.
    """
    clip = batch["clip"]
    with torch.no_grad(), torch.autocast(clip.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        flipped = model(clip.flip(-1), labels=batch["label"]).fg_logits.flip(-1)
    cons, cons_parts = consistency_loss(output.fg_logits, batch["annotated"], flipped)
    weight = cfg.consistency_weight * ramp(step, cfg.steps, cfg.consistency_rampup)
    logged = {**parts, "consistency": cons, **{f"consistency_{k}": v for k, v in cons_parts.items()}}
    return total + weight * cons, logged


def global_weight_total(weights: torch.Tensor, env: DistEnv) -> torch.Tensor | None:
    """The frame-weight sum of the whole global batch, divided by the processes' number.

    DDP averages gradients over processes; normalising each process's loss by this
    makes the average equal one process's loss over the whole batch.
    """
    if env.world == 1:
        return None
    total = weights.sum().float()
    dist.all_reduce(total)
    return total / env.world


def save_snapshot_if_due(run_dir: Path, model: torch.nn.Module, config: Config, step: int, env: DistEnv) -> None:
    """Keep the weights after ``step`` steps when ensemble.kind=snapshots wants them as a member.

    Written then renamed, and before that step's checkpoint: a checkpoint at step s means
    every snapshot up to s is on disk, so a resumed run only has the later ones to write.
    """
    ens = config.ensemble
    if not env.is_main or ens.kind != "snapshots" or step not in snapshot_steps(config.train.steps, ens.members):
        return
    save_atomic(model.state_dict(), snapshot_path(run_dir, step))

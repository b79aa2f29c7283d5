"""Training on a workspace's current sparse labels.

One run per cycle lives in ``WORKSPACE/runs/cycle-NNN/``: ``checkpoint.pt``
(resumable), ``model.pt`` (final weights) and ``metrics.jsonl`` (one line per
step). Resuming is exact: batch contents are a pure function of (seed, step),
dropout is re-seeded from (seed, step, rank) at every step, and the learning
rate is a function of the step, so a run killed after its last checkpoint and
resumed repeats the same computation bit for bit on the CPU.

Runs unchanged under ``torchrun --nproc_per_node N``: each process takes its
share of every global batch and DistributedDataParallel averages gradients.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sparselabel.atomic import replaced
from sparselabel.config import Config, TrainConfig
from sparselabel.errors import SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.models import EncodedClip, detector_from_config
from sparselabel.models.features import FeatureCache
from sparselabel.models.runs import CHECKPOINT, FINAL, METRICS, snapshot_path, snapshot_steps
from sparselabel.train.clips import (
    CachedWindowDataset,
    ClipSpec,
    SparseClipDataset,
    VideoLabels,
    video_labels,
)
from sparselabel.train.losses import actor_clips, consistency_loss, detector_loss, ramp


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Join the process group when started by torchrun (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistEnv()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistEnv(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, env: DistEnv) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device(name)


def clip_spec(config: Config, augment: bool | None = None) -> ClipSpec:
    m = config.model
    return ClipSpec(m.clip_length, m.clip_stride, tuple(m.input_size),
                    flip=config.train.augment if augment is None else augment)


def step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 10%: a function of the step alone."""
    warmup = max(1, cfg.steps // 20)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class StepBatches:
    """Item keys (epoch, index) of this process's share of every global batch from ``start``."""

    def __init__(self, num_items: int, cfg: TrainConfig, seed: int, env: DistEnv, start: int):
        if cfg.batch_size % env.world:
            raise SparseLabelError(f"train.batch_size={cfg.batch_size} does not split over {env.world} processes")
        self.num_items, self.cfg, self.seed, self.env, self.start = num_items, cfg, seed, env, start

    def __len__(self) -> int:
        return self.cfg.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.cfg.steps):
            yield self.keys(step)

    def keys(self, step: int) -> list[tuple[int, int]]:
        size = self.cfg.batch_size
        first = step * size  # position in the endless sequence of shuffled passes over the items
        keys = []
        for pos in range(first, first + size):
            epoch, offset = divmod(pos, self.num_items)
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
            keys.append((epoch, int(order[offset])))
        return keys[self.env.rank :: self.env.world]


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
        from sparselabel.train.pretrain import pretrained_encoder  # pretrain imports this module

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
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
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
                                 colour=cfg.colour_jitter)
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
    bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", disable=None if env.is_main else True)
    net.train()
    loss_value, tick = None, time.perf_counter()
    with (run_dir / METRICS).open("a") as log:
        for step, batch in enumerate(loader, start):
            torch.manual_seed(step_seed(config.seed, step, env.rank, 2))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if cfg.channels_last and "clip" in batch:
                batch["clip"] = batch["clip"].contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                output = net(model_inputs(batch), labels=batch["label"])
            clip_weights = actor_clips(batch["target"], batch["weight"]) if cfg.classify_actor_clips else None
            total, parts = detector_loss(output, batch["label"], batch["target"], batch["weight"],
                                         localization_weight=cfg.localization_weight,
                                         weight_total=global_weight_total(batch["weight"], env),
                                         clip_weights=clip_weights)
            if cfg.consistency_weight > 0:  # off: no extra pass, the same computation as without it
                total, parts = add_consistency(model, output, batch, cfg, step, total, parts, use_bf16)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            now = time.perf_counter()
            record = {"step": step + 1, "lr": optimizer.param_groups[0]["lr"],
                      "clips_per_s": cfg.batch_size / max(now - tick, 1e-9),
                      **{k: mean_over_ranks(v.detach(), env) for k, v in {"loss": total, **parts}.items()}}
            tick, loss_value = now, record["loss"]
            if env.is_main:
                write_record(log, record)
                bar.set_postfix(loss=f"{loss_value:.4f}", clips_s=f"{record['clips_per_s']:.1f}")
                bar.update()
            save_snapshot_if_due(run_dir, model, config, step + 1, env)  # before the step's checkpoint
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                if env.is_main:
                    log.flush()
                    save_checkpoint(run_dir / CHECKPOINT, model, optimizer, step + 1)
                    fault_point("train:checkpointed")
                if env.world > 1:
                    dist.barrier()
    bar.close()
    return loss_value


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


def mean_over_ranks(value: torch.Tensor, env: DistEnv) -> float:
    value = value.float()
    if env.world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= env.world
    return float(value)


def write_record(log, record: dict) -> None:
    """One metrics line. A kill can still tear it (the fault point below does, on purpose):
    readers skip a last line that is not whole (``logged_records``)."""
    line = json.dumps(record) + "\n"
    log.write(line[: len(line) // 2])
    log.flush()
    fault_point("train:metrics-half-written")
    log.write(line[len(line) // 2 :])


def save_atomic(state: object, path: Path) -> None:
    """``torch.save`` written then renamed: a kill mid-save leaves the previous file intact."""
    with replaced(path) as handle:
        torch.save(state, handle)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, path)


def save_snapshot_if_due(run_dir: Path, model: torch.nn.Module, config: Config, step: int, env: DistEnv) -> None:
    """Keep the weights after ``step`` steps when ensemble.kind=snapshots wants them as a member.

    Written then renamed, and before that step's checkpoint: a checkpoint at step s means
    every snapshot up to s is on disk, so a resumed run only has the later ones to write.
    """
    ens = config.ensemble
    if not env.is_main or ens.kind != "snapshots" or step not in snapshot_steps(config.train.steps, ens.members):
        return
    save_atomic(model.state_dict(), snapshot_path(run_dir, step))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device) -> int:
    """Restore a run's state; returns the step to continue from (0 without a checkpoint)."""
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, EOFError) as exc:
        raise SparseLabelError(f"cannot resume from checkpoint ({exc}); use --restart", path) from exc
    return int(state["step"])


def logged_records(path: Path) -> list[dict]:
    """The metrics log's records; a last line torn by a kill (no newline) is not one."""
    if not path.exists():
        return []
    text = path.read_text()
    whole = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines() if line]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (and a torn last line): a resumed run writes them again."""
    if path.exists():
        path.write_text("".join(json.dumps(r) + "\n" for r in logged_records(path) if r["step"] <= step))


def last_logged_loss(path: Path) -> float | None:
    records = logged_records(path)
    return records[-1]["loss"] if records else None



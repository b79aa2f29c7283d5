"""Temporal self-supervised pretraining of the detector's encoder on the pool's frames.

No label is read: the targets come from how a clip is cut.

* ``order``: frame-order verification. A clip of ``model.clip_length`` frames
  ``model.clip_stride`` apart; with probability 0.5 it is left in order (label 0),
  otherwise its frames are reversed or put in a random other order (label 1).
* ``speed``: playback-speed prediction. A clip sampled at stride s x
  ``model.clip_stride``, s in ``SPEED_FACTORS``; the label is the index of s.

The network is the SAME encoder the detector uses (``detector_from_config(...).encoder``,
built with the training run's seed, so it starts from the weights training would
start from) followed by a small head: global average pool of the encoder's deepest
map + one linear layer. Cross-entropy, AdamW, ``learning_rate`` (warm-up + cosine)
with ``pretrain.lr`` and ``pretrain.steps``.

One run lives in ``WORKSPACE/runs/pretrain-<task>/``: ``encoder.pt`` (the encoder's
state dict, what ``train_workspace`` loads when ``pretrain.task`` is set),
``metrics.jsonl`` (loss and accuracy per step), ``checkpoint.pt`` and
``settings.json``. As in ``train.trainer`` the batches are a pure function of
(seed, step) and every step re-seeds torch, so a killed run resumes from its last
checkpoint to the same weights, and a finished one (``encoder.pt`` exists) is
skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from sparselabel.atomic import replaced
from sparselabel.config import Config
from sparselabel.data.dataset import Video
from sparselabel.data.video import DEFAULT_CACHE, FrameCache
from sparselabel.errors import SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.models import detector_from_config
from sparselabel.models.detector import freeze_batchnorm
from sparselabel.models.runs import CHECKPOINT, METRICS
from sparselabel.train.clips import (
    ClipSpec,
    clip_frames,
    clip_tensor,
    random_crop_flip,
    resize_clip,
)
from sparselabel.train.runner import (
    DistEnv,
    Losses,
    StepBatches,
    clip_spec,
    dist_env,
    learning_rate,
    load_checkpoint,
    logged_records,
    make_optimizer,
    pick_device,
    run_steps,
    save_atomic,
    save_checkpoint,
    step_seed,
    truncate_metrics,
)

TASKS = ("order", "speed")
SPEED_FACTORS = (1, 2, 4, 8)  # playback speeds relative to model.clip_stride
ENCODER, SETTINGS = "encoder.pt", "settings.json"


def pretrain_dir(root: Path, task: str) -> Path:
    return Path(root) / "runs" / f"pretrain-{task}"


def num_task_classes(task: str) -> int:
    if task == "order":
        return 2
    if task == "speed":
        return len(SPEED_FACTORS)
    raise SparseLabelError(f"unknown pretraining task {task!r}; choose one of {', '.join(TASKS)}")


def pretrained_encoder(root: Path, config: Config) -> Path:
    """The encoder file that ``config.pretrain.task`` asks training to start from; it must exist."""
    task = config.pretrain.task
    num_task_classes(task)  # an unknown task fails here, by name
    path = pretrain_dir(root, task) / ENCODER
    if not path.exists():
        raise SparseLabelError(f"pretrain.task={task} but the encoder is not pretrained yet; run "
                               f"`sparselabel pretrain WORKSPACE --task {task}` first (or set pretrain.task=none)",
                               path)
    recorded = path.parent / SETTINGS
    made_with = json.loads(recorded.read_text()).get("encoder") if recorded.exists() else config.model.encoder
    if made_with != config.model.encoder:  # its weights would not fit this detector's encoder
        raise SparseLabelError(f"the pretrained encoder is a {made_with}, model.encoder is {config.model.encoder}; "
                               "delete the folder and pretrain again", path)
    return path


# --------------------------------------------------------------------------------------
# Clips and their self-supervised labels
# --------------------------------------------------------------------------------------


def shuffled_order(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """``frames`` reversed (half the time) or randomly permuted, never left as they were.

    Returns None when no reordering changes the sequence (all frames the same, as in a
    one-frame video), so such a clip cannot be labelled "shuffled" by mistake.
    """
    if np.unique(frames).size < 2:
        return None
    if rng.random() < 0.5:
        reordered = frames[::-1]
        if not np.array_equal(reordered, frames):
            return reordered.copy()
    while True:  # a permutation that changes the sequence exists, and most do
        reordered = frames[rng.permutation(frames.size)]
        if not np.array_equal(reordered, frames):
            return reordered


def order_sample(num_frames: int, spec: ClipSpec, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Frame indices of an ``order`` clip and its label: 0 in order, 1 shuffled or reversed."""
    frames = clip_frames(_random_start(num_frames, spec.span, rng), spec, num_frames)
    if rng.random() < 0.5:
        return frames, 0
    reordered = shuffled_order(frames, rng)
    return (frames, 0) if reordered is None else (reordered, 1)


def speed_sample(num_frames: int, spec: ClipSpec, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Frame indices of a ``speed`` clip and its label: the index k of its stride factor.

    The stride is ``SPEED_FACTORS[k] * spec.stride``. A video shorter than the clip's span
    repeats its last frame (as every clip in this package does).
    """
    label = int(rng.integers(len(SPEED_FACTORS)))
    fast = ClipSpec(spec.length, spec.stride * SPEED_FACTORS[label], spec.size)
    return clip_frames(_random_start(num_frames, fast.span, rng), fast, num_frames), label


def _random_start(num_frames: int, span: int, rng: np.random.Generator) -> int:
    return int(rng.integers(max(1, num_frames - span + 1)))


SAMPLERS = {"order": order_sample, "speed": speed_sample}


class PretrainClips(torch.utils.data.Dataset):
    """Clips of unlabeled videos with their ``task`` labels; item (epoch, i) from ``rng([seed, epoch, i])``.

    Item ``i`` is a clip of video ``i % len(videos)``. It holds ``clip`` (3, T, H, W),
    ``label`` and ``frames`` (the frame indices, in the order shown to the model).
    """

    def __init__(self, videos: list[Video], task: str, spec: ClipSpec, clips_per_video: int = 1,
                 seed: int = 0, augment: bool = True, cache: FrameCache = DEFAULT_CACHE):
        if task not in SAMPLERS:
            raise SparseLabelError(f"unknown pretraining task {task!r}; choose one of {', '.join(TASKS)}")
        if not videos:
            raise SparseLabelError("no videos to pretrain on")
        self.videos, self.sample = list(videos), SAMPLERS[task]
        self.spec, self.clips_per_video, self.seed, self.augment, self.cache = (
            spec, clips_per_video, seed, augment, cache)

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Tensor]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        video = self.videos[index % len(self.videos)]
        frames, label = self.sample(video.num_frames, self.spec, rng)
        crop, flip = random_crop_flip(rng, self.spec, video, self.augment)
        clip = clip_tensor(video.frames(frames, cache=self.cache))
        return {"clip": resize_clip(clip, crop, flip, self.spec.size),
                "label": torch.tensor(label, dtype=torch.long),
                "frames": torch.from_numpy(np.asarray(frames, dtype=np.int64))}


# --------------------------------------------------------------------------------------
# The network: the detector's encoder + pool + linear
# --------------------------------------------------------------------------------------


class PretrainNet(nn.Module):
    """The detector's encoder, global average pooling of its deepest map, and a linear layer."""

    def __init__(self, encoder: nn.Module, endpoint: str, channels: int, num_classes: int,
                 freeze_bn: bool = False):
        super().__init__()
        self.encoder, self.endpoint, self.freeze_bn = encoder, endpoint, freeze_bn
        self.head = nn.Linear(channels, num_classes)

    def forward(self, clip: Tensor) -> Tensor:
        deep = self.encoder(clip, endpoints=(self.endpoint,))[self.endpoint]
        return self.head(deep.float().mean(dim=(2, 3, 4)))

    def train(self, mode: bool = True) -> PretrainNet:
        """As ``Detector.train``: with ``freeze_bn`` a pretrained encoder's BatchNorm stays in eval."""
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.encoder)
        return self


def pretrain_net(config: Config, task: str) -> PretrainNet:
    """The network, its encoder built and initialised exactly as ``train`` builds the detector's."""
    torch.manual_seed(step_seed(config.seed, 0, 0, 1))  # the detector's initial weights in ``train``
    # As configured (widths, time strides, motion input), so the detector can load its weights.
    detector = detector_from_config(config.model, num_classes=2)
    deepest = detector.endpoints[-1]
    return PretrainNet(detector.encoder, deepest, detector.encoder.out_channels[deepest], num_task_classes(task),
                       freeze_bn=detector.freeze_bn)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    run_dir: Path
    encoder: Path
    steps: int
    loss: float | None
    accuracy: float | None
    skipped: bool  # the encoder was already there: nothing was run


def settings(config: Config, task: str) -> dict:
    """What the encoder file depends on; a run is only resumed or reused with the same."""
    m, p = config.model, config.pretrain
    return {"task": task, "seed": config.seed, "steps": p.steps, "batch_size": p.batch_size, "lr": p.lr,
            "encoder": m.encoder, "pretrained": m.pretrained, "clip_length": m.clip_length,
            "clip_stride": m.clip_stride, "input_size": list(m.input_size), "augment": config.train.augment,
            "clips_per_video": config.train.clips_per_video, "weight_decay": config.train.weight_decay,
            "grad_clip": config.train.grad_clip, "widths": list(m.widths), "time_strides": list(m.time_strides),
            "motion_input": m.motion_input}


def pretrain_workspace(workspace, config: Config | None = None, task: str | None = None) -> PretrainResult:
    """Pretrain the encoder of ``workspace``'s detector on its pool videos (see the module docstring)."""
    config = config or workspace.config
    task = task or config.pretrain.task
    num_task_classes(task)
    videos = [workspace.dataset.videos[v] for v in sorted(workspace.ledger.videos("pool"))]
    return pretrain(videos, config, task, pretrain_dir(workspace.root, task))


def pretrain(videos: list[Video], config: Config, task: str, run_dir: Path) -> PretrainResult:
    """Train ``PretrainNet`` on ``task`` clips of ``videos``; write ``encoder.pt`` into ``run_dir``."""
    env = dist_env()
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(run_dir, settings(config, task), env)
    if (run_dir / ENCODER).exists():
        return PretrainResult(run_dir, run_dir / ENCODER, config.pretrain.steps, *last_logged(run_dir), True)
    cfg, device = config.pretrain, pick_device(config.train.device, env)
    net = pretrain_net(config, task).to(device)
    optimizer = make_optimizer(net, cfg.lr, config.train.weight_decay)
    start = load_checkpoint(run_dir / CHECKPOINT, net, optimizer, device)
    if env.is_main:
        truncate_metrics(run_dir / METRICS, start)
    dataset = PretrainClips(videos, task, clip_spec(config), config.train.clips_per_video, config.seed,
                            config.train.augment)
    # StepBatches and learning_rate read only steps, batch_size and lr, which PretrainConfig has.
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(len(dataset), cfg, config.seed, env, start),  # type: ignore[arg-type]
        num_workers=config.train.num_workers, pin_memory=device.type == "cuda")
    wrapped = DistributedDataParallel(net) if env.world > 1 else net
    _run_steps(wrapped, net, optimizer, loader, config, env, device, run_dir, start)
    if env.is_main:
        save_atomic(net.encoder.state_dict(), run_dir / ENCODER)  # its existence means "done": never a half file
    if env.world > 1:
        torch.distributed.barrier()
    return PretrainResult(run_dir, run_dir / ENCODER, cfg.steps, *last_logged(run_dir), False)


def _run_steps(wrapped: nn.Module, net: PretrainNet, optimizer, loader, config: Config, env: DistEnv,
               device: torch.device, run_dir: Path, start: int) -> None:
    cfg = config.pretrain
    use_bf16 = config.train.bf16 and device.type == "cuda"

    def losses(step: int, batch: dict) -> Losses:
        clip, label = batch["clip"].to(device, non_blocking=True), batch["label"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = wrapped(clip)
        accuracy = (logits.detach().argmax(dim=1) == label).float().mean()
        return F.cross_entropy(logits.float(), label), {"accuracy": accuracy}

    def checkpoint(steps_done: int) -> None:
        save_checkpoint(run_dir / CHECKPOINT, net, optimizer, steps_done)
        fault_point("pretrain:checkpointed")

    run_steps(wrapped, optimizer, loader, start=start, steps=cfg.steps, losses=losses,
              lr=lambda step: learning_rate(cfg, step),  # type: ignore[arg-type]
              seed=(config.seed, 3), env=env, run_dir=run_dir, checkpoint=checkpoint,
              checkpoint_every=config.train.checkpoint_every, batch_size=cfg.batch_size, desc="pretrain",
              grad_clip=config.train.grad_clip,
              shown=("loss", "accuracy"))


def _check_settings(run_dir: Path, wanted: dict, env: DistEnv) -> None:
    """Record a new run's settings; refuse to resume or reuse a run made with other settings."""
    path = run_dir / SETTINGS
    if env.is_main and not path.exists():
        with replaced(path) as handle:  # other ranks never read a half-written file
            handle.write((json.dumps(wanted, indent=2) + "\n").encode())
    if env.world > 1:
        torch.distributed.barrier()
    found = json.loads(path.read_text())
    if found != wanted:
        changed = sorted(k for k in wanted.keys() | found.keys() if found.get(k) != wanted.get(k))
        raise SparseLabelError(f"this pretraining run was made with other settings ({', '.join(changed)}); "
                               "delete the folder to pretrain again", run_dir)


def last_logged(run_dir: Path) -> tuple[float | None, float | None]:
    """(loss, accuracy) of the last logged step, or (None, None)."""
    records = logged_records(run_dir / METRICS)
    return (records[-1]["loss"], records[-1]["accuracy"]) if records else (None, None)

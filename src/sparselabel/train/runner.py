"""What training and pretraining share: processes, seeds, the learning-rate schedule, batches
by step, checkpoints, the metrics log, and the step loop itself (``run_steps``).

Resuming is exact because everything a step does is a function of (seed, step, rank): the
batch (``StepBatches``), the dropout masks (re-seeded by ``step_seed`` every step) and the
learning rate (``learning_rate``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from sparselabel.atomic import replaced
from sparselabel.config import Config, TrainConfig
from sparselabel.errors import SparseLabelError
from sparselabel.faults import fault_point
from sparselabel.models.runs import METRICS
from sparselabel.train.clips import ClipSpec

Losses = tuple[torch.Tensor, dict[str, torch.Tensor]]  # the loss to minimise, and parts to log


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


def make_optimizer(module: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``module``'s trainable parameters, decaying only weight matrices and kernels.

    Biases, norm scales and the capsules' per-class betas (every parameter of fewer than two
    dimensions) are offsets and scales, not directions: decaying them only pulls them to 0
    (as nanoGPT groups them).
    """
    trainable = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def run_steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[dict], *,
              start: int, steps: int, losses: Callable[[int, dict], Losses], lr: Callable[[int], float],
              seed: tuple[int, int], env: DistEnv, run_dir: Path, checkpoint: Callable[[int], None],
              checkpoint_every: int, batch_size: int, desc: str, shown: tuple[str, ...] = ("loss",),
              after_step: Callable[[int], None] | None = None, grad_clip: float = 0.0) -> float | None:
    """The optimiser loop of training and pretraining; returns the last step's loss.

    Each step re-seeds dropout from (``seed``, step, rank) (``seed`` = (config seed, stream)),
    sets the step's learning rate, minimises ``losses(step, batch)`` (gradients clipped to a
    global norm of ``grad_clip`` unless it is 0), appends a record to
    ``metrics.jsonl`` (the loss and its parts averaged over processes, clips/s), then calls
    ``after_step`` and, every ``checkpoint_every`` steps and at the end, ``checkpoint``
    (rank 0) with the steps done.
    """
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=None if env.is_main else True)
    net.train()
    loss_value, tick = None, time.perf_counter()
    with (run_dir / METRICS).open("a") as log:
        for step, batch in enumerate(batches, start):
            torch.manual_seed(step_seed(seed[0], step, env.rank, seed[1]))
            for group in optimizer.param_groups:
                group["lr"] = lr(step)
            total, parts = losses(step, batch)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if grad_clip > 0:  # one bad batch (a frame of a few pixels, a huge loss) cannot undo the run
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            now = time.perf_counter()
            record = {"step": step + 1, "lr": optimizer.param_groups[0]["lr"],
                      "clips_per_s": batch_size / max(now - tick, 1e-9),
                      **{k: mean_over_ranks(v.detach(), env) for k, v in {"loss": total, **parts}.items()}}
            tick, loss_value = now, record["loss"]
            if env.is_main:
                write_record(log, record)
                bar.set_postfix({k: f"{record[k]:.4f}" for k in shown} | {"clips_s": f"{record['clips_per_s']:.1f}"})
                bar.update()
            if after_step is not None:
                after_step(step + 1)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                if env.is_main:
                    log.flush()
                    checkpoint(step + 1)
                if env.world > 1:
                    dist.barrier()
    bar.close()
    return loss_value


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


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device) -> int:
    """Restore a run's state; returns the step to continue from (0 without a checkpoint)."""
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, EOFError, ValueError) as exc:
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



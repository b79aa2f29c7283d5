"""What a training run leaves in its folder (``runs/cycle-NNN/``), and loading it back.

Below training and scoring alike: the trainer writes these files, prediction and
scoring (and the ensembles) read them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sparselabel.config import Config
from sparselabel.errors import SparseLabelError
from sparselabel.models import detector_from_config

CHECKPOINT, FINAL, METRICS = "checkpoint.pt", "model.pt", "metrics.jsonl"


def snapshot_steps(steps: int, members: int) -> list[int]:
    """Steps after which the weights become snapshot-ensemble members (none for members < 2).

    ``members`` evenly spaced steps of the run's last half, the last one the final step
    (300 steps, 3 members: 200, 250, 300): earlier weights are still poor models, and
    spacing them out makes the members differ as much as one run allows.
    """
    if members < 2:
        return []
    found = [steps - (members - 1 - j) * steps // (2 * members) for j in range(members)]
    if len(set(found)) < members:
        raise SparseLabelError(f"train.steps={steps} is too few for ensemble.members={members} snapshots "
                               f"(need at least {2 * members} steps)")
    return found


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"snapshot-{step}.pt"


def load_trained(run_dir: Path, config: Config, num_classes: int, device: torch.device,
                 weights: str = FINAL) -> torch.nn.Module:
    """The final model of a training run, in eval mode (no pretrained download: weights come from the run).

    ``weights`` names another state dict of the run instead (an ensemble snapshot).
    """
    path = run_dir / weights
    if not path.exists():
        raise SparseLabelError("no trained model here; run `sparselabel train` first", path)
    model = detector_from_config(config.model, num_classes, pretrained=False)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    if config.model.freeze_encoder:
        model.freeze_encoder()
    if config.train.channels_last:  # the layout it trained in: faster inference too (benchmarks/train_throughput.py)
        model = model.to(memory_format=torch.channels_last_3d)
    return model.to(device).eval()

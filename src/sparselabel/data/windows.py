"""How clips are cut from a video: the clip spec and the inference windows.

A clip samples ``length`` frames ``stride`` apart. To give every frame exactly
one prediction, the frames of a video are split into ``stride`` phases
(o, o + stride, o + 2 stride, ...) and each phase into consecutive windows of
``length`` frames (the last one padded by repeating its final frame). The same
windows serve inference, MC-dropout scoring and the feature cache of a frozen
encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sparselabel.data.dataset import Video


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut and shaped: ``length`` frames ``stride`` apart, resized to ``size``."""

    length: int = 8
    stride: int = 2
    size: tuple[int, int] = (112, 112)  # (H, W) fed to the model
    min_crop: float = 0.8  # random crop keeps at least this fraction of each side
    flip: bool = True

    @property
    def span(self) -> int:
        return (self.length - 1) * self.stride + 1


def video_windows(num_frames: int, spec: ClipSpec) -> Iterator[np.ndarray]:
    """Frame indices of windows that together predict every frame exactly once (see module doc)."""
    for phase in range(min(spec.stride, num_frames)):
        frames = np.arange(phase, num_frames, spec.stride)
        for start in range(0, len(frames), spec.length):
            window = frames[start : start + spec.length]
            yield np.concatenate([window, np.repeat(window[-1:], spec.length - len(window))])


def window_batches(video: Video, spec: ClipSpec, batch_size: int) -> Iterator[tuple[torch.Tensor, list[np.ndarray]]]:
    """Batches of resized clips (B, 3, T, h, w) in [-1, 1], with their frame indices."""
    windows = list(video_windows(video.num_frames, spec))
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        # Decoded per batch (through the frame cache), so memory holds a batch, not the video.
        frames = video.frames(np.concatenate(chunk))
        clips = torch.from_numpy(frames.reshape(len(chunk), spec.length, *frames.shape[1:])).permute(0, 4, 1, 2, 3)
        clips = clips.float()
        clips = clips / 127.5 - 1.0
        b, c, t, h, w = clips.shape
        flat = clips.transpose(1, 2).reshape(b * t, c, h, w)
        flat = F.interpolate(flat, size=spec.size, mode="bilinear", align_corners=False)
        yield flat.reshape(b, t, c, *spec.size).transpose(1, 2).contiguous(), chunk



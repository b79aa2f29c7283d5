"""Running a trained detector over whole videos.

A clip samples ``length`` frames ``stride`` apart. To give every frame exactly
one prediction, the frames of a video are split into ``stride`` phases
(o, o + stride, o + 2 stride, ...) and each phase into consecutive windows of
``length`` frames (the last one padded by repeating its final frame). The same
windows serve inference and MC-dropout scoring.

Per video the result is the foreground probability of every frame at the
model's input resolution (quantised to uint8 on disk: 1/255 is far below any
threshold we use) and the class scores averaged over windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import torch

from sparselabel.atomic import replaced
from sparselabel.data.dataset import Video
from sparselabel.data.windows import ClipSpec, window_batches


@dataclass
class VideoPrediction:
    video_id: str
    fg: np.ndarray  # float32 (T, h, w) foreground probability at model resolution
    class_scores: np.ndarray  # float32 (C,)
    size: tuple[int, int]  # the video's (H, W): boxes are scaled back to it

    def save(self, folder: Path) -> Path:
        path = prediction_path(folder, self.video_id)
        fg = np.round(np.clip(self.fg, 0, 1) * 255).astype(np.uint8)
        with replaced(path) as handle:  # a killed run never leaves a half file under its final name
            np.savez_compressed(handle, fg=fg, class_scores=self.class_scores, size=np.array(self.size))
        return path

    def as_input(self) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(fg, class scores, video size): what ``act_detections`` takes per video."""
        return self.fg, self.class_scores, self.size

    @classmethod
    def load(cls, folder: Path, video_id: str) -> VideoPrediction:
        with np.load(prediction_path(folder, video_id), allow_pickle=False) as npz:
            return cls(video_id, npz["fg"].astype(np.float32) / 255, npz["class_scores"], tuple(npz["size"]))


def prediction_path(folder: Path, video_id: str) -> Path:
    """One file per video; ids such as 'Basketball/v_x' are escaped, never used as paths."""
    return Path(folder) / f"{quote(video_id, safe='')}.npz"


def input_batches(video: Video, spec: ClipSpec, device: torch.device, batch_size: int, cache=None):
    """(clips on ``device``, or their cached ``EncodedClip``; window frame indices) per batch."""
    if cache is not None:
        yield from cache.batches(video, device, batch_size)
        return
    for clips, windows in window_batches(video, spec, batch_size):
        yield clips.to(device), windows


@torch.no_grad()
def predict_video(model: torch.nn.Module, video: Video, spec: ClipSpec, device: torch.device,
                  batch_size: int = 8, bf16: bool = False, cache=None, label: int | None = None,
                  actor_weighted: bool = False) -> VideoPrediction:
    """Foreground probabilities of every frame and mean class scores (model in eval mode).

    ``cache``: a ``FeatureCache`` of the model's frozen encoder, read instead of encoding.
    ``label``: decode the foreground with this class instead of the predicted one (a pool
    video's class is known); the class scores stay the model's. ``actor_weighted``: average
    the windows' class scores weighted by their peak foreground probability.
    """
    fg = np.zeros((video.num_frames, *spec.size), dtype=np.float32)
    scores, count = None, 0
    for clips, windows in input_batches(video, spec, device, batch_size, cache):
        labels = None if label is None else torch.full((len(windows),), label, dtype=torch.long, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            out = model(clips, labels=labels)
        probs = torch.sigmoid(out.fg_logits.float()).cpu().numpy()
        for window, prob in zip(windows, probs, strict=True):
            real = np.r_[True, window[1:] != window[:-1]]  # drop the padding repeats
            fg[window[real]] = prob[real]
        # A window's say in the video's class: 1, or with ``actor_weighted`` its peak foreground
        # probability, so windows where nobody is seen (their scores are guesses) barely count.
        weight = (torch.sigmoid(out.fg_logits.float()).flatten(1).amax(1) if actor_weighted
                  else torch.ones(len(windows), device=out.fg_logits.device))
        batch_scores = (out.class_scores.float() * weight[:, None]).sum(0).cpu().numpy()
        scores = batch_scores if scores is None else scores + batch_scores
        count += float(weight.sum())
    return VideoPrediction(video.id, fg, (scores / max(count, 1e-6)).astype(np.float32), (video.height, video.width))

"""Frame uncertainty by MC-dropout (paper Eq. 1, DESIGN section 4).

For every frame i of a video, T stochastic passes (dropout on, everything else
in eval mode) give a foreground probability p(h, t) per pixel h at the model's
input resolution. Per frame we keep three numbers:

    U_i      mean over kept pixels of (1/T) sum_t -log p(h, t)        (Eq. 1)
             kept: mean_t p(h, t) >= 1 - tau (non-activity suppression,
             tau = 0.9: confidently-background pixels are dropped); U_i = 0
             when no pixel is kept
    entropy  mean over ALL pixels of the binary entropy of mean_t p(h, t)
             (Aghdam et al. score images by the mean of the pixel-level
             entropies; no suppression, so the baseline stays theirs)
    mean_fg  mean over all pixels of mean_t p(h, t)

Fast path: the encoder (everything before the first dropout) runs once per
window; only ``decode_head`` runs T times, batched as ``EncodedClip.repeat``
copies (``pass_chunk`` passes per call, falling back to smaller chunks when
CUDA runs out of memory). Given the same dropout masks this equals T full
forward passes (tests/scoring). The RNG is forked and seeded per video, so a
video's scores do not depend on which process or in which order it is scored.

Per video we also keep one feature vector for the hybrid (video + frame) strategy:
the encoder's final (deepest) feature map of the deterministic ``encode``, averaged
over space and time per window, then over the video's windows. It comes from the
one ``encode`` per window that the fast path runs anyway, so it costs no extra pass.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sparselabel.atomic import replaced
from sparselabel.data.dataset import Video
from sparselabel.data.windows import ClipSpec
from sparselabel.scoring.predict import input_batches, prediction_path

if TYPE_CHECKING:
    from sparselabel.models.detector import EncodedClip

STAT_NAMES = ("uncertainty", "entropy", "mean_fg")


@dataclass
class VideoScores:
    """Per-frame scores of one video (float64 arrays of length num_frames).

    ``features`` is the per-video feature vector (float32, 1-D; see the module doc), or
    None for files written before features were stored, which still load.
    """

    video_id: str
    uncertainty: np.ndarray
    entropy: np.ndarray
    mean_fg: np.ndarray
    passes: int
    tau: float
    features: np.ndarray | None = None
    # What U came from: "mc-dropout" (passes = T) or "ensemble" (passes = members; see
    # scoring.ensemble). Stored, so files of one never pass for files of the other.
    method: str = "mc-dropout"

    def save(self, folder: Path) -> Path:
        """Write-then-rename, so an interrupted run never leaves a half file that looks done."""
        path = prediction_path(folder, self.video_id)
        extra = {} if self.features is None else {"features": np.asarray(self.features, dtype=np.float32)}
        with replaced(path) as handle:
            np.savez(handle, uncertainty=self.uncertainty, entropy=self.entropy, mean_fg=self.mean_fg,
                     passes=np.int64(self.passes), tau=np.float64(self.tau), method=np.str_(self.method),
                     **extra)
        return path

    @classmethod
    def load(cls, folder: Path, video_id: str) -> VideoScores:
        with np.load(prediction_path(folder, video_id), allow_pickle=False) as npz:
            features = npz["features"] if "features" in npz.files else None  # older files: none
            method = str(npz["method"]) if "method" in npz.files else "mc-dropout"  # older files: MC
            return cls(video_id, npz["uncertainty"], npz["entropy"], npz["mean_fg"],
                       int(npz["passes"]), float(npz["tau"]), features, method)


def frame_stats(logits: Tensor, tau: float = 0.9) -> tuple[Tensor, Tensor, Tensor]:
    """(U, entropy, mean_fg) per frame from foreground logits (T passes, N frames, h, w).

    -log p is computed as softplus(-logit): exact where p underflows to 0 in float32.
    """
    logits = logits.float()
    probs = torch.sigmoid(logits)
    mean_p = probs.mean(0)  # (N, h, w)
    nll = F.softplus(-logits).mean(0)
    keep = mean_p >= 1.0 - tau
    kept = keep.sum((-2, -1))
    uncertainty = (nll * keep).sum((-2, -1)) / kept.clamp(min=1)  # 0 where nothing is kept
    entropy = -(torch.xlogy(mean_p, mean_p) + torch.xlogy(1 - mean_p, 1 - mean_p))
    return uncertainty, entropy.mean((-2, -1)), mean_p.mean((-2, -1))


def per_video_seed(seed: int, video_id: str) -> int:
    """A seed for ``video_id`` alone, so sharding and order never change its masks."""
    return int(np.random.SeedSequence([seed, zlib.crc32(video_id.encode())]).generate_state(1)[0])


@torch.no_grad()
def score_video(model: torch.nn.Module, video: Video, spec: ClipSpec, device: torch.device,
                passes: int = 10, tau: float = 0.9, batch_size: int = 8, seed: int = 0,
                pass_chunk: int | None = None, bf16: bool = False, cache=None) -> VideoScores:
    """U, entropy and mean foreground of every frame of ``video`` (deterministic given ``seed``),
    and the video's feature vector (see the module doc).

    ``pass_chunk`` passes share one batched ``decode_head`` call (None: all ``passes``;
    1: a plain loop of T calls). ``cache``: the model's frozen-encoder ``FeatureCache``, read
    instead of running ``encode``. The model is left in eval mode.
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")

    def run(clips) -> tuple[EncodedClip, Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            encoded = clips if cache is not None else model.encode(clips)
            return encoded, mc_decode(model, encoded, passes, pass_chunk)

    devices = [device] if device.type == "cuda" else []
    model.mc_dropout(True)
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(per_video_seed(seed, video.id))
            stats, features = window_scores(video, input_batches(video, spec, device, batch_size, cache), run,
                                            tau, spec.length)
    finally:
        model.eval()
    return VideoScores(video.id, *stats, passes=passes, tau=tau, features=features)


def window_scores(video: Video, batches, run, tau: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (U, entropy, mean foreground) over a video's window ``batches`` and its pooled
    feature vector. ``run(clips) -> (encoded, fg logits (P, B, T, H, W))`` is the model's part:
    P dropout passes of one model, or P members of an ensemble."""
    stats = np.zeros((3, video.num_frames), dtype=np.float64)
    pooled: list[Tensor] = []
    for clips, windows in batches:
        encoded, logits = run(clips)
        pooled.append(pooled_features(encoded))
        _scatter(stats, frame_stats(logits.flatten(1, 2), tau), windows, length)
    return stats, torch.cat(pooled).mean(0).cpu().numpy().astype(np.float32)


def pooled_features(encoded: EncodedClip) -> Tensor:
    """(B, C) per window: the deepest encoder map averaged over time, height and width.

    The deep map is the encoder's final output (I3D Mixed_4f, Small3D stage3): the most
    semantic of the three, and the one both dropouts come after, so it is deterministic.
    """
    return encoded.deep.float().mean(dim=(2, 3, 4))


def mc_decode(model: torch.nn.Module, features: EncodedClip, passes: int, pass_chunk: int | None = None) -> Tensor:
    """Foreground logits (T, B, L, h, w) of T ``decode_head`` passes over encoded clips.

    Passes are decoded ``pass_chunk`` at a time as repeated copies of the features; on a
    CUDA out-of-memory error the chunk is halved and redone (with fresh masks: a run that
    hit the fallback is not bit-identical to one that did not).
    """
    chunk = passes if not pass_chunk else min(pass_chunk, passes)
    outputs: list[Tensor] = []
    while len(outputs) < passes:
        n = min(chunk, passes - len(outputs))
        try:
            outputs.extend(_decode_passes(model, features, n))
        except torch.cuda.OutOfMemoryError:
            if n == 1:
                raise
            torch.cuda.empty_cache()
            chunk = max(1, n // 2)
    return torch.stack(outputs)


def _decode_passes(model: torch.nn.Module, features, n: int) -> list[Tensor]:
    """n passes in one ``decode_head`` call; copies of a clip sit next to each other."""
    if n == 1:
        return [model.decode_head(features).fg_logits]
    logits = model.decode_head(features.repeat(n)).fg_logits  # (B * n, L, h, w)
    grouped = logits.reshape(-1, n, *logits.shape[1:])
    return list(grouped.unbind(1))


def _scatter(stats: np.ndarray, frame_values: tuple[Tensor, ...], windows: list[np.ndarray], length: int) -> None:
    """Write each window's per-frame values to its frames, skipping the padding repeats."""
    values = torch.stack(frame_values).double().cpu().numpy().reshape(3, len(windows), length)
    for k, window in enumerate(windows):
        real = np.r_[True, window[1:] != window[:-1]]
        stats[:, window[real]] = values[:, k, real]

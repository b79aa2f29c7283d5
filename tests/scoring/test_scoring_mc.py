"""MC-dropout frame scores: Eq. 1 on a hand-built stack, and the fast path against T full passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import ArrayVideo

from sparselabel.data.windows import window_batches
from sparselabel.models import build_detector
from sparselabel.scoring.mc_dropout import VideoScores, frame_stats, per_video_seed, score_video
from sparselabel.train.clips import ClipSpec

SPEC = ClipSpec(length=4, stride=2, size=(32, 32), flip=False)


def logit(p: np.ndarray) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p) - torch.log1p(-p)


def test_uncertainty_of_a_hand_built_probability_stack():
    # T = 2 passes, 3 frames of 2 x 2 pixels.
    probs = np.array([
        [[[0.9, 0.5], [0.02, 0.2]], [[0.01, 0.01], [0.01, 0.01]], [[0.5, 0.5], [0.5, 0.5]]],
        [[[0.7, 0.5], [0.06, 0.1]], [[0.05, 0.01], [0.01, 0.01]], [[0.5, 0.5], [0.5, 0.5]]],
    ])
    u, entropy, mean_fg = (x.numpy() for x in frame_stats(logit(probs), tau=0.9))
    # Frame 0: mean p = .8, .5, .04, .15 -> the .04 pixel is suppressed (< 1 - tau = .1).
    kept = [(0.9, 0.7), (0.5, 0.5), (0.2, 0.1)]
    expected0 = np.mean([np.mean([-math.log(p) for p in pixel]) for pixel in kept])
    # Frame 1: every pixel confidently background -> no pixel kept -> U = 0.
    # Frame 2: p = .5 everywhere -> U = log 2.
    np.testing.assert_allclose(u, [expected0, 0.0, math.log(2)], rtol=1e-6)

    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    # Entropy and mean foreground use every pixel (no suppression).
    np.testing.assert_allclose(entropy[0], np.mean([h(0.8), h(0.5), h(0.04), h(0.15)]), rtol=1e-6)
    np.testing.assert_allclose(entropy[2], math.log(2), rtol=1e-6)
    np.testing.assert_allclose(mean_fg, [np.mean([0.8, 0.5, 0.04, 0.15]), np.mean([0.03, 0.01, 0.01, 0.01]), 0.5],
                               rtol=1e-6)


def test_minus_log_p_stays_finite_where_p_underflows():
    u, entropy, _ = frame_stats(torch.tensor([[[[-200.0, 5.0]]], [[[-200.0, 5.0]]]]), tau=1.0)
    assert torch.isfinite(u).all() and torch.isfinite(entropy).all()
    np.testing.assert_allclose(u.numpy(), [(200.0 + math.log1p(math.exp(-5.0))) / 2], rtol=1e-5)




@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_detector("small3d", num_classes=3, pretrained=False)


@pytest.fixture(scope="module")
def video():
    return ArrayVideo("Basketball/v_1", np.random.default_rng(0).integers(0, 255, (19, 40, 48, 3), dtype=np.uint8))


def full_passes(model, video, passes: int, tau: float, seed: int, batch_size: int = 3) -> np.ndarray:
    """The reference: T complete forward passes (encoder included) per window batch."""
    stats = np.zeros((3, video.num_frames))
    model.mc_dropout(True)
    torch.manual_seed(per_video_seed(seed, video.id))
    with torch.no_grad():
        for clips, windows in window_batches(video, SPEC, batch_size):
            logits = torch.stack([model(clips).fg_logits for _ in range(passes)])
            values = torch.stack(frame_stats(logits.flatten(1, 2), tau)).double().numpy()
            values = values.reshape(3, len(windows), SPEC.length)
            for k, window in enumerate(windows):
                real = np.r_[True, window[1:] != window[:-1]]
                stats[:, window[real]] = values[:, k, real]
    model.eval()
    return stats


def as_array(scores: VideoScores) -> np.ndarray:
    return np.stack([scores.uncertainty, scores.entropy, scores.mean_fg])


def test_fast_path_equals_t_full_passes_with_the_same_seed(model, video):
    # Encode once + decode_head T times draws the masks in the same order as T full passes.
    fast = score_video(model, video, SPEC, torch.device("cpu"), passes=5, batch_size=3, seed=7, pass_chunk=1)
    np.testing.assert_allclose(as_array(fast), full_passes(model, video, 5, 0.9, seed=7), rtol=0, atol=1e-5)
    assert not model.training and not any(m.training for m in model.modules())


class ScriptedDropout(torch.nn.Dropout3d):
    """Dropout3d whose masks are fixed per (pass, clip in the batch, channel).

    It is told how many passes each call holds (``chunk``, as ``mc_decode`` splits T), so
    that a batched call over repeated copies and T separate calls apply the same masks.
    """

    def __init__(self, passes: int, chunk: int, channels: int, seed: int):
        super().__init__(0.5)
        generator = torch.Generator().manual_seed(seed)
        self.masks = (torch.rand(passes, 16, channels, generator=generator) > 0.5).float() * 2
        self.passes, self.chunk, self.done = passes, chunk, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        k = min(self.chunk, self.passes - self.done)
        n = torch.arange(x.shape[0])
        t, b = self.done + n % k, n // k  # copies of a clip are adjacent (repeat_interleave)
        self.done = (self.done + k) % self.passes
        return x * self.masks[t, b][:, :, None, None, None]


def scripted(model, chunk: int, passes: int):
    model.feature_dropout = ScriptedDropout(passes, chunk, model.deep_skip.in_channels, seed=1)
    model.head_dropout = ScriptedDropout(passes, chunk, model.up_out.in_channels, seed=2)
    return model


@pytest.mark.parametrize("chunk", [None, 2, 3])
def test_batched_passes_equal_separate_passes_given_the_same_masks(chunk, video):
    passes = 4
    torch.manual_seed(0)
    base = build_detector("small3d", num_classes=3, pretrained=False)
    reference = full_passes(scripted(base, 1, passes), video, passes, 0.9, seed=3)
    fast = score_video(scripted(base, chunk or passes, passes), video, SPEC, torch.device("cpu"),
                       passes=passes, batch_size=3, seed=3, pass_chunk=chunk)
    np.testing.assert_allclose(as_array(fast), reference, rtol=0, atol=1e-5)
    # Different masks per pass really make a difference (the test is not vacuous).
    single = score_video(scripted(base, 1, 1), video, SPEC, torch.device("cpu"), passes=1, batch_size=3, seed=3)
    assert not np.allclose(as_array(single), reference)


def test_every_frame_scored_deterministic_and_seed_dependent(model, video, tmp_path):
    a = score_video(model, video, SPEC, torch.device("cpu"), passes=3, batch_size=4, seed=1)
    b = score_video(model, video, SPEC, torch.device("cpu"), passes=3, batch_size=4, seed=1)
    c = score_video(model, video, SPEC, torch.device("cpu"), passes=3, batch_size=4, seed=2)
    assert a.uncertainty.shape == (19,) and (a.mean_fg > 0).all() and (a.entropy > 0).all()
    np.testing.assert_array_equal(as_array(a), as_array(b))
    assert not np.array_equal(a.uncertainty, c.uncertainty)
    # The caller's RNG is untouched (scoring forks it).
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    score_video(model, video, SPEC, torch.device("cpu"), passes=2, seed=1)
    assert torch.equal(torch.rand(1), expected)
    path = a.save(tmp_path)
    assert path.name == "Basketball%2Fv_1.npz" and not list(tmp_path.glob("*.tmp"))
    loaded = VideoScores.load(tmp_path, video.id)
    np.testing.assert_array_equal(as_array(loaded), as_array(a))
    assert (loaded.passes, loaded.tau) == (3, 0.9)

"""The frozen encoder's feature cache and the conv head: hits, invalidation, atomic writes, equality."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support import ArrayVideo, make_tiny_workspace

from sparselabel.data.windows import ClipSpec, video_windows
from sparselabel.loop.workspace import Workspace
from sparselabel.models import build_detector
from sparselabel.models.features import CACHE_DIR, FeatureCache
from sparselabel.scoring.mc_dropout import score_video
from sparselabel.scoring.predict import predict_video
from sparselabel.train.losses import detector_loss

SPEC = ClipSpec(length=4, stride=2, size=(32, 32), flip=False)
CPU = torch.device("cpu")


def frozen_model(seed: int = 0, head: str = "capsules"):
    torch.manual_seed(seed)
    return build_detector("small3d", num_classes=3, pretrained=False, head=head).freeze_encoder().eval()


def video(name: str = "v0", frames: int = 11) -> ArrayVideo:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    return ArrayVideo(name, rng.integers(0, 255, (frames, 24, 40, 3), dtype=np.uint8))


def test_conv_head_trains_with_cross_entropy_and_masks_nothing_by_class() -> None:
    model = build_detector("small3d", num_classes=3, pretrained=False, head="conv")
    clip = torch.randn(2, 3, 8, 32, 32)
    out = model(clip, labels=torch.tensor([0, 2]))
    assert out.fg_logits.shape == (2, 8, 32, 32) and out.class_logits.shape == (2, 3)
    assert torch.allclose(out.class_scores.sum(1), torch.ones(2))
    assert out.decoded_class.tolist() == [0, 2] and out.class_poses is None
    total, parts = detector_loss(out, torch.tensor([0, 2]), torch.zeros(2, 8, 32, 32), torch.ones(2, 8))
    assert torch.allclose(parts["classification"], torch.nn.functional.cross_entropy(out.class_logits, torch.tensor([0, 2])))
    total.backward()
    assert model.conv_head.classifier.weight.grad is not None
    model.eval()
    assert torch.equal(model(clip).fg_logits, model(clip, labels=torch.tensor([1, 1])).fg_logits)  # class-agnostic


def test_freeze_encoder_stops_its_gradients_and_keeps_it_in_eval() -> None:
    model = frozen_model().train()
    assert not model.encoder.training and model.feature_dropout.training
    model(torch.randn(1, 3, 4, 32, 32), labels=torch.tensor([1])).fg_logits.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert any(p.grad is not None for p in model.up_out.parameters())


def test_cached_features_equal_encoding_and_give_the_same_predictions_and_scores(tmp_path: Path) -> None:
    model, clip = frozen_model(), video()
    cache = FeatureCache(tmp_path, model, "small3d", SPEC)
    assert cache.ensure([clip], CPU, batch_size=3) == 1
    windows, maps = cache.windows(clip.id)
    assert [w.tolist() for w in windows] == [w.tolist() for w in video_windows(clip.num_frames, SPEC)]
    assert maps["deep"].dtype == np.float16
    plain = predict_video(model, clip, SPEC, CPU, batch_size=3)
    cached = predict_video(model, clip, SPEC, CPU, batch_size=3, cache=cache)
    np.testing.assert_allclose(cached.fg, plain.fg, atol=2e-2)  # float16 storage
    np.testing.assert_allclose(cached.class_scores, plain.class_scores, atol=2e-2)
    s_plain = score_video(model, clip, SPEC, CPU, passes=3, batch_size=3)
    s_cached = score_video(model, clip, SPEC, CPU, passes=3, batch_size=3, cache=cache)
    np.testing.assert_allclose(s_cached.mean_fg, s_plain.mean_fg, atol=2e-2)


def test_a_second_ensure_is_a_hit_and_computes_nothing(tmp_path: Path) -> None:
    model, clips = frozen_model(), [video("a"), video("b", 7)]
    cache = FeatureCache(tmp_path, model, "small3d", SPEC)
    assert cache.ensure(clips, CPU) == 2
    stamp = (cache.video_folder("a") / "deep.npy").stat().st_mtime_ns
    assert FeatureCache(tmp_path, frozen_model(), "small3d", SPEC).ensure(clips, CPU) == 0
    assert (cache.video_folder("a") / "deep.npy").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("change", ["weights", "input size", "clip length", "clip stride", "encoder name"])
def test_each_key_part_invalidates_and_replaces_the_old_features(tmp_path: Path, change: str) -> None:
    clip = video()
    first = FeatureCache(tmp_path, frozen_model(), "small3d", SPEC)
    first.ensure([clip], CPU)
    model, spec, name = frozen_model(), SPEC, "small3d"
    if change == "weights":
        model = frozen_model(seed=1)
    elif change == "input size":
        spec = ClipSpec(4, 2, (40, 40), flip=False)
    elif change == "clip length":
        spec = ClipSpec(8, 2, (32, 32), flip=False)
    elif change == "clip stride":
        spec = ClipSpec(4, 1, (32, 32), flip=False)
    else:
        name = "small3d-other"
    second = FeatureCache(tmp_path, model, name, spec)
    assert second.key != first.key
    assert second.ensure([clip], CPU) == 1
    assert [p.name for p in (tmp_path / CACHE_DIR).iterdir()] == [second.key]  # bounded: one set


def test_a_cache_over_its_size_limit_is_refused_before_computing(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, frozen_model(), "small3d", SPEC, max_gb=1e-9)
    with pytest.raises(Exception, match="feature_cache_gb"):
        cache.ensure([video()], CPU)
    assert not cache.has("v0")


def test_frozen_training_caches_survives_a_kill_mid_write_and_resumes(tmp_path: Path) -> None:
    root = make_tiny_workspace(tmp_path, ["model.input_size=[32,32]", "model.freeze_encoder=true",
                                          "model.head=conv", "train.steps=4", "train.batch_size=2",
                                          "labels.initial_percent=20"])
    env = {**os.environ, "SPARSELABEL_FAULT": "features:written"}
    killed = subprocess.run([sys.executable, "-m", "sparselabel", "train", str(root)], env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -9
    folder = next((root / CACHE_DIR).iterdir())
    assert not [p for p in folder.iterdir() if p.is_dir() and ".tmp-" not in p.name]  # no half video
    env.pop("SPARSELABEL_FAULT")
    done = subprocess.run([sys.executable, "-m", "sparselabel", "train", str(root)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Workspace.open(root) as ws:
        pool = sorted(ws.ledger.videos("pool"))
        assert all((folder / v / "windows.npy").is_file() for v in pool)
        assert (root / "runs" / "cycle-000" / "model.pt").is_file()

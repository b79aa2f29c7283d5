"""The training recipe's options: classifying only clips that show an actor, colour jitter, weighted class scores, motion input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import ArrayVideo

from sparselabel.config import load_config
from sparselabel.data.windows import ClipSpec
from sparselabel.models import build_detector, detector_from_config
from sparselabel.models.small3d import with_motion
from sparselabel.scoring.predict import predict_video
from sparselabel.train.clips import colour_jitter
from sparselabel.train.losses import actor_clips, detector_loss, margin_loss
from sparselabel.train.runner import DistEnv, make_optimizer, run_steps


def test_actor_clips_are_those_whose_weighted_frames_show_foreground() -> None:
    targets = torch.zeros(3, 4, 8, 8)
    targets[0, 1, 2:4, 2:4] = 1.0  # an actor on frame 1, which has weight
    targets[1, 2, 2:4, 2:4] = 1.0  # an actor on frame 2, which has none
    weights = torch.tensor([[0, 1, 0, 0], [1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.float32)
    assert actor_clips(targets, weights).tolist() == [1.0, 0.0, 0.0]


def test_clip_weights_keep_the_classification_loss_to_actor_clips() -> None:
    scores, labels = torch.rand(3, 4), torch.tensor([0, 1, 2])
    assert torch.allclose(margin_loss(scores, labels, weights=torch.ones(3)), margin_loss(scores, labels))
    only_first = margin_loss(scores, labels, weights=torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(only_first, margin_loss(scores[:1], labels[:1]))
    model = build_detector("small3d", num_classes=4, pretrained=False, head="conv")
    out = model(torch.randn(2, 3, 4, 16, 16), labels=labels[:2])
    _, none = detector_loss(out, labels[:2], torch.zeros(2, 4, 16, 16), torch.ones(2, 4), clip_weights=torch.zeros(2))
    assert float(none["classification"].detach()) == 0.0


def test_colour_jitter_changes_colours_alike_on_every_frame_and_stays_in_range() -> None:
    frame = torch.rand(3, 1, 6, 6) * 2 - 1
    clip = frame.repeat(1, 5, 1, 1)
    out = colour_jitter(clip, np.random.default_rng(3))
    assert out.shape == clip.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, clip)
    assert all(torch.equal(out[:, 0], out[:, t]) for t in range(5))  # motion is untouched
    assert torch.equal(out, colour_jitter(clip, np.random.default_rng(3)))  # seeded


def test_actor_weighted_class_scores_follow_the_windows_that_show_foreground() -> None:
    torch.manual_seed(0)
    model = build_detector("small3d", num_classes=3, pretrained=False, head="conv").eval()
    video = ArrayVideo("v", np.random.default_rng(0).integers(0, 255, (12, 16, 16, 3), dtype=np.uint8))
    spec = ClipSpec(4, 2, (16, 16), flip=False)
    plain = predict_video(model, video, spec, torch.device("cpu"), batch_size=2)
    weighted = predict_video(model, video, spec, torch.device("cpu"), batch_size=2, actor_weighted=True)
    np.testing.assert_allclose(weighted.fg, plain.fg)
    assert np.isclose(weighted.class_scores.sum(), 1.0, atol=1e-5)
    assert not np.allclose(weighted.class_scores, plain.class_scores, atol=1e-7)


def test_the_silhouette_classifier_sees_only_the_predicted_foreground() -> None:
    """classify_from=silhouette: the class comes from the (detached) foreground alone, so two
    clips whose foreground is the same get the same class scores, whatever their colours."""
    torch.manual_seed(0)
    model = build_detector("small3d", num_classes=4, pretrained=False, head="conv", classify_from="silhouette")
    model.eval()
    features = model.encode(torch.randn(2, 3, 8, 32, 32))
    head = model.conv_head
    logits, fg = head(features)
    assert logits.shape == (2, 4) and fg.shape == (2, 8, 32, 32)
    # The classification loss moves no weight of the localisation path.
    logits.sum().backward()
    assert all(p.grad is None for p in head.to_logits.parameters())
    assert all(p.grad is not None for p in head.silhouette.parameters())
    # Pin the foreground logits; change every feature below them: the class scores stay.
    pinned = torch.randn(2, 1, 4, 16, 16)  # the fine map's shape for 8 x 32 x 32 clips
    head.to_logits.register_forward_hook(lambda _module, _inputs, _output: pinned)
    other = type(features)(features.fine * -1, features.mid + 1.0, features.deep * 2, features.size)
    with torch.no_grad():
        assert torch.allclose(head(features)[0], head(other)[0])


def test_classify_from_needs_the_conv_head() -> None:
    import pytest

    with pytest.raises(ValueError, match="conv head"):
        build_detector("small3d", num_classes=4, pretrained=False, head="capsules", classify_from="silhouette")


def test_weight_decay_reaches_weight_matrices_and_kernels_only() -> None:
    model = build_detector("small3d", num_classes=3, pretrained=False)  # capsule head: betas too
    decayed, free = make_optimizer(model, lr=0.01, weight_decay=0.1).param_groups
    assert decayed["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in free["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert {"class_caps.beta_u", "class_caps.beta_a"} <= {names[id(p)] for p in free["params"]}
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))
    model.encoder.requires_grad_(False)  # a frozen encoder's weights are not handed to the optimiser
    assert sum(len(g["params"]) for g in make_optimizer(model, 0.01, 0.1).param_groups) == sum(
        p.requires_grad for p in model.parameters())


def test_gradients_are_clipped_to_the_global_norm(tmp_path) -> None:
    net = torch.nn.Linear(4, 1)
    batches = [{"x": torch.full((2, 4), 100.0)} for _ in range(3)]

    def losses(step, batch):
        loss = net(batch["x"]).square().mean()
        return loss, {}

    def norm_after(clip: float) -> float:
        run_steps(net, make_optimizer(net, 1e-3, 0.0), batches, start=0, steps=3, losses=losses,
                  lr=lambda step: 1e-3, seed=(0, 0), env=DistEnv(), run_dir=tmp_path, checkpoint=lambda s: None,
                  checkpoint_every=10, batch_size=2, desc="t", grad_clip=clip)
        return float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm())

    assert norm_after(0.0) > 10
    assert norm_after(1.0) == pytest.approx(1.0, rel=1e-4)


def test_small3d_time_strides_keep_every_frame_at_the_fine_level() -> None:
    clip = torch.zeros(1, 3, 8, 32, 32)
    default = build_detector("small3d", 3, head="conv").encode(clip)
    kept = build_detector("small3d", 3, head="conv", time_strides=(1, 2, 2)).encode(clip)
    assert default.fine.shape[2] == 4 and kept.fine.shape[2] == 8 and kept.deep.shape[2] == 2
    out = build_detector("small3d", 3, head="conv", time_strides=(1, 2, 2))(clip)
    assert out.fg_logits.shape == (1, 8, 32, 32)


def test_motion_input_feeds_the_frame_differences_beside_the_frames() -> None:
    clip = torch.randn(2, 3, 8, 32, 32)
    both = with_motion(clip)
    assert both.shape == (2, 6, 8, 32, 32) and torch.equal(both[:, :3], clip)
    assert torch.equal(both[:, 3:, 0], torch.zeros_like(clip[:, :, 0]))  # nothing before the first frame
    assert torch.allclose(both[:, 3:, 1:], clip[:, :, 1:] - clip[:, :, :-1])
    model = detector_from_config(load_config(None, ["model.motion_input=true", "model.head=conv"]).model, 3)
    assert model.encoder.stage1[0].in_channels == 6
    assert model(clip).fg_logits.shape == (2, 8, 32, 32)
    # A clip that does not change sees the same frames and no motion: only the frames count.
    still = clip[:, :, :1].expand(-1, -1, 8, -1, -1)
    assert torch.equal(with_motion(still)[:, 3:], torch.zeros_like(still))


def test_motion_input_is_for_the_small_encoder_only() -> None:
    config = load_config(None, ["model.motion_input=true", "model.encoder=i3d", "model.pretrained=false"])
    with pytest.raises(ValueError, match="motion_input"):
        detector_from_config(config.model, 3)

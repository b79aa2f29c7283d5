"""Losses: margin/spread on class activations, per-frame weighted localisation BCE."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from sparselabel.labels.pseudo import frame_weights
from sparselabel.train.losses import (
    detector_loss,
    dice_loss,
    localization_loss,
    margin_loss,
    spread_loss,
)

T, H, W = 8, 6, 5
ANNOTATED = [2, 5]


def weights(loss: str, batch: int = 2) -> torch.Tensor:
    return torch.from_numpy(frame_weights(T, ANNOTATED, loss)).float().expand(batch, T).clone()


def logits_and_targets(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, T, H, W, generator=gen).requires_grad_()
    targets = torch.rand(2, T, H, W, generator=gen)
    return logits, targets


def loss_and_grad(logits, targets, w) -> tuple[torch.Tensor, torch.Tensor]:
    logits.grad = None
    loss = localization_loss(logits, targets, w)
    loss.backward()
    return loss.detach(), logits.grad.clone()


def test_mask_loss_ignores_frames_of_weight_zero() -> None:
    logits, targets = logits_and_targets()
    w = weights("mask")
    assert w[0].tolist() == [0, 0, 1, 0, 0, 1, 0, 0]
    loss, grad = loss_and_grad(logits, targets, w)
    changed = targets.clone()
    unlabelled = [t for t in range(T) if t not in ANNOTATED]
    changed[:, unlabelled] = 1 - changed[:, unlabelled]
    loss2, grad2 = loss_and_grad(logits, changed, w)
    assert torch.equal(loss, loss2)
    assert torch.equal(grad, grad2)
    assert (grad[:, unlabelled] == 0).all()
    expected = F.binary_cross_entropy_with_logits(logits[:, ANNOTATED], targets[:, ANNOTATED])
    assert torch.allclose(loss, expected)


def test_interp_weighs_every_frame_equally() -> None:
    logits, targets = logits_and_targets()
    w = weights("interp")
    assert (w == 1).all()
    expected = F.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(localization_loss(logits, targets, w), expected)


def test_mgw_weights_between_mask_and_interp() -> None:
    logits, targets = logits_and_targets()
    w = weights("mgw")
    assert ((w > 0) & (w <= 1)).all() and (w[:, ANNOTATED] == 1).all()
    per_frame = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean((2, 3))
    expected = (w * per_frame).sum() / w.sum()
    assert torch.allclose(localization_loss(logits, targets, w), expected)


def test_normalised_by_the_weight_sum() -> None:
    logits, targets = logits_and_targets()
    w = weights("mgw")
    assert torch.allclose(localization_loss(logits, targets, w), localization_loss(logits, targets, 3 * w))


def test_all_zero_weights_give_zero_and_backward_works() -> None:
    logits, targets = logits_and_targets()
    loss, grad = loss_and_grad(logits, targets, torch.zeros(2, T))
    assert loss.item() == 0.0
    assert (grad == 0).all()


def test_shape_mismatch_is_an_error() -> None:
    logits, targets = logits_and_targets()
    with pytest.raises(ValueError, match="frame_weights"):
        localization_loss(logits, targets, torch.ones(2, T + 1))


def test_margin_loss_hand_case() -> None:
    scores = torch.tensor([[0.95, 0.3, 0.05], [0.5, 0.2, 0.0]])
    labels = torch.tensor([0, 2])
    # clip 0: true class above m+ (0), absent 0.5 * (0.3 - 0.1)^2 = 0.02
    # clip 1: (0.9 - 0)^2 = 0.81, absent 0.5 * ((0.5 - 0.1)^2 + (0.2 - 0.1)^2) = 0.085
    assert margin_loss(scores, labels).item() == pytest.approx((0.02 + 0.895) / 2)
    assert margin_loss(torch.tensor([[0.95, 0.05]]), torch.tensor([0])).item() == 0.0


def test_spread_loss_hand_case() -> None:
    scores = torch.tensor([[0.8, 0.7, 0.1]])
    # only class 1 is within the margin 0.2 of the true class: (0.2 - 0.1)^2
    assert spread_loss(scores, torch.tensor([0]), margin=0.2).item() == pytest.approx(0.01)


def test_detector_loss_combines_both_parts() -> None:
    logits, targets = logits_and_targets()
    scores = torch.tensor([[0.95, 0.3, 0.05], [0.5, 0.2, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 2])
    output = SimpleNamespace(class_scores=scores, fg_logits=logits)
    w = weights("mgw")
    total, parts = detector_loss(output, labels, targets, w, localization_weight=2.0)
    assert set(parts) == {"classification", "localization"}
    assert torch.allclose(parts["classification"], margin_loss(scores, labels))
    assert torch.allclose(parts["localization"], localization_loss(logits, targets, w))
    assert torch.allclose(total, parts["classification"] + 2.0 * parts["localization"])
    total.backward()
    assert scores.grad is not None and logits.grad is not None
    spread, _ = detector_loss(output, labels, targets, w, classification="spread", margin=0.9)
    assert spread.item() > 0
    with pytest.raises(ValueError, match="classification"):
        detector_loss(output, labels, targets, w, classification="hinge")


def test_dice_is_per_frame_overlap_whatever_the_actor_size() -> None:
    targets = torch.zeros(1, 2, 20, 20)
    targets[0, 0, :2, :2] = 1  # a small actor
    targets[0, 1, :10, :10] = 1  # a large one
    kept = torch.zeros_like(targets)
    kept[0, 0, :1, :2], kept[0, 1, :5, :10] = 1, 1  # the top half of each actor found, with certainty
    half = torch.where(kept > 0, 50.0, -50.0)
    per_frame = [dice_loss(half[:, t:t + 1], targets[:, t:t + 1], torch.ones(1, 1)).item() for t in range(2)]
    assert per_frame[0] == pytest.approx(per_frame[1], abs=0.1)  # BCE would differ 25-fold
    bce = [localization_loss(half[:, t:t + 1], targets[:, t:t + 1], torch.ones(1, 1)).item() for t in range(2)]
    assert bce[1] > 10 * bce[0]


def test_dice_weights_frames_like_the_bce_and_is_off_at_zero() -> None:
    logits, targets = logits_and_targets()
    w = weights("mask")
    only_weighted = dice_loss(logits, targets, w)
    scrambled = logits.detach().clone()
    scrambled[:, [0, 1, 3]] = 9.0  # frames of weight 0 under "mask"
    assert dice_loss(scrambled, targets, w) == pytest.approx(only_weighted.item())
    out = SimpleNamespace(class_scores=torch.full((2, 3), 0.5), fg_logits=logits)
    labels = torch.tensor([0, 1])
    off, parts = detector_loss(out, labels, targets, w)
    on, parts_on = detector_loss(out, labels, targets, w, dice_weight=2.0)
    assert "dice" not in parts and on.item() == pytest.approx(off.item() + 2.0 * parts_on["dice"].item())

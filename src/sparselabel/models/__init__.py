"""Models, chosen by name from the config: ``build_detector("small3d" | "i3d", num_classes)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sparselabel.models.detector import (
    Detector,
    DetectorOutput,
    EncodedClip,
    EncoderSpec,
    i3d_encoder,
    small3d_encoder,
)
from sparselabel.registry import Registry

if TYPE_CHECKING:
    from sparselabel.config import ModelConfig

# name -> factory(pretrained: bool, **options) -> EncoderSpec
ENCODERS: Registry[Callable[..., EncoderSpec]] = Registry("encoder", {
    "small3d": small3d_encoder,  # CPU tests and the demo; any input size; no pretrained weights
    "i3d": i3d_encoder,  # the paper's: I3D up to Mixed_4f, Kinetics-400 weights
})

ENCODER_OPTIONS = {"variant", "weights", "cache_dir", "widths", "time_strides", "motion_input"}


def build_detector(
    encoder: str = "small3d",
    num_classes: int = 24,
    pretrained: bool = True,
    dropout: float = 0.5,
    freeze_bn: bool | None = None,
    **kwargs: Any,
) -> Detector:
    """A ``Detector`` with the named encoder.

    ``pretrained`` loads the encoder's pretrained weights where it has any (``i3d``;
    ``small3d`` always starts from scratch). ``freeze_bn`` defaults to ``pretrained``:
    a pretrained encoder keeps its BatchNorm statistics. Other keyword arguments go to
    the encoder factory (``variant``, ``weights``, ``cache_dir`` for i3d; ``widths``
    for small3d) or to ``Detector`` (``primary_kernel``, ``num_types``, ``coord_add``,
    ``decoder_channels``, ...).
    """
    factory = ENCODERS.lookup(encoder)
    encoder_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ENCODER_OPTIONS}
    spec = factory(pretrained=pretrained, **encoder_kwargs)
    if freeze_bn is None:
        freeze_bn = pretrained
    return Detector(spec, num_classes, dropout=dropout, freeze_bn=freeze_bn, **kwargs)


def detector_from_config(model: ModelConfig, num_classes: int, pretrained: bool | None = None) -> Detector:
    """The detector ``model`` (the ``model:`` section of a config) describes.

    ``pretrained=False`` skips loading pretrained weights (the caller loads a run's own);
    BatchNorm is frozen as for the pretrained encoder either way.
    """
    options: dict[str, Any] = {"primary_kernel": model.primary_kernel} if model.primary_kernel else {}
    if model.classify_from != "features":
        options["classify_from"] = model.classify_from
    for name in ("widths", "time_strides"):  # the small encoder's per-stage lists
        values = getattr(model, name)
        if values:
            if model.encoder != "small3d" or len(values) != 3:
                raise ValueError(f"model.{name}={list(values)}: one value per stage (three), "
                                 "for model.encoder=small3d only")
            options[name] = tuple(values)
    if model.motion_input:
        if model.encoder != "small3d":
            raise ValueError("model.motion_input=true: for model.encoder=small3d only")
        options["motion_input"] = True
    return build_detector(model.encoder, num_classes=num_classes,
                          pretrained=model.pretrained if pretrained is None else pretrained,
                          dropout=model.dropout, freeze_bn=model.pretrained, head=model.head, **options)


__all__ = [
    "ENCODERS",
    "Detector",
    "DetectorOutput",
    "EncodedClip",
    "EncoderSpec",
    "build_detector",
    "detector_from_config",
]

"""Dataset loaders; importing this package registers every one of them."""

from sparselabel.data.datasets import act_pkl, davis, jhmdb, native, raw, ucf24  # noqa: F401

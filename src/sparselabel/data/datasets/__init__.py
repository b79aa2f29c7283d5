"""Dataset loaders; importing this package registers every one of them."""

from sparselabel.data.datasets import native  # noqa: F401

"""sparselabel: active sparse labeling for video action detection."""

__version__ = "0.1.0"

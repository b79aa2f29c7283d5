"""How every table prints a metric: a fraction as a percent with two decimals."""

from __future__ import annotations

import math


def percent(value: float | None, missing: str = "-") -> str:
    """``0.1234`` -> ``"12.34"``; ``missing`` for a metric with nothing to measure (None, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{100 * value:.2f}"

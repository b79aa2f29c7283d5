"""Strict JSON for results: a metric with nothing to measure (NaN) is written as null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_json(data: Any, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(finite(data), indent=1, allow_nan=False) + "\n")
    return path

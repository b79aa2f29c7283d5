"""Strict JSON for results (a metric with nothing to measure, NaN, is written as null), and
the one reader of JSON that comes from outside (annotation files, tool exports)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sparselabel.errors import AnnotationError


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


def parse_json(text: str, path: str | Path, where: str = "") -> Any:
    """JSON from a file we did not write, every way it can fail as one AnnotationError naming
    ``path`` (and ``where`` in it): malformed or truncated text, nesting deep enough to
    exhaust the parser's stack, and integers too long to convert."""
    prefix = f"{where}: " if where else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{prefix}not valid JSON ({exc}); is the file truncated?", path) from exc
    except RecursionError as exc:
        raise AnnotationError(f"{prefix}JSON nested too deeply to read", path) from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise AnnotationError(f"{prefix}unreadable number in JSON ({exc})", path) from exc


LARGEST = 2.0**53  # the largest magnitude a number read from a file may have: exact as a float and an SQLite INTEGER


def finite_number(value: object, what: str, path: Path) -> float:
    """A finite float from a parsed field, or an AnnotationError naming ``what``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or abs(number) > LARGEST:
        raise AnnotationError(f"{what}: {_shown(value)} is not a finite number of sane size", path)
    return number


def whole_number(value: object, what: str, path: Path) -> int:
    """An int from a parsed field (int, or a string / float holding one), else AnnotationError."""
    if isinstance(value, bool):
        raise AnnotationError(f"{what}: {value!r} is not a whole number", path)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or abs(number) > LARGEST:
        raise AnnotationError(f"{what}: {_shown(value)} is not a whole number of sane size", path)
    return int(number)


def _shown(value: object) -> str:
    """A value for a message: numpy scalars as plain numbers, never 5,000 digits."""
    text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= 40 else text[:37] + "..."

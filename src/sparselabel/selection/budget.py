"""``--budget 5%`` or ``--budget 500``: how many frames one selection may pick."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sparselabel.errors import SparseLabelError


def parse_budget(text: str | int, total_frames: int) -> int:
    """Frames for a budget: a percent of ALL pool frames (as the paper counts annotation %),
    rounded half up, or an absolute count.

    Percentages are computed in decimal, so "5%" of 3,000 frames is exactly 150.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return _count(str(text))
    raw = str(text).strip().replace(" ", "")
    if not raw.endswith("%"):
        return _count(raw)
    try:
        percent = Decimal(raw[:-1])
    except InvalidOperation:
        raise SparseLabelError(f"bad budget {text!r}: use a percent such as 5% or a frame count such as 500") from None
    if not percent.is_finite() or not 0 <= percent <= 100:
        raise SparseLabelError(f"bad budget {text!r}: a percent must be between 0% and 100%")
    return percent_of(percent, total_frames)


def percent_of(percent: Decimal | float, total: int) -> int:
    """``percent``% of ``total``, as a count: the one rounding rule for counts of frames and
    videos, halves up (2.5 -> 3), computed in decimal so 5% of 50 is exactly 2.5."""
    return round_half_up(Decimal(str(percent)) * total / 100)


def round_half_up(value: Decimal | float) -> int:
    """The nearest whole number, halves up (not Python's half-to-even ``round``)."""
    return int(Decimal(str(value)).to_integral_value(rounding=ROUND_HALF_UP))


def _count(raw: str) -> int:
    try:
        count = int(raw)
    except ValueError:
        raise SparseLabelError(f"bad budget {raw!r}: use a percent such as 5% or a frame count such as 500") from None
    if count < 0:
        raise SparseLabelError(f"bad budget {raw!r}: the frame count must be >= 0")
    return count

"""Choosing which frames to annotate next: APU, the paper's baselines and hybrid (numpy).

    from sparselabel.selection import apu_select, select, STRATEGIES
    chosen = apu_select(uncertainty, annotated, budget, lam=0.5, sigma=1.3, local=False)
    chosen.picks, chosen.scores
    selection = select("entropy", FrameScores(...), annotated, budget, seed=0, window=4)

``base`` holds the contract, the registry and ``select``; ``apu``, ``baselines`` and
``hybrid`` register their strategies when imported (here).
"""

from __future__ import annotations

from sparselabel.selection import baselines, hybrid  # noqa: F401  (register their strategies)
from sparselabel.selection.apu import apu_select
from sparselabel.selection.base import (
    STRATEGIES,
    FrameScores,
    QueryStrategy,
    Selection,
    make_strategy,
    select,
)
from sparselabel.selection.budget import parse_budget

__all__ = [
    "STRATEGIES",
    "FrameScores",
    "QueryStrategy",
    "Selection",
    "apu_select",
    "make_strategy",
    "parse_budget",
    "select",
]

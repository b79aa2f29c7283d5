"""Choosing which frames to annotate next: APU, the paper's baselines and hybrid (numpy).

    from sparselabel.selection import apu_select, select, STRATEGIES
    picks = apu_select(uncertainty, annotated, budget, lam=0.5, sigma=1.3, local=False)
    selection = select("entropy", FrameScores(...), annotated, budget, seed=0, window=4)
"""

from __future__ import annotations

from sparselabel.selection.apu import apu_scored, apu_select
from sparselabel.selection.base import FrameScores, QueryStrategy, Selection
from sparselabel.selection.baselines import STRATEGIES, make_strategy, select
from sparselabel.selection.budget import parse_budget

__all__ = [
    "STRATEGIES",
    "FrameScores",
    "QueryStrategy",
    "Selection",
    "apu_scored",
    "apu_select",
    "make_strategy",
    "parse_budget",
    "select",
]

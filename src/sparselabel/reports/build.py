"""Write a report folder: per-cycle table, curves, selection timelines, histogram, HTML page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sparselabel.evaluation.percent import percent
from sparselabel.loop.history import History, history, score_curves
from sparselabel.loop.workspace import Workspace
from sparselabel.reports.html import write_page
from sparselabel.reports.plots import (
    annotation_curves,
    frames_per_video,
    score_timelines,
    selection_timelines,
)

HEADER = ["cycle", "strategy", "% frames", "frames", "clicks", "f-mAP@0.5", "v-mAP@0.5",
          "pool f-mAP: model", "pool f-mAP: interpolation"]


def table_rows(histories: Sequence[History]) -> list[list[str]]:
    rows = []
    for cycle in sorted({r.cycle for h in histories for r in h.records}):
        for h in histories:
            for r in (r for r in h.records if r.cycle == cycle):
                rec = r.recovery or {}
                rows.append([str(r.cycle), r.strategy, f"{r.percent:.2f}", str(r.frames), str(r.clicks),
                             percent(r.f_map), percent(r.v_map), percent(rec.get("model")), percent(rec.get("interpolation"))])
    return rows


def write_report(workspaces: Sequence[Workspace], out: Path, title: str = "sparselabel report") -> Path:
    """The report of one or more workspaces (strategies side by side); returns the HTML page."""
    out.mkdir(parents=True, exist_ok=True)
    histories = [history(ws) for ws in workspaces]
    figures = []
    if any(h.records for h in histories):
        figures.append(("Accuracy against annotation (paper Fig. 1)", annotation_curves(histories, out / "curves.png")))
    figures.append(("Frames picked per cycle (paper Fig. 3)", selection_timelines(histories, out / "timelines.png")))
    figures.append(("Annotated frames per video (paper Fig. 7)", frames_per_video(histories, out / "frames_per_video.png")))
    for ws, h in zip(workspaces, histories, strict=True):
        scored = sorted(int(p.name.split("-")[1]) for p in (ws.root / "scores").glob("cycle-*"))
        scored = [c for c in scored if ws.ledger.selections(c + 1)]
        if scored:
            c = scored[-1]
            path = score_timelines(score_curves(ws, c), out / f"scores-{h.strategy}-cycle-{c:03d}.png",
                                   f"{h.strategy}: what cycle {c}'s model scored, and the frames picked for cycle {c + 1}")
            figures.append((f"U, D and the APU score, cycle {c} ({h.strategy})", path))
    intro = (f"{len(workspaces)} strateg{'y' if len(workspaces) == 1 else 'ies'} on the same pool and initial labels; "
             "f-mAP / v-mAP on the test split, 'pool' columns on the pool's unannotated frames.")
    return write_page(out / "index.html", title, intro, HEADER, table_rows(histories), figures)

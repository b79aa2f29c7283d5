"""The paper's figures for a labeling project: accuracy against annotation (Fig. 1), where
the frames were picked (Fig. 3), and how many frames each video got (Fig. 7)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sparselabel.loop.history import History  # noqa: E402


def _percent(values: Sequence[float | None]) -> list[float]:
    return [np.nan if v is None else 100 * v for v in values]


def annotation_curves(histories: Sequence[History], out: Path) -> Path:
    """f-mAP@0.5, v-mAP@0.5 (test split) and pool recovery against % of frames annotated."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [("f-mAP@0.5 (test)", lambda r: r.f_map), ("v-mAP@0.5 (test)", lambda r: r.v_map),
              ("f-mAP@0.5 on unannotated pool frames", lambda r: (r.recovery or {}).get("model"))]
    for ax, (title, metric) in zip(axes, panels, strict=True):
        for h in histories:
            x = [r.percent for r in h.records]
            ax.plot(x, _percent([metric(r) for r in h.records]), marker="o", label=h.strategy)
        ax.set_title(title)
        ax.set_xlabel("% of pool frames annotated")
        ax.grid(alpha=0.3)
    interp = [(r.percent, (r.recovery or {}).get("interpolation")) for r in histories[0].records] if histories else []
    if interp:
        axes[2].plot([x for x, _ in interp], _percent([y for _, y in interp]), ls="--", c="gray",
                     label=f"interpolation ({histories[0].strategy} labels)")
    axes[0].set_ylabel("%")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def selection_timelines(histories: Sequence[History], out: Path, videos: int = 6) -> Path:
    """For a few videos: the actors' extents and the frames each strategy picked, coloured by cycle."""
    shown = sorted(histories[0].num_frames)[:videos]
    cycles = max((c for h in histories for sel in h.selected.values() for c in sel), default=0)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, cycles + 1))
    fig, axes = plt.subplots(len(shown), len(histories), figsize=(5.5 * len(histories), 0.9 * len(shown) + 1),
                             squeeze=False, sharex="row")
    for col, h in enumerate(histories):
        for row, vid in enumerate(shown):
            ax = axes[row][col]
            for first, last in h.extents.get(vid, []):
                ax.axvspan(first, last + 1, color="orange", alpha=0.25, lw=0)
            for cycle, frames in sorted(h.selected[vid].items()):
                ax.scatter(frames, np.zeros(len(frames)), color=colours[cycle], s=28, zorder=3,
                           label=f"cycle {cycle}" if row == 0 else None)
            ax.set_xlim(0, h.num_frames[vid])
            ax.set_yticks([])
            ax.set_ylabel(vid, rotation=0, ha="right", fontsize=8)
            if row == 0:
                ax.set_title(f"{h.strategy}: frames picked per cycle (orange: actors present)", fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="upper right", ncol=cycles + 1)
    axes[-1][0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def frames_per_video(histories: Sequence[History], out: Path) -> Path:
    """Histogram of annotated frames per video, per strategy."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    counts = [[sum(len(f) for f in sel.values()) for sel in h.selected.values()] for h in histories]
    top = max((max(c) for c in counts if c), default=1)
    bins = np.arange(0, top + 2) - 0.5
    for h, c in zip(histories, counts, strict=True):
        ax.hist(c, bins=bins, alpha=0.55, label=h.strategy)
    ax.set_xlabel("annotated frames per video")
    ax.set_ylabel("videos")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def score_timelines(curves: Sequence, out: Path, title: str = "") -> Path:
    """Per video: normalised U, proximity D, APU score S, annotated frames and the new picks (Fig. 3)."""
    fig, axes = plt.subplots(len(curves), 1, figsize=(10, 1.7 * len(curves) + 0.6), squeeze=False)
    for ax, c in zip(axes[:, 0], curves, strict=True):
        x = np.arange(len(c.u))
        ax.plot(x, c.u, lw=1, label="U (normalised)")
        ax.plot(x, c.d, lw=1, label="D (proximity)")
        ax.plot(x, c.s, lw=1.6, c="k", label="S = APU score")
        ax.scatter(c.annotated, np.zeros(len(c.annotated)), marker="s", c="gray", s=22, label="annotated", zorder=3)
        ax.scatter(c.picked, c.s[c.picked], marker="v", c="red", s=36, label="picked", zorder=4)
        ax.set_ylim(-0.05, 1.1)
        ax.set_xlim(0, len(c.u))
        ax.set_ylabel(c.video, rotation=0, ha="right", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper right")
    axes[0, 0].set_title(title, fontsize=10)
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

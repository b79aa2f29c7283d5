"""APU selection speed: the lazy heap (``apu_select``) against full re-scoring.

    python benchmarks/select_scaling.py           # every pool size
    python benchmarks/select_scaling.py --quick   # the small pools only

Pools of V videos x F frames with a smooth random U per frame (moving average of
gamma noise, so neighbouring frames look alike, as in real videos) and 1% of each
video's frames annotated at random (at least one), the paper's UCF101-24 start.
The budget is 5% of all frames unless the row says otherwise.

"brute force" is the paper's procedure done efficiently in numpy: after each pick
it recomputes S = lam U' + (1 - lam) D for every frame of the pool (one vectorised
pass, O(N) per pick) and takes the first argmax, which is the (video, frame)
tie-break. Where that would take more than about a minute it is timed on its first
picks and extrapolated (cost per pick is constant), marked "est.". Where it runs
fully, the two pick lists are compared. Both run in this process, side by side.
Prints a table and writes benchmarks/results/select_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from sparselabel.selection import apu_select
from sparselabel.selection.apu import proximity_table

RESULTS = Path(__file__).parent / "results" / "select_scaling.json"
BRUTE_FULL_LIMIT = 3e9  # N x B above which brute force is timed on a prefix and extrapolated
BRUTE_PREFIX = 300

# (videos, frames per video, budget as a fraction of all frames)
SIZES = [(100, 200, 0.05), (300, 200, 0.05), (1000, 200, 0.05), (3207, 180, 0.05), (10000, 100, 0.05)]
BUDGET_SWEEP = [(3207, 180, f) for f in (0.01, 0.05, 0.10, 0.20)]
QUICK = [(100, 200, 0.05), (300, 200, 0.05)]


def make_pool(videos: int, frames: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    kernel = np.ones(9) / 9
    uncertainty, annotated = {}, {}
    for k in range(videos):
        vid = f"video{k:05d}"
        noise = rng.gamma(2.0, 0.5, size=frames + 8)
        uncertainty[vid] = np.convolve(noise, kernel, mode="valid")[:frames]
        count = max(1, round(0.01 * frames))
        annotated[vid] = np.sort(rng.choice(frames, size=count, replace=False))
    return uncertainty, annotated


def brute_force(uncertainty: dict, annotated: dict, budget: int, lam: float = 0.5, sigma: float = 1.3,
                max_picks: int | None = None) -> tuple[list, int]:
    """Full re-scoring of the pool after every pick; returns (picks, picks made)."""
    ids = sorted(uncertainty)
    lengths = np.array([len(uncertainty[v]) for v in ids])
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    u = np.concatenate([uncertainty[v] for v in ids])
    frame = np.concatenate([np.arange(n) for n in lengths])
    video = np.repeat(np.arange(len(ids)), lengths)
    taken = np.zeros(len(u), dtype=bool)
    dist = np.full(len(u), np.inf)
    for k, v in enumerate(ids):
        for a in annotated.get(v, ()):
            taken[starts[k] + a] = True
    for k in range(len(ids)):
        marks = np.flatnonzero(taken[starts[k]: starts[k] + lengths[k]])
        for a in marks:
            seg = slice(starts[k], starts[k] + lengths[k])
            dist[seg] = np.minimum(dist[seg], np.abs(frame[seg] - a))
    free_u = u[~taken]
    lo, hi = free_u.min(), free_u.max()
    norm = (u - lo) / (hi - lo) if hi > lo else np.zeros_like(u)
    budget = min(budget, int((~taken).sum()))
    limit = budget if max_picks is None else min(budget, max_picks)
    picks = []
    for _ in range(limit):
        d = np.where(np.isfinite(dist), 1.0 - np.exp(-0.5 * (np.where(np.isfinite(dist), dist, 0) / sigma) ** 2), 1.0)
        s = lam * norm + (1 - lam) * d
        s[taken] = -np.inf
        best = int(np.argmax(s))
        picks.append((ids[video[best]], int(frame[best])))
        taken[best] = True
        k = video[best]
        seg = slice(starts[k], starts[k] + lengths[k])
        dist[seg] = np.minimum(dist[seg], np.abs(frame[seg] - frame[best]))
    return picks, limit


def measure(videos: int, frames: int, fraction: float, with_brute: bool) -> dict:
    uncertainty, annotated = make_pool(videos, frames)
    total = videos * frames
    budget = round(fraction * total)
    tick = time.perf_counter()
    heap = apu_select(uncertainty, annotated, budget).picks
    heap_s = time.perf_counter() - tick
    tick = time.perf_counter()
    local = apu_select(uncertainty, annotated, budget, local=True).picks
    local_s = time.perf_counter() - tick
    row = {"videos": videos, "frames_per_video": frames, "frames": total, "budget": budget,
           "heap_s": heap_s, "local_heap_s": local_s, "picks": len(heap), "local_picks": len(local)}
    if with_brute:
        full = total * budget <= BRUTE_FULL_LIMIT
        tick = time.perf_counter()
        picks, made = brute_force(uncertainty, annotated, budget, max_picks=None if full else BRUTE_PREFIX)
        elapsed = time.perf_counter() - tick
        row["brute_s"] = elapsed if full else elapsed * budget / made
        row["brute_estimated"] = not full
        row["same_picks"] = picks == heap if full else picks == heap[:made]
        row["speedup"] = row["brute_s"] / heap_s
    return row


def table(rows: list[dict]) -> str:
    head = (f"{'videos':>7} {'frames':>9} {'budget':>7} {'heap s':>8} {'local s':>8} "
            f"{'brute s':>12} {'speed-up':>9} {'same picks':>10}")
    lines = [head]
    for r in rows:
        brute = "-" if "brute_s" not in r else f"{r['brute_s']:.2f}" + (" est." if r["brute_estimated"] else "")
        speed = "-" if "speedup" not in r else f"{r['speedup']:.0f}x"
        same = "-" if "same_picks" not in r else ("yes" if r["same_picks"] else "NO")
        same += " (prefix)" if r.get("brute_estimated") else ""
        lines.append(f"{r['videos']:>7} {r['frames']:>9} {r['budget']:>7} {r['heap_s']:>8.3f} "
                     f"{r['local_heap_s']:>8.3f} {brute:>12} {speed:>9} {same:>10}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small pools only")
    parser.add_argument("--no-brute", action="store_true", help="time the heap only")
    args = parser.parse_args()
    proximity_table(10, 1.3)  # import and warm-up
    sizes = QUICK if args.quick else SIZES
    rows = [measure(v, f, b, not args.no_brute) for v, f, b in sizes]
    print("APU selection time as the pool grows (budget 5% of all frames)")
    print(table(rows))
    sweep = [] if args.quick else [measure(v, f, b, False) for v, f, b in BUDGET_SWEEP]
    if sweep:
        print("\nAs the budget grows (UCF101-24 scale, 3,207 videos x 180 frames)")
        print(table(sweep))
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "python": platform.python_version(), "numpy": np.__version__},
              "sizes": rows, "budget_sweep": sweep}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

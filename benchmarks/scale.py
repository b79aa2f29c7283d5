"""Scaling: peak memory and wall time of every step for pools of 100 to 3,207 videos (CPU).

    python benchmarks/scale.py                          # 100, 1,000 and 3,207 videos
    python benchmarks/scale.py --videos 100 600         # other sizes
    python benchmarks/scale.py --videos --select-frames 10000000 --metric-videos 3207
                                                        # selection and frame-mAP alone, synthetic inputs

The stand-in for a UCF101-24-sized pool is synthetic (``sparselabel synth --size 32 --frames
16 24``: thousands of small, short videos, generated in seconds), so only how cost grows
with the pool is measured here, not accuracy. Every step runs as its own ``sparselabel``
process, as a user runs it, and its peak resident memory is read from the kernel
(``wait4``'s ``ru_maxrss``: the whole process, Python, PyTorch and all).

Per pool size, two workspaces:

- "5%": ``init`` (5% of frames per video), ``train`` (set-up plus 20 steps), ``predict`` (every
  video), ``score`` (MC dropout over the pool, 2 passes), ``select`` (APU, 5%), ``evaluate``
  (f-mAP and v-mAP over the pool's videos);
- "100%": every frame annotated, ``train`` set-up plus 3 steps: the case whose memory used to
  grow with the pool (full-resolution targets of every video were built before the first step).

``--select-frames N`` times APU's global selection of 5% of N frames of random scores (pure
selection, in a process of its own, as ``select_scaling.py`` builds its pools).
``--metric-videos N`` times frame-mAP@0.5 over N UCF101-24-sized videos (175 frames, one
ground-truth box per frame, two jittered detections around each, as ``metrics_speed.py``
builds them): the "evaluate" rows above score a 20-step model that finds few boxes.

Prints the tables and writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sparselabel.jsonio import write_json

HERE = Path(__file__).parent
OUT = HERE / "results" / "scale"
RESULTS = HERE / "results" / "scale.json"
SETTINGS = ["model.input_size=[32,32]", "model.head=conv", "train.batch_size=8", "selection.passes=2",
            "seed=0"]
TARGET_RSS_MB = 3 * 1024


def measured(args: list[str]) -> dict:
    """Run ``sparselabel ARGS`` in a process of its own: wall seconds and peak RSS in MB."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "sparselabel", *args], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            err.seek(0)
            raise SystemExit(f"sparselabel {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024}


def pool_rows(videos: int) -> list[dict]:
    data = OUT / f"synth-{videos}v"
    rows = [{"videos": videos, "labels": "-", "step": "synth", **measured(
        ["synth", "--out", str(data), "--videos", str(videos), "--size", "32", "--frames", "16", "24"])}]
    sparse, full = OUT / f"ws-{videos}v-5pct", OUT / f"ws-{videos}v-100pct"
    for ws in (sparse, full):
        shutil.rmtree(ws, ignore_errors=True)  # scratch: every run measures a fresh init
    steps = [
        ("5%", "init", ["init", str(sparse), "--dataset", str(data), *SETTINGS, "labels.initial_percent=5",
                        "train.steps=20"]),
        ("5%", "train (set-up + 20 steps)", ["train", str(sparse)]),
        ("5%", "predict (every video)", ["predict", str(sparse), "--split", "all"]),
        ("5%", "score (2 passes)", ["score", str(sparse)]),
        ("5%", "select (APU, 5%)", ["select", str(sparse)]),
        ("5%", "evaluate (pool)", ["evaluate", str(sparse), "--split", "pool"]),
        ("100%", "init", ["init", str(full), "--dataset", str(data), *SETTINGS, "labels.initial_percent=100",
                          "train.steps=3"]),
        ("100%", "train (set-up + 3 steps)", ["train", str(full)]),
    ]
    for labels, step, args in steps:
        rows.append({"videos": videos, "labels": labels, "step": step, **measured(args)})
        print(f"{videos:>6} {labels:>5} {step:<28} {rows[-1]['wall_s']:8.1f} s {rows[-1]['rss_mb']:8.0f} MB",
              flush=True)
    return rows


SELECT_SCRIPT = """
import resource, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from select_scaling import make_pool
from sparselabel.selection import apu_select
uncertainty, annotated = make_pool({videos}, {frames})
start = time.perf_counter()
picks = apu_select(uncertainty, annotated, {budget}, lam=0.5, sigma=1.3).picks
wall = time.perf_counter() - start
assert len(picks) == {budget}
print(wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def select_row(frames_total: int, frames: int = 200) -> dict:
    """APU selection of 5% of ``frames_total`` frames (videos of ``frames`` frames), own process."""
    videos = frames_total // frames
    budget = frames_total // 20
    script = SELECT_SCRIPT.format(here=str(HERE), videos=videos, frames=frames, budget=budget)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    wall, rss = (float(x) for x in out.split())
    return {"frames": videos * frames, "videos": videos, "budget": budget, "select_s": wall, "rss_mb": rss}


def metric_row(videos: int, frames: int = 175) -> dict:
    """frame-mAP@0.5 (ACT convention) over ``videos`` videos of ``frames`` frames, in this process."""
    sys.path.insert(0, str(HERE))
    from metrics_speed import frame_case

    from sparselabel.evaluation import frame_map

    gt, dets, ids = frame_case(np.random.default_rng(0), videos=videos, frames=frames, classes=1)
    start = time.perf_counter()
    frame_map(gt, dets, ids)
    return {"videos": videos, "frames": videos * frames, "detections": len(dets),
            "frame_map_s": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    lines = [f"{'videos':>6} {'labels':>6}  {'step':<28} {'wall':>9} {'peak RSS':>10}", "-" * 64]
    lines += [f"{r['videos']:>6} {r['labels']:>6}  {r['step']:<28} {r['wall_s']:>7.1f} s {r['rss_mb']:>7.0f} MB"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, nargs="*", default=[100, 1000, 3207],
                        help="pool sizes (none: only the --select-frames / --metric-videos rows)")
    parser.add_argument("--select-frames", type=int, nargs="*", default=[],
                        help="also time APU selection of 5%% of this many frames (e.g. 10000000)")
    parser.add_argument("--metric-videos", type=int, nargs="*", default=[],
                        help="also time frame-mAP over this many UCF101-24-sized videos (e.g. 3207)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [row for videos in args.videos for row in pool_rows(videos)]
    selects = [select_row(n) for n in args.select_frames]
    metrics = [metric_row(n) for n in args.metric_videos]
    print("\n" + table(rows))
    over = [r for r in rows if r["rss_mb"] > TARGET_RSS_MB]
    print(f"\npeak RSS over {TARGET_RSS_MB} MB: {len(over)} of {len(rows)} steps")
    for s in selects:
        print(f"APU select {s['budget']:,} of {s['frames']:,} frames ({s['videos']:,} videos): "
              f"{s['select_s']:.1f} s, peak RSS {s['rss_mb']:.0f} MB (pool built in the same process)")
    for m in metrics:
        print(f"frame-mAP@0.5 over {m['videos']:,} videos ({m['frames']:,} frames, {m['detections']:,} "
              f"detections): {m['frame_map_s']:.1f} s")
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    write_json({"machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows or old.get("rows", []),
                "select": selects or old.get("select", []), "frame_map": metrics or old.get("frame_map", [])},
               RESULTS)


if __name__ == "__main__":
    main()

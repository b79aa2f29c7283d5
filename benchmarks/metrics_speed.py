"""Speed of the box metrics at dataset scale, both conventions.

    python benchmarks/metrics_speed.py

frame-mAP: 1,000 videos x 200 frames x 3 classes (one ground-truth box per frame and
class, two detections around each: 1.2M); video-mAP: 1,000 videos with 5 ground-truth and 20
detected tubes each. Target: each under 5 s on the project's CPU. Prints a table and
writes benchmarks/results/metrics_speed.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from sparselabel.evaluation import frame_map, video_map

RESULTS = Path(__file__).parent / "results" / "metrics_speed.json"


def jitter(rng: np.random.Generator, boxes: np.ndarray, scale: float) -> np.ndarray:
    return boxes + rng.normal(0, scale, boxes.shape)


def frame_case(rng: np.random.Generator, videos: int = 1000, frames: int = 200, classes: int = 3):
    """Ground truth and (N, 8) detections: 2 per ground-truth box (1.2M in all), jittered."""
    gttubes, dets = {}, []
    base = np.array([40.0, 30.0, 120.0, 150.0])
    for v in range(videos):
        gttubes[f"v{v}"] = {}
        for c in range(classes):
            boxes = base + rng.uniform(-20, 20, 4) + np.cumsum(rng.normal(0, 1, (frames, 4)), axis=0)
            gttubes[f"v{v}"][c] = [np.column_stack([np.arange(1, frames + 1), boxes])]
            for _ in range(2):
                noisy = jitter(rng, boxes, 8.0)
                dets.append(np.column_stack([np.full(frames, v), np.arange(1, frames + 1), np.full(frames, c),
                                             rng.random(frames), noisy]))
    return gttubes, np.concatenate(dets), [f"v{v}" for v in range(videos)]


def video_case(rng: np.random.Generator, videos: int = 1000, gt_tubes: int = 5, det_tubes: int = 20, classes: int = 3):
    gttubes, tube_dets = {}, {c: [] for c in range(classes)}
    for v in range(videos):
        gttubes[f"v{v}"] = {}
        tubes = []
        for _ in range(gt_tubes):
            c, start = int(rng.integers(classes)), int(rng.integers(1, 100))
            length = int(rng.integers(20, 100))
            boxes = np.array([40.0, 30.0, 120.0, 150.0]) + np.cumsum(rng.normal(0, 1, (length, 4)), axis=0)
            tube = np.column_stack([np.arange(start, start + length), boxes])
            gttubes[f"v{v}"].setdefault(c, []).append(tube)
            tubes.append((c, tube))
        for k in range(det_tubes):
            c, tube = tubes[k % gt_tubes]
            shift = int(rng.integers(-10, 10))
            det = np.column_stack([tube[:, 0] + shift, jitter(rng, tube[:, 1:], 6.0), rng.random(len(tube))])
            tube_dets[c].append((f"v{v}", float(rng.random()), det))
    return gttubes, tube_dets


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    rng = np.random.default_rng(0)
    gt_frames, frame_dets, videos = frame_case(rng)
    gt_tubes, tube_dets = video_case(rng)
    rows = []
    print(f"{'metric':<12} {'convention':<10} {'seconds':>8} {'mAP':>7}   size")
    for convention in ("act", "voc"):
        seconds, (m, _) = timed(lambda c=convention: frame_map(gt_frames, frame_dets, videos, 0.5, c))
        rows.append({"metric": "frame_map", "convention": convention, "seconds": seconds, "mAP": m,
                     "detections": len(frame_dets), "gt_boxes": 1000 * 200 * 3})
        seconds, (m, _) = timed(lambda c=convention: video_map(gt_tubes, tube_dets, 0.5, c))
        rows.append({"metric": "video_map", "convention": convention, "seconds": seconds, "mAP": m,
                     "gt_tubes": 5000, "det_tubes": 20000})
    for r in rows:
        size = (f"{r['detections']:,} detections, {r['gt_boxes']:,} gt boxes" if r["metric"] == "frame_map"
                else f"{r['det_tubes']:,} detected tubes, {r['gt_tubes']:,} gt tubes")
        print(f"{r['metric']:<12} {r['convention']:<10} {r['seconds']:>8.2f} {r['mAP']:>7.3f}   {size}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.machine(), "results": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

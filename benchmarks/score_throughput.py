"""MC-dropout scoring throughput (video frames/s) at T passes: full passes against the fast path.

    python benchmarks/score_throughput.py            # every variant for the device found
    python benchmarks/score_throughput.py --quick    # fewer videos

Variants, all scoring every frame of the same synthetic videos at T = 10:
  full, 1 clip      the released code's pattern: one clip at a time, T full forward passes
  full, batched     8 clips at a time, T full forward passes
  fast              8 clips at a time, the encoder once, ``decode_head`` T times in one batch
  fast bf16         the same under bf16 autocast (CUDA only)
On a GPU the model is the paper's I3D-capsule detector at 8 x 224 x 224; on a CPU the
small model at 8 x 96 x 96. "max |dU|" compares each variant's U with "full, batched 8"
with the same seed: the looped fast path draws exactly its dropout masks, so U must
agree to float precision; one clip at a time or batched passes draw other masks,
so those differ by MC noise, not by method. Prints a
table and writes benchmarks/results/score_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sparselabel.data.dataset import Video
from sparselabel.data.windows import window_batches
from sparselabel.models import build_detector
from sparselabel.scoring.mc_dropout import frame_stats, per_video_seed, score_video
from sparselabel.train.clips import ClipSpec

RESULTS = Path(__file__).parent / "results" / "score_throughput.json"


@torch.no_grad()
def full_pass_uncertainty(model, video: Video, spec: ClipSpec, device, passes: int, batch_size: int,
                          seed: int = 0) -> np.ndarray:
    """U by T complete forward passes per window batch (no encoder reuse)."""
    u = np.zeros(video.num_frames)
    model.mc_dropout(True)
    torch.manual_seed(per_video_seed(seed, video.id))
    for clips, windows in window_batches(video, spec, batch_size):
        clips = clips.to(device)
        logits = torch.stack([model(clips).fg_logits for _ in range(passes)])
        values = frame_stats(logits.flatten(1, 2), 0.9)[0].double().cpu().numpy().reshape(len(windows), -1)
        for k, window in enumerate(windows):
            real = np.r_[True, window[1:] != window[:-1]]
            u[window[real]] = values[k, real]
    model.eval()
    return u


def videos(root: Path, count: int) -> list[Video]:
    from sparselabel.data import load_dataset
    from sparselabel.data.synthetic import SynthConfig, generate

    data = generate(root, num_videos=count, seed=0, config=SynthConfig(width=160, height=120, min_frames=64, max_frames=64))
    return list(load_dataset("native", data).videos.values())


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer videos (a smoke test)")
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    encoder, size = ("i3d", 224) if cuda else ("small3d", 96)
    model = build_detector(encoder, num_classes=24, pretrained=False).to(device).eval()
    spec = ClipSpec(length=8, stride=2, size=(size, size))
    with tempfile.TemporaryDirectory() as tmp:
        pool = videos(Path(tmp) / "data", 2 if args.quick else (8 if cuda else 3))
        for v in pool:
            v.frames()  # decode once, outside the timings
        frames = sum(v.num_frames for v in pool)
        score_video(model, pool[0], spec, device, passes=2, batch_size=8)  # warm-up (cuDNN autotune)
        variants = {
            "full, 1 clip": lambda v: full_pass_uncertainty(model, v, spec, device, args.passes, 1),
            "full, batched 8": lambda v: full_pass_uncertainty(model, v, spec, device, args.passes, 8),
            "fast, looped passes": lambda v: score_video(model, v, spec, device, args.passes, batch_size=8,
                                                         pass_chunk=1).uncertainty,
            "fast, batched passes": lambda v: score_video(model, v, spec, device, args.passes, batch_size=8).uncertainty,
        }
        if cuda:
            variants["fast, batched passes, bf16"] = lambda v: score_video(model, v, spec, device, args.passes,
                                                                           batch_size=8, bf16=True).uncertainty
        reference, rows = None, []
        print(f"{'variant':<30} {'frames/s':>10} {'speed-up':>9} {'max |dU|':>10}")
        for name, run in variants.items():
            seconds, us = timed(lambda run=run: [run(v) for v in pool])
            us = np.concatenate(us)
            if name == "full, batched 8":
                reference = us
            rows.append({"variant": name, "frames_per_s": frames / seconds, "seconds": seconds,
                         "max_abs_du": None if reference is None else float(np.abs(us - reference).max())})
            base = rows[0]["frames_per_s"]
            r = rows[-1]
            du = "-" if r["max_abs_du"] is None else f"{r['max_abs_du']:.2e}"
            print(f"{name:<30} {r['frames_per_s']:>10.1f} {r['frames_per_s'] / base:>8.1f}x {du:>10}")
    info = {"device": torch.cuda.get_device_name() if cuda else platform.machine(), "model": encoder,
            "input": f"8x{size}x{size}", "passes": args.passes, "video_frames": frames, "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "results": rows}, indent=1))
    print(f"\n{info}\nwrote {args.out}")


if __name__ == "__main__":
    main()

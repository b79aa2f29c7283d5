"""Training throughput (clips/s, data loading included) and peak memory of the detector.

    python benchmarks/train_throughput.py            # every variant for the device found
    python benchmarks/train_throughput.py --quick    # fewer steps

On a GPU: the paper's I3D-capsule model at batch 8 x 8 x 224 x 224, step by step
(fp32, bf16 autocast, + channels-last 3D, + torch.compile, + DataLoader
workers), and the small model. On a CPU: the small model at 8 x 96 x 96 and
the I3D-capsule model at a reduced size. On both, the frozen encoder reading its
feature cache (computed before the first step, not counted) against the same model
fine-tuned whole. Each variant runs in its own process
through the real trainer (``sparselabel.train.trainer.train``) on a synthetic
workspace, so clips/s counts decoding, augmentation and the optimiser step;
the first steps (compilation, cuDNN autotuning) are excluded. Prints a table
and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sparselabel.demo import DEMO_SETTINGS

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"

GPU_I3D = ["model.encoder=i3d", "model.pretrained=false", "model.input_size=[224,224]", "train.batch_size=8"]
# The demo's model and training recipe (its step count comes from here), in both memory layouts.
DEMO_MODEL = [s for s in DEMO_SETTINGS if s.startswith(("model.", "train.")) and not s.startswith("train.steps=")]
CPU_I3D_CONV = ["model.encoder=i3d", "model.pretrained=true", "model.head=conv", "model.input_size=[112,112]",
                "train.batch_size=2"]
VARIANTS = {
    "cuda": [
        ("i3d fp32", GPU_I3D + ["train.bf16=false"]),
        ("i3d bf16", GPU_I3D + ["train.bf16=true"]),
        ("i3d bf16 + channels-last", GPU_I3D + ["train.bf16=true", "train.channels_last=true"]),
        ("i3d bf16 + channels-last + compile", GPU_I3D + ["train.bf16=true", "train.channels_last=true", "train.compile=true"]),
        ("i3d bf16 + channels-last + compile + 8 workers", GPU_I3D + ["train.bf16=true", "train.channels_last=true",
                                                                       "train.compile=true", "train.num_workers=8"]),
        ("small3d bf16 96px", ["model.encoder=small3d", "model.input_size=[96,96]", "train.batch_size=8", "train.num_workers=8"]),
        ("i3d bf16 frozen encoder + feature cache", GPU_I3D + ["train.bf16=true", "model.freeze_encoder=true"]),
    ],
    "cpu": [
        ("small3d fp32 96px", ["model.encoder=small3d", "model.input_size=[96,96]", "train.batch_size=8"]),
        ("demo recipe (small3d 64px, conv head, motion input)", DEMO_MODEL),
        ("demo recipe + channels-last", DEMO_MODEL + ["train.channels_last=true"]),
        ("i3d fp32 reduced (batch 2, 8x112x112)", ["model.encoder=i3d", "model.pretrained=false",
                                                   "model.input_size=[112,112]", "train.batch_size=2"]),
        # Frozen against full fine-tuning: the same model (Kinetics I3D + conv head), input and batch.
        ("i3d conv head, full fine-tuning (batch 2, 112px)", CPU_I3D_CONV),
        ("i3d conv head, frozen + feature cache (batch 2, 112px)", CPU_I3D_CONV + ["model.freeze_encoder=true"]),
    ],
}


def make_workspace(root: Path) -> Path:
    """A synthetic pool with 10% of frames labelled (the clips the trainer samples)."""
    from sparselabel.config import load_config
    from sparselabel.data.synthetic import SynthConfig, generate
    from sparselabel.loop.workspace import Workspace

    data = generate(root / "data", num_videos=16, seed=0, config=SynthConfig(width=160, height=120))
    Workspace.create(root / "ws", load_config(None, [f"dataset.path={data}", "labels.initial_percent=10"])).close()
    return root / "ws"


def run_variant(workspace: Path, overrides: list[str], warmup: int, steps: int) -> dict:
    """Train ``warmup + steps`` steps in this process; clips/s over the last ``steps``."""
    from sparselabel.loop.workspace import Workspace
    from sparselabel.train.trainer import METRICS, train_workspace

    ws = Workspace.open(workspace, [f"train.steps={warmup + steps}", "train.checkpoint_every=100000", *overrides])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = train_workspace(ws, run_name=f"bench-{time.time_ns()}", restart=True)
    log = [json.loads(line) for line in (result.run_dir / METRICS).read_text().splitlines()][warmup:]
    seconds = sum(ws.config.train.batch_size / m["clips_per_s"] for m in log)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"clips_per_s": len(log) * ws.config.train.batch_size / seconds, "peak_memory_gib": peak / 2**30,
            "measured_steps": len(log), "overrides": overrides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write (default: %(default)s)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    warmup, steps = (2, 3) if args.quick else ((10, 40) if device == "cuda" else (3, 10))
    if args.variant is not None:
        overrides = dict(VARIANTS[device])[args.variant]
        print(json.dumps(run_variant(Path(args.workspace), overrides, warmup, steps)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace = make_workspace(Path(tmp))
        print(f"{'variant':<50} {'clips/s':>9} {'peak GiB':>9}")
        for name, _ in VARIANTS[device]:
            done = subprocess.run([sys.executable, __file__, "--variant", name, "--workspace", str(workspace)]
                                  + (["--quick"] if args.quick else []), capture_output=True, text=True)
            if done.returncode != 0:
                rows.append({"variant": name, "error": done.stderr.strip().splitlines()[-1]})
            else:
                rows.append({"variant": name, **json.loads(done.stdout.strip().splitlines()[-1])})
            print_row(rows[-1])
    info = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "warmup_steps": warmup}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "results": rows}, indent=1))
    print(f"\n{info}\nwrote {args.out}")


def print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['variant']:<50} failed: {row['error']}")
    else:
        print(f"{row['variant']:<50} {row['clips_per_s']:>9.2f} {row['peak_memory_gib']:>9.2f}")


if __name__ == "__main__":
    main()

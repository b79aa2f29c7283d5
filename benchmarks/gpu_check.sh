#!/usr/bin/env bash
# Everything issue 12 asks of a GPU, in one call of at most 8 minutes (run from the repo root):
#   training throughput of the I3D model at 8 x 224 x 224 (fp32, bf16, channels-last, compile,
#   workers, frozen encoder + feature cache: clips/s and GPU memory), MC-dropout scoring
#   throughput at T = 10, and a short UCF101-24 loop with full fine-tuning.
# Each part has its own time limit, so one slow part cannot take the others' time; results
# go to benchmarks/results/ (and $OUT when the device tool sets it), then into RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
$PY -m sparselabel weights fetch i3d-kinetics400 || true
timeout 200 $PY benchmarks/train_throughput.py
timeout 90 $PY benchmarks/score_throughput.py
timeout 160 $PY benchmarks/ucf24_loop.py --short
if [ -n "${OUT:-}" ]; then
    cp benchmarks/results/train_throughput.json benchmarks/results/score_throughput.json "$OUT"/ 2>/dev/null
    cp -r benchmarks/results/ucf24-strategies-short benchmarks/results/ucf24-full-short "$OUT"/ 2>/dev/null
fi
true

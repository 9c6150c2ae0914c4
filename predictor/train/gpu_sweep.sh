#!/bin/bash
# Device call 1: unpack the staged corpus part(s) and train every size for a
# short, equal time, so the sizes can be compared (README: "Sizes tried").
# Usage (repository root on the GPU machine): bash DIR/gpu_sweep.sh DIR SECONDS CONFIGS...
set -euo pipefail
export PYTHONUNBUFFERED=1
dir=$1; secs=$2; shift 2
bash "$dir/gpu_unpack.sh" "$dir"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for c in "$@"; do
  python3 "$dir/train.py" train --cfg "$c" --data /tmp/lmdata --ckpt "/tmp/lmck_$c.pt" --seconds "$secs" --budget "$secs" --val-bytes 16777216
  mkdir -p "$OUT/sweep"
  python3 "$dir/train.py" export --ckpt "/tmp/lmck_$c.pt" --model "/tmp/lm_$c.lmm" --data /tmp/lmdata --val-bytes 16777216
  sz=$(stat -c %s "/tmp/lm_$c.lmm")
  if [ "$sz" -lt 16000000 ]; then cp "/tmp/lm_$c.lmm" "$OUT/sweep/"; fi
done

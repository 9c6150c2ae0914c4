#!/bin/bash
# Device call 2: train the chosen size on every staged part, export the model
# file, the test vectors and the validation figures into $OUT.
# Usage: bash DIR/gpu_main.sh DIR CONFIG SECONDS [BUDGET]
set -euo pipefail
export PYTHONUNBUFFERED=1
dir=$1; cfg=$2; secs=$3; budget=${4:-$3}
bash "$dir/gpu_unpack.sh" "$dir"
python3 "$dir/train.py" train --cfg "$cfg" --data /tmp/lmdata --ckpt "/tmp/lmmain_$cfg.pt" --seconds "$secs" --budget "$budget" --val-bytes 16777216 2>&1 | tee "$OUT/train.log"
python3 "$dir/train.py" export --ckpt "/tmp/lmmain_$cfg.pt" --model "$OUT/default.lmm" --vectors "$OUT/vectors.json" --data /tmp/lmdata --val-bytes 16777216 --per-kind 2>&1 | tee "$OUT/export.log"

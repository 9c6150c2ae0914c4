#!/bin/bash
# Device call: unpack the carried corpus part, train several lstm1 sizes side by
# side (MPS lets their kernels share the GPU), export each, evaluate on val.
# Usage: bash DIR/gpu_lstm.sh DIR SECONDS CFG...
set -uo pipefail
export PYTHONUNBUFFERED=1
dir=$1; secs=$2; shift 2
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS started" || echo "no MPS"
bash "$dir/gpu_unpack.sh" "$dir" > "$OUT/unpack.log" 2>&1
mkdir -p /tmp/lstm
cd "$dir"
for c in "$@"; do
  ( python3 lstm.py train --cfg "$c" --data /tmp/lmdata --ckpt "/tmp/lstm/$c.pt" --seconds "$secs" > "/tmp/lstm/$c.train.log" 2>&1
    python3 -c "import torch,sys; s=torch.load('/tmp/lstm/$c.pt'); torch.save({'net': s['net'], 'cfg': s['cfg'], 'step': s['step'], 'elapsed': s['elapsed']}, '$OUT/$c.net.pt')"
    python3 lstm.py export --ckpt "/tmp/lstm/$c.pt" --model "$OUT/$c.lmm" --vectors "/tmp/lstm/$c.vectors.json" --data /tmp/lmdata --val-bytes ${VALBYTES:-1073741824} > "/tmp/lstm/$c.export.log" 2>&1 ) &
done
while [ -n "$(jobs -r)" ]; do sleep 20; tail -qn1 /tmp/lstm/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done
wait
cp /tmp/lstm/*.log /tmp/lstm/*.json "$OUT/unpack.log" /tmp/ 2>/dev/null
tar -C /tmp/lstm -cf "$OUT/logs.tar" $(cd /tmp/lstm && ls *.log *.json)
tail -n 30 /tmp/lstm/*.log

#!/bin/bash
# Device call: continue lstm1 runs from earlier weights (warm restart) on the
# corpus already unpacked in /tmp/lmdata (gpu_unpack.sh, earlier calls), side by
# side under MPS; export each. Usage: bash DIR/gpu_cont.sh DIR SECONDS NAME:CFG:LR:INIT...
set -uo pipefail
export PYTHONUNBUFFERED=1
dir=$1; secs=$2; shift 2
ls -l /tmp/lmdata /tmp/lmdata/parts || { echo "no corpus in /tmp/lmdata: the machine was not warm"; exit 3; }
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS started" || echo "no MPS"
mkdir -p /tmp/lstm
cd "$dir"
for spec in "$@"; do
  IFS=: read -r n c lr init <<<"$spec"
  ( python3 lstm.py train --cfg "$c" --data /tmp/lmdata --ckpt "/tmp/lstm/$n.pt" --seconds "$secs" --lr "$lr" --init "$init" > "/tmp/lstm/$n.train.log" 2>&1
    python3 -c "import torch,sys; s=torch.load('/tmp/lstm/$n.pt'); torch.save({'net': s['net'], 'cfg': s['cfg'], 'step': s['step'], 'elapsed': s['elapsed']}, '$OUT/$n.net.pt')"
    python3 lstm.py export --ckpt "/tmp/lstm/$n.pt" --model "$OUT/$n.lmm" --vectors "/tmp/lstm/$n.vectors.json" --data /tmp/lmdata > "/tmp/lstm/$n.export.log" 2>&1 ) &
done
while [ -n "$(jobs -r)" ]; do sleep 30; tail -qn1 /tmp/lstm/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done
wait
tar -C /tmp/lstm -cf "$OUT/logs.tar" $(cd /tmp/lstm && ls *.log *.json)
tail -n 25 /tmp/lstm/*.export.log

#!/bin/bash
# Device call (predictor/train/README.md, section 2c): train the lstm2 model m2x from m2d (warm start, the match input
# from zero) on the strided corpus sample, export it with vectors and
# validation figures. Usage: bash gpu_lstm2.sh SECONDS (from the folder staged as in README 2c)
set -uo pipefail
export PYTHONUNBUFFERED=1
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-240}
mkdir -p /tmp/mxdata /tmp/m2x
xz -T8 -dc "$here/train2.bin.xz" > /tmp/mxdata/train.bin && xz -dc "$here/val.bin.xz" > /tmp/mxdata/val.bin && cp "$here/val_index.tsv" /tmp/mxdata/ || exit 2
[ -f "$here/m2d.net.pt" ] || xz -dk "$here/m2d.net.pt.xz"
ls -l /tmp/mxdata
cd "$here/../../predictor/train"
timeout $((secs + 60)) python3 lstm.py train --cfg m2x --data /tmp/mxdata --ckpt /tmp/m2x/m2x.pt --seconds "$secs" --lr 5e-4 --init "$here/m2d.net.pt" > "$OUT/train.log" 2>&1
echo "train rc $?"; grep -v " step " "$OUT/train.log" | tail -5; grep " step " "$OUT/train.log" | tail -3
python3 -c "import torch; s=torch.load('/tmp/m2x/m2x.pt'); torch.save({'net': s['net'], 'cfg': s['cfg'], 'step': s['step'], 'elapsed': s['elapsed']}, '$OUT/m2x.net.pt')"
timeout 240 python3 lstm.py export --ckpt /tmp/m2x/m2x.pt --model "$OUT/m2x.lmm" --vectors "$OUT/vectors_lstm2.json" --data /tmp/mxdata > "$OUT/export.log" 2>&1
echo "export rc $?"; cat "$OUT/export.log"
ls -l "$OUT"

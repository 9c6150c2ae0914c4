#!/bin/bash
# Unpacks the corpus parts carried in DIR (train part files trainA.bin.xz,
# trainB.bin.xz, ... and val.bin.xz) into /tmp/lmdata, keeping parts unpacked
# by an earlier call while the machine stayed warm. train.bin is the
# concatenation of every part present (order does not matter for training:
# windows are drawn at random).
set -euo pipefail
dir=$1
mkdir -p /tmp/lmdata/parts
for f in "$dir"/*.bin.xz; do
  b=$(basename "$f" .xz)
  if [ "$b" = val.bin ]; then
    [ -s /tmp/lmdata/val.bin ] || xz -dc "$f" > /tmp/lmdata/val.bin
  else
    [ -s "/tmp/lmdata/parts/$b" ] || xz -T0 -dc "$f" > "/tmp/lmdata/parts/$b"
  fi
done
[ -f "$dir/val_index.tsv" ] && cp "$dir/val_index.tsv" /tmp/lmdata/
cat /tmp/lmdata/parts/*.bin > /tmp/lmdata/train.bin
ls -l /tmp/lmdata /tmp/lmdata/parts

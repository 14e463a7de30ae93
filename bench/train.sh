#!/usr/bin/env bash
# train.sh — one training step of `longcat train` vs the PyTorch implementation of the same
# model (bench/train_step_torch.py, Debian python3-torch on OpenBLAS/OpenMP), same checkpoint,
# same batch shape, same thread count, same machine; prints tokens/s and the ratio C / PyTorch.
# Run: make bench-train   (installs python3-torch and libopenblas0-openmp when root)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-openmp >/dev/null
  else echo "bench-train: needs python3-torch (sudo apt-get install python3-torch libopenblas0-openmp)"; exit 1; fi
fi
# PyTorch and longcat both on the OpenMP build of OpenBLAS (libopenblas0-openmp), as the guide asks
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
OUT=build/bench-train
mkdir -p $OUT
# C runs twice: with its default losses (next-token + MTP head + z-loss + LB loss, more work than
# the PyTorch step) and with only the next-token loss, as the PyTorch step computes.
printf "%-8s %-10s %12s %12s %12s %8s %8s\n" preset "batch x T" "C tok/s" "C same-loss" "torch tok/s" "C/torch" "same/torch"
for spec in "tiny 8 64" "small 4 64"; do
  set -- $spec
  preset=$1 batch=$2 T=$3
  rm -rf $OUT/$preset
  # 16 steps, the first 4 (buffers growing, pages faulting in) left out of the median
  median() { awk -F, 'NR > 5 { print $6 }' $1 | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
  OMP_NUM_THREADS=$THREADS ./longcat train --preset $preset --steps 16 --batch $batch --seq-len $T --warmup 1 \
    --eval-every 1000 --eval-windows 1 --out $OUT/$preset -q >/dev/null
  c=$(median $OUT/$preset/metrics.csv)
  rm -rf $OUT/$preset-lm
  OMP_NUM_THREADS=$THREADS ./longcat train --preset $preset --steps 16 --batch $batch --seq-len $T --warmup 1 \
    --mtp-weight 0 --z-loss 0 --lb-alpha 0 --eval-every 1000 --eval-windows 1 --out $OUT/$preset-lm -q >/dev/null
  c2=$(median $OUT/$preset-lm/metrics.csv)
  t=$(/usr/bin/python3 bench/train_step_torch.py $OUT/$preset --batch $batch --seq-len $T --steps 12 --threads $THREADS)
  python3 - "$preset" "$batch x $T" "$c" "$c2" "$t" <<'PY'
import json, sys
p, shape, c, c2, t = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
print("%-8s %-10s %12.0f %12.0f %12.0f %8.2f %8.2f   (torch %s, %d threads)" % (p, shape, c, c2, t["tok_s"], c / t["tok_s"],
      c2 / t["tok_s"], t["torch"], t["threads"]))
PY
done

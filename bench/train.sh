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
ROUNDS=${ROUNDS:-3}
mkdir -p $OUT
# C runs twice: with its default losses (next-token + MTP head + z-loss + LB loss, more work than
# the PyTorch step) and with only the next-token loss, as the PyTorch step computes. The machine is
# shared and its speed drifts by tens of percent within a minute, so each preset runs ROUNDS rounds
# of (C, C same-loss, PyTorch) back to back; the ratios printed are the medians of the per-round
# ratios, with their range.
median() { awk -F, 'NR > 5 { print $6 }' $1 | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
printf "%-8s %-10s %10s %12s %12s %17s %17s\n" preset "batch x T" "C tok/s" "C same-loss" "torch tok/s" "C/torch" "same/torch"
for spec in "tiny 8 64" "small 4 64"; do
  set -- $spec
  preset=$1 batch=$2 T=$3
  rounds=""
  for r in $(seq $ROUNDS); do
    # 16 steps, the first 4 (buffers growing, pages faulting in) left out of the median
    rm -rf $OUT/$preset
    OMP_NUM_THREADS=$THREADS ./longcat train --preset $preset --steps 16 --batch $batch --seq-len $T --warmup 1 \
      --eval-every 1000 --eval-windows 1 --out $OUT/$preset -q >/dev/null
    rm -rf $OUT/$preset-lm
    OMP_NUM_THREADS=$THREADS ./longcat train --preset $preset --steps 16 --batch $batch --seq-len $T --warmup 1 \
      --mtp-weight 0 --z-loss 0 --lb-alpha 0 --eval-every 1000 --eval-windows 1 --out $OUT/$preset-lm -q >/dev/null
    t=$(/usr/bin/python3 bench/train_step_torch.py $OUT/$preset --batch $batch --seq-len $T --steps 12 --threads $THREADS)
    rounds="$rounds $(median $OUT/$preset/metrics.csv),$(median $OUT/$preset-lm/metrics.csv),$(echo "$t" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tok_s"])')"
    torch_ver=$(echo "$t" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["torch"], d["threads"])')
  done
  python3 - "$preset" "$batch x $T" "$torch_ver" $rounds <<'PY'
import statistics, sys
p, shape, tv = sys.argv[1], sys.argv[2], sys.argv[3].split()
r = [tuple(map(float, x.split(","))) for x in sys.argv[4:]]
med = lambda v: statistics.median(v)
a, b = [c / t for c, _, t in r], [c2 / t for _, c2, t in r]
span = lambda v: "%.2f (%.2f-%.2f)" % (med(v), min(v), max(v))
print("%-8s %-10s %10.0f %12.0f %12.0f %17s %17s   (torch %s, %s threads, %d rounds)" % (p, shape, med([x[0] for x in r]),
      med([x[1] for x in r]), med([x[2] for x in r]), span(a), span(b), tv[0], tv[1], len(r)))
PY
done

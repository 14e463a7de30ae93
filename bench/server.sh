#!/usr/bin/env bash
# server.sh — load test of `longcat serve` (make bench-server). Serves one model twice, with
# --parallel 1 (requests one at a time) and --parallel P (continuous batching), sends the same
# load to both, and prints throughput, latency percentiles and the batched/serial ratio, all
# measured in this run. Model: $MODEL, or a random `small` checkpoint (+ a tokenizer trained
# on the bundled corpus) cached in build/bench-server-small.
set -euo pipefail
cd "$(dirname "$0")/.."
P=${P:-8}; CONC=${CONC:-8}; REQS=${REQS:-32}; MAXT=${MAXT:-64}
MODEL=${MODEL:-build/bench-server-small}
if [ ! -f "$MODEL/config.json" ]; then
  ./longcat init --preset small --dtype bf16 --seed 1 "$MODEL" >/dev/null
  ./longcat tokenizer train --vocab 4096 data/tinyshakespeare.txt -o "$MODEL" >/dev/null
fi
NPM=build/npm
[ -d "$NPM/node_modules" ] || make --no-print-directory npm-deps >/dev/null
cp bench/server_load.mjs "$NPM/"
run() { # $1 = --parallel value
  local log; log=$(mktemp)
  ./longcat serve "$MODEL" --port 0 --parallel "$1" --queue 256 --alias bench 2>"$log" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  local port; port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  node "$NPM/server_load.mjs" "http://127.0.0.1:$port/v1" bench "$CONC" "$REQS" "$MAXT"
  kill -TERM $pid; wait $pid; rm -f "$log"
}
echo "model: $MODEL ($(du -sh "$MODEL" | cut -f1)), $CONC clients, $REQS requests x $MAXT tokens, $(nproc) cores"
serial=$(run 1); echo "parallel 1:  $serial"
batched=$(run "$P"); echo "parallel $P:  $batched"
node -e "const a=JSON.parse(process.argv[1]), b=JSON.parse(process.argv[2]);
console.log('batched / serial throughput: ' + (b.tokens_per_s / a.tokens_per_s).toFixed(2) + 'x; p50 latency ' +
  a.latency_p50 + ' s -> ' + b.latency_p50 + ' s')" "$serial" "$batched"

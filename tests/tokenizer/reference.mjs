// reference.mjs — encodes each string of a JSON corpus with Hugging Face's tokenizers.js
// (the reference the C tokenizer is compared against) and prints one JSON line per string:
// {"ids": [...], "ids_special": [...], "decoded": "..."}. Also times encoding for the bench.
// usage: node reference.mjs TOKENIZER_DIR CORPUS.json [--bench FILE]
import { Tokenizer } from "@huggingface/tokenizers";
import { readFileSync } from "node:fs";

const [dir, corpusPath, flag, benchFile] = process.argv.slice(2);
const tj = JSON.parse(readFileSync(`${dir}/tokenizer.json`, "utf8"));
let tc = {};
try { tc = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, "utf8")); } catch { /* optional */ }
const tok = new Tokenizer(tj, tc);
if (flag === "--bench") {
  const text = readFileSync(benchFile, "utf8");
  const bytes = Buffer.byteLength(text, "utf8");
  tok.encode(text.slice(0, 10000), { add_special_tokens: false }); // warm up
  let best = Infinity, n = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    n = tok.encode(text, { add_special_tokens: false }).ids.length;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  console.log(JSON.stringify({ bytes, tokens: n, seconds: best, mb_s: bytes / best / 1e6 }));
} else {
  const corpus = JSON.parse(readFileSync(corpusPath, "utf8"));
  // every string, then the whole corpus joined by newlines
  for (const s of [...corpus, corpus.join("\n")]) {
    const ids = tok.encode(s, { add_special_tokens: false }).ids;
    const ids_special = tok.encode(s, { add_special_tokens: true }).ids;
    const decoded = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
    console.log(JSON.stringify({ ids, ids_special, decoded }));
  }
}

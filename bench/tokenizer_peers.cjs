// tokenizer_peers.cjs — encoding speed of Hugging Face's Rust tokenizers (npm `tokenizers`,
// prebuilt native binary, parallelism off) and tokenizers.js on the same text as
// bench_tokenize. usage: node tokenizer_peers.cjs TOKENIZER_DIR TEXT_FILE [--lines]
const fs = require("fs");
const path = require("path");
process.env.TOKENIZERS_PARALLELISM = "false";
const { Tokenizer: RustTokenizer } = require("tokenizers");

async function main() {
  const [dir, file, mode] = process.argv.slice(2);
  const text = fs.readFileSync(file, "utf8");
  const bytes = Buffer.byteLength(text, "utf8");
  const docs = mode === "--lines" ? text.split(/(?<=\n)/) : [text];
  const out = {};
  const rust = RustTokenizer.fromFile(path.join(dir, "tokenizer.json"));
  let best = Infinity, n = 0;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    const enc = docs.length === 1 ? [await rust.encode(docs[0], null, { addSpecialTokens: false })]
                                  : await rust.encodeBatch(docs, { addSpecialTokens: false });
    n = enc.reduce((a, e) => a + e.getIds().length, 0);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  out.rust = { tokens: n, seconds: best, mb_s: bytes / best / 1e6 };
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const tj = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  let tc = {};
  try { tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")); } catch {}
  const js = new Tokenizer(tj, tc);
  best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    n = 0;
    for (const d of docs) n += js.encode(d, { add_special_tokens: false }).ids.length;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  out.js = { tokens: n, seconds: best, mb_s: bytes / best / 1e6 };
  console.log(JSON.stringify(out));
}
main();

// server_load.mjs — a bounded load test for `longcat serve` (benchmark, not a test).
// usage: node server_load.mjs BASE_URL MODEL CONCURRENCY REQUESTS MAX_TOKENS
// CONCURRENCY clients each send streaming /v1/completions requests (greedy, ignore_eos, so
// every request generates MAX_TOKENS tokens) until REQUESTS are done. Prints one JSON line:
// generated tokens/s over the whole run, requests/s, and latency / time-to-first-token
// percentiles in seconds.
const [baseURL, model, conc, total, maxTokens] = process.argv.slice(2);
const C = Number(conc), N = Number(total), M = Number(maxTokens);
const prompts = ['ROMEO:', 'JULIET:', 'First Citizen:', 'KING HENRY:', 'To be, or not', 'O Romeo', 'MENENIUS:', 'Now is the'];

async function one(i) {
  const t0 = performance.now();
  const res = await fetch(`${baseURL}/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: prompts[i % prompts.length], max_tokens: M, temperature: 0, ignore_eos: true,
      stream: true, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  let ttft = null, tokens = 0, buf = '';
  const dec = new TextDecoder();
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k); buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (ttft === null && j.choices?.[0]?.text) ttft = (performance.now() - t0) / 1000;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return { latency: (performance.now() - t0) / 1000, ttft: ttft ?? (performance.now() - t0) / 1000, tokens };
}

const results = [];
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async () => {
  while (next < N) results.push(await one(next++));
}));
const wall = (performance.now() - t0) / 1000;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const lat = results.map(r => r.latency), ttft = results.map(r => r.ttft);
const tokens = results.reduce((a, r) => a + r.tokens, 0);
console.log(JSON.stringify({
  concurrency: C, requests: N, max_tokens: M, wall_s: +wall.toFixed(3), tokens,
  tokens_per_s: +(tokens / wall).toFixed(1), requests_per_s: +(N / wall).toFixed(2),
  latency_p50: +pct(lat, 0.5).toFixed(3), latency_p90: +pct(lat, 0.9).toFixed(3), latency_p99: +pct(lat, 0.99).toFixed(3),
  ttft_p50: +pct(ttft, 0.5).toFixed(3), ttft_p90: +pct(ttft, 0.9).toFixed(3),
}));

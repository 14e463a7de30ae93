// client.mjs — drives `longcat serve` with the official OpenAI npm client (tests/test_server.c
// starts the server on a model trained to answer the conversations in test_server.c).
// usage: node client.mjs BASE_URL API_KEY MODEL_ID
// Prints "ok NAME" or "FAIL NAME: why" per check; exits 1 if any failed.
import OpenAI from 'openai';

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120000 });
let failed = 0;

function eq(a, b, what) {
  const sa = JSON.stringify(a), sb = JSON.stringify(b);
  if (sa !== sb) throw new Error(`${what}: got ${sa}, want ${sb}`);
}
function ok(cond, what) { if (!cond) throw new Error(what); }
async function check(name, fn) {
  try { await fn(); console.log(`ok ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`); }
}

const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Current weather of a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const HELLO = [{ role: 'user', content: 'Say hello.' }];
const STORY = [{ role: 'user', content: 'Tell me a story.' }];
const PARIS = [{ role: 'user', content: 'What is the weather in Paris?' }];
const HELLO_ANSWER = 'Hello! How can I help you today?';
const STORY_ANSWER = 'Once upon a time, a small cat found a long road and walked it to the sea.';

async function collect(stream) {
  let content = '', role = null, finish = null, usage = null, chunks = 0;
  const calls = [];
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) content += c.delta.content;
      for (const tc of c.delta.tool_calls || []) {
        const cur = calls[tc.index] || (calls[tc.index] = { id: '', name: '', arguments: '' });
        if (tc.id) cur.id = tc.id;
        if (tc.function?.name) cur.name += tc.function.name;
        if (tc.function?.arguments) cur.arguments += tc.function.arguments;
      }
    } else if (c.text) content += c.text;
    if (c.finish_reason) finish = c.finish_reason;
  }
  return { content, role, finish, usage, calls, chunks };
}

async function expectError(fn, status, what) {
  try { await fn(); } catch (e) {
    ok(e instanceof OpenAI.APIError, `${what}: not an APIError: ${e}`);
    eq(e.status, status, `${what}: status`);
    ok(e.error && typeof e.error.message === 'string', `${what}: error object has a message`);
    return e;
  }
  throw new Error(`${what}: no error`);
}

await check('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  eq(ids, [model], 'model ids');
  const m = await client.models.retrieve(model);
  eq(m.id, model, 'retrieve');
});

await check('chat', async () => {
  const r = await client.chat.completions.create({ model, messages: HELLO, temperature: 0 });
  eq(r.object, 'chat.completion', 'object');
  eq(r.choices[0].message.role, 'assistant', 'role');
  eq(r.choices[0].message.content, HELLO_ANSWER, 'content');
  eq(r.choices[0].finish_reason, 'stop', 'finish_reason');
  ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, 'usage counts');
  eq(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens, 'total_tokens');
});

await check('chat stream', async () => {
  const s = await client.chat.completions.create({ model, messages: STORY, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  const r = await collect(s);
  eq(r.role, 'assistant', 'first delta role');
  eq(r.content, STORY_ANSWER, 'streamed content');
  eq(r.finish, 'stop', 'finish_reason');
  ok(r.usage && r.usage.completion_tokens > 0, 'usage chunk');
  ok(r.chunks >= 3, `several chunks (${r.chunks})`);
});

await check('tool call', async () => {
  const r = await client.chat.completions.create({ model, messages: PARIS, tools: TOOLS, temperature: 0 });
  const m = r.choices[0].message;
  eq(r.choices[0].finish_reason, 'tool_calls', 'finish_reason');
  eq(m.content, null, 'content');
  eq(m.tool_calls.length, 1, 'one call');
  eq(m.tool_calls[0].type, 'function', 'type');
  eq(m.tool_calls[0].function.name, 'get_weather', 'name');
  eq(JSON.parse(m.tool_calls[0].function.arguments), { city: 'Paris' }, 'arguments');
  ok(m.tool_calls[0].id.length > 0, 'call id');
});

await check('tool call stream', async () => {
  const s = await client.chat.completions.create({ model, messages: PARIS, tools: TOOLS, temperature: 0, stream: true });
  const r = await collect(s);
  eq(r.finish, 'tool_calls', 'finish_reason');
  eq(r.content, '', 'no content streamed');
  eq(r.calls.length, 1, 'one call');
  eq(r.calls[0].name, 'get_weather', 'name');
  eq(JSON.parse(r.calls[0].arguments), { city: 'Paris' }, 'arguments');
});

await check('tool_choice none', async () => {
  const r = await client.chat.completions.create({ model, messages: HELLO, tools: TOOLS, tool_choice: 'none', temperature: 0 });
  eq(r.choices[0].message.content, HELLO_ANSWER, 'content (tools not rendered)');
});

await check('tool result round trip', async () => {
  const first = await client.chat.completions.create({ model, messages: PARIS, tools: TOOLS, temperature: 0 });
  const call = first.choices[0].message.tool_calls[0];
  const messages = [...PARIS, first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' }];
  const r = await client.chat.completions.create({ model, messages, tools: TOOLS, temperature: 0 });
  eq(r.choices[0].message.content, 'It is sunny and 21 C in Paris.', 'answer from the tool result');
  eq(r.choices[0].finish_reason, 'stop', 'finish_reason');
});

await check('completions', async () => {
  const prompt = '[Round 0] USER:Tell me a story. ASSISTANT:';
  const r = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 100 });
  eq(r.object, 'text_completion', 'object');
  eq(r.choices[0].text, STORY_ANSWER, 'text');
  eq(r.choices[0].finish_reason, 'stop', 'finish_reason');
  const s = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 100, stream: true });
  const c = await collect(s);
  eq(c.content, STORY_ANSWER, 'streamed text');
});

await check('max_tokens and stop', async () => {
  const r = await client.chat.completions.create({ model, messages: STORY, temperature: 0, max_tokens: 3 });
  eq(r.choices[0].finish_reason, 'length', 'finish_reason');
  eq(r.usage.completion_tokens, 3, 'completion_tokens');
  const s = await client.chat.completions.create({ model, messages: STORY, temperature: 0, stop: ['cat'] });
  eq(s.choices[0].message.content, 'Once upon a time, a small ', 'cut before the stop string');
  eq(s.choices[0].finish_reason, 'stop', 'finish_reason');
  const t = await client.chat.completions.create({ model, messages: STORY, temperature: 0, stop: 'cat', stream: true });
  eq((await collect(t)).content, 'Once upon a time, a small ', 'streamed, cut before the stop string');
});

await check('seed', async () => {
  const req = { model, prompt: 'ROMEO:', temperature: 1, max_tokens: 24, seed: 42, ignore_eos: true };
  const a = await client.completions.create(req), b = await client.completions.create(req);
  eq(a.choices[0].text, b.choices[0].text, 'same seed, same text');
  eq(a.usage.completion_tokens, 24, 'ignore_eos runs to max_tokens');
});

await check('errors', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  const e401 = await expectError(() => bad.chat.completions.create({ model, messages: HELLO }), 401, 'bad key');
  eq(e401.code, 'invalid_api_key', 'code');
  const e404 = await expectError(() => client.chat.completions.create({ model: 'gpt-4o', messages: HELLO }), 404, 'unknown model');
  eq(e404.code, 'model_not_found', 'code');
  const e400 = await expectError(() => client.chat.completions.create({ model, messages: HELLO, temperature: 5 }), 400, 'temperature');
  eq(e400.param, 'temperature', 'param');
  await expectError(() => client.chat.completions.create({ model, messages: HELLO, n: 2 }), 400, 'n = 2');
  await expectError(() => client.chat.completions.create({ model, messages: [] }), 400, 'no messages');
  await expectError(() => client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }), 400, 'role');
  await expectError(() => client.chat.completions.create({ model, messages: HELLO, max_tokens: 100000000 }), 400, 'context');
  await expectError(() => client.completions.create({ model, prompt: [1, 2, 99999999] }), 400, 'token id');
});

// Concurrency: these prompts decode together in one batch; greedy text must equal each alone.
await check('parallel streams = single requests', async () => {
  const prompts = ['ROMEO:', 'Say hello.', 'The cat', 'What is the weather', 'Once upon', 'JULIET:'];
  const req = (p, stream) => ({ model, prompt: p, temperature: 0, max_tokens: 40, ignore_eos: true, stream });
  const single = [];
  for (const p of prompts) single.push((await client.completions.create(req(p, false))).choices[0].text);
  const par = await Promise.all(prompts.map(async p => (await collect(await client.completions.create(req(p, true)))).content));
  for (let i = 0; i < prompts.length; i++) eq(par[i], single[i], `prompt ${JSON.stringify(prompts[i])}`);
});

// A client that goes away frees its slot.
await check('disconnect frees the slot', async () => {
  const ac = new AbortController();
  const s = await client.completions.create({ model, prompt: 'ROMEO:', max_tokens: 3000, ignore_eos: true, stream: true },
    { signal: ac.signal });
  let n = 0;
  try { for await (const _ of s) { if (++n === 2) ac.abort(); } } catch (e) { /* aborted */ }
  const metrics = baseURL.replace(/\/v1$/, '') + '/metrics';
  let busy = -1;
  for (let i = 0; i < 50 && busy !== 0; i++) {
    await new Promise(r => setTimeout(r, 100));
    const text = await (await fetch(metrics)).text();
    busy = Number(/^longcat_slots_busy (\d+)/m.exec(text)[1]);
  }
  eq(busy, 0, 'busy slots after the client left');
});

process.exit(failed ? 1 : 0);

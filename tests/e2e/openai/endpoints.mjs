// The `openai` npm client's completions.create and embeddings.create against a running `elliott serve`.
// usage: node endpoints.mjs PORT EMBED_PORT
import OpenAI from "openai";

const [port, embedPort] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
const embedClient = new OpenAI({ baseURL: `http://127.0.0.1:${embedPort}/v1`, apiKey: "unused", maxRetries: 0 });
let failures = 0;
function check(cond, what) {
  if (!cond) {
    failures++;
    console.error("FAIL:", what);
  }
}

// completions.create, plain, with legacy logprobs
const c = await client.completions.create({ model: "x", prompt: "Once upon a time", max_tokens: 8, temperature: 0, logprobs: 2 });
check(c.object === "text_completion" && c.choices[0].text.length > 0, `completion ${JSON.stringify(c)}`);
const lp = c.choices[0].logprobs;
check(lp.tokens.length === 8 && lp.token_logprobs.length === 8 && lp.top_logprobs[0] && lp.text_offset[0] === 0,
      "legacy logprobs");
check(lp.tokens.join("") === c.choices[0].text, "logprobs tokens spell the text");
check(c.usage.completion_tokens === 8, "usage");

// streamed, with echo: the prompt first, then the same text
const s = await client.completions.create({ model: "x", prompt: "Once upon a time", max_tokens: 8, temperature: 0, echo: true, stream: true });
let text = "", finish = null;
for await (const chunk of s) {
  text += chunk.choices[0]?.text ?? "";
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
check(text === "Once upon a time" + c.choices[0].text && finish === "length", `streamed echo ${JSON.stringify(text)}`);

// n choices and a stop string
const many = await client.completions.create({ model: "x", prompt: "Once upon a time", max_tokens: 6, n: 2, seed: 3, stop: ["zzz"] });
check(many.choices.length === 2 && many.choices[1].index === 1, "n = 2");

// several prompts, n each: choice index = prompt index x n + j, streamed and not
const pair = await client.completions.create({ model: "x", prompt: ["Once upon a time", "One day"], max_tokens: 4, n: 2, temperature: 0 });
check(pair.choices.length === 4 && pair.choices.map((x) => x.index).join() === "0,1,2,3", `prompts x n ${JSON.stringify(pair)}`);
check(pair.choices[0].text === pair.choices[1].text && pair.choices[2].text === pair.choices[3].text, "greedy choices agree");
const pairStream = await client.completions.create({ model: "x", prompt: ["Once upon a time", "One day"], max_tokens: 4, n: 2, temperature: 0, stream: true });
const streamed = ["", "", "", ""];
const ends = [0, 0, 0, 0];
for await (const chunk of pairStream) {
  for (const ch of chunk.choices) {
    streamed[ch.index] += ch.text ?? "";
    if (ch.finish_reason) ends[ch.index]++;
  }
}
check(streamed.join("|") === pair.choices.map((x) => x.text).join("|") && ends.join() === "1,1,1,1",
      `streamed prompts x n ${JSON.stringify(streamed)} ends ${ends}`);

// suffix is refused
let err = null;
try {
  await client.completions.create({ model: "x", prompt: "def f(", suffix: "return x", max_tokens: 4 });
} catch (e) {
  err = e;
}
check(err && err.status === 400 && err.param === "suffix", `suffix: ${err}`);

// embeddings.create on an embedding model: floats (the client asks for base64 and decodes it)
const e = await embedClient.embeddings.create({ model: "x", input: ["hello world", "goodbye"] });
check(e.data.length === 2 && e.data[0].embedding.length > 0 && e.usage.prompt_tokens > 0, "embeddings shape");
check(Math.abs(Math.hypot(...e.data[0].embedding) - 1) < 1e-4, "embeddings normalised");
const f = await embedClient.embeddings.create({ model: "x", input: "hello world", encoding_format: "float", dimensions: 16 });
check(f.data[0].embedding.length === 16 && Math.abs(Math.hypot(...f.data[0].embedding) - 1) < 1e-4, "dimensions");
// the same vector as the batched one, whichever encoding
const one = await embedClient.embeddings.create({ model: "x", input: "hello world" });
const d = Math.max(...one.data[0].embedding.map((v, i) => Math.abs(v - e.data[0].embedding[i])));
check(d < 1e-5, `batched = alone (max diff ${d})`);

// a generative model refuses embeddings unless mean pooling is asked for
let gen = null;
try {
  await client.embeddings.create({ model: "x", input: "hello" });
} catch (x) {
  gen = x;
}
check(gen && gen.status === 400 && /embedding model/.test(gen.message), `generative model: ${gen}`);

if (failures) process.exit(1);
console.log("openai client endpoints: ok");

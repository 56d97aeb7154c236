// The `ollama` npm client, unchanged, against a running `elliott serve`.
// usage: node test.mjs PORT [API_KEY] [EMBED_PORT]
// EMBED_PORT: a server with an embedding model, for embed (else the mean-pooling extension is not
// reachable through the client, and embed is checked for its clear refusal).
import { Ollama } from "ollama";

const [port, apiKey, embedPort] = process.argv.slice(2);
const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
const client = new Ollama({ host: `http://127.0.0.1:${port}`, headers });
let failures = 0;
function check(cond, what) {
  if (!cond) {
    failures++;
    console.error("FAIL:", what);
  }
}

// list and show
const list = await client.list();
check(list.models.length === 1 && list.models[0].name === "elliott-1", `list ${JSON.stringify(list)}`);
check(list.models[0].details.format === "gguf" && /^[0-9a-f]{64}$/.test(list.models[0].digest), "list details");
const show = await client.show({ model: "elliott-1" });
check(show.details.family.length > 0 && typeof show.model_info["general.architecture"] === "string",
      `show ${JSON.stringify(show).slice(0, 200)}`);
let missing = null;
try {
  await client.show({ model: "no-such-model" });
} catch (e) {
  missing = e;
}
check(missing && missing.status_code === 404 && /not found/.test(missing.error), `show unknown model: ${missing}`);

// chat, not streamed
const messages = [{ role: "user", content: "Once upon a time" }];
const chat = await client.chat({ model: "elliott-1", messages, stream: false, options: { num_predict: 8, temperature: 0 } });
check(chat.done === true && chat.message.role === "assistant" && chat.message.content.length > 0, `chat ${JSON.stringify(chat)}`);
check(chat.eval_count === 8 && chat.done_reason === "length" && chat.prompt_eval_count > 0, "chat counts");
check(chat.total_duration >= chat.eval_duration && chat.eval_duration > 0, "chat durations in nanoseconds");

// chat, streamed: the same text (greedy), in parts, then done
const parts = await client.chat({ model: "elliott-1", messages, stream: true, options: { num_predict: 8, temperature: 0 } });
let text = "", last = null, n = 0;
for await (const part of parts) {
  text += part.message.content;
  last = part;
  n++;
}
check(n >= 2 && last.done === true && last.done_reason === "length", `chat stream ended ${JSON.stringify(last)}`);
check(text === chat.message.content, `streamed text ${JSON.stringify(text)} vs ${JSON.stringify(chat.message.content)}`);

// generate, with options and stop
const gen = await client.generate({ model: "elliott-1", prompt: "Once upon a time", stream: false,
                                    options: { num_predict: 12, temperature: 0, seed: 1, top_k: 40, stop: ["zzz"] } });
check(gen.done && gen.response.length > 0 && gen.eval_count <= 12, `generate ${JSON.stringify(gen)}`);
const genParts = await client.generate({ model: "elliott-1", prompt: "Once upon a time", stream: true,
                                         options: { num_predict: 12, temperature: 0, seed: 1, top_k: 40, stop: ["zzz"] } });
let genText = "";
for await (const part of genParts) genText += part.response;
check(genText === gen.response, "generate streamed = not streamed");

// an unknown option is refused
let refused = null;
try {
  await client.generate({ model: "elliott-1", prompt: "x", stream: false, options: { mirostat: 2 } });
} catch (e) {
  refused = e;
}
check(refused && refused.status_code === 400 && /mirostat/.test(refused.error), `unknown option: ${refused}`);

// format: "json"
const js = await client.chat({ model: "elliott-1", messages, stream: false, format: "json", options: { num_predict: 48 } });
check(js.message.content.trimStart().startsWith("{"), `format json ${JSON.stringify(js.message.content)}`);

// embed: on a generative model, a clear refusal; on an embedding model, vectors
let embedErr = null;
try {
  await client.embed({ model: "elliott-1", input: "hello" });
} catch (e) {
  embedErr = e;
}
check(embedErr && embedErr.status_code === 400 && /embedding model/.test(embedErr.error), `embed on a generative model: ${embedErr}`);
if (embedPort) {
  const emb = new Ollama({ host: `http://127.0.0.1:${embedPort}`, headers });
  const r = await emb.embed({ model: "elliott-1", input: ["hello world", "goodbye"] });
  check(r.embeddings.length === 2 && r.embeddings[0].length > 0 && r.prompt_eval_count > 0, "embed shape");
  const norm = Math.hypot(...r.embeddings[0]);
  check(Math.abs(norm - 1) < 1e-4, `embed normalised: ${norm}`);
  const cut = await emb.embed({ model: "elliott-1", input: "hello world", dimensions: 8 });
  check(cut.embeddings[0].length === 8 && Math.abs(Math.hypot(...cut.embeddings[0]) - 1) < 1e-4, "embed dimensions");
  const legacy = await emb.embeddings({ model: "elliott-1", prompt: "hello world" });
  check(legacy.embedding.length === r.embeddings[0].length, "legacy embeddings");
}

const version = await client.version();
check(typeof version.version === "string", "version");

if (failures) process.exit(1);
console.log("ollama client: ok");

// The official `openai` npm client, unchanged, against a running `elliott serve`.
// usage: node test.mjs PORT [API_KEY]
import OpenAI from "openai";

const [port, apiKey, scheme = "http"] = process.argv.slice(2);
const client = new OpenAI({
  baseURL: `${scheme}://127.0.0.1:${port}/v1`,
  apiKey: apiKey || "unused",
  maxRetries: 0,
  timeout: 120000,
});
let failures = 0;
function check(cond, what) {
  if (!cond) {
    failures++;
    console.error("FAIL:", what);
  }
}

const messages = [
  { role: "system", content: "You tell short stories." },
  { role: "user", content: "Once upon a time" },
];

// Non-streaming.
const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 16 });
check(/^cfai-[0-9a-f-]{36}$/.test(completion.id), `id ${completion.id}`);
check(completion.object === "chat.completion", "object");
check(completion.model === "elliott-1", `model ${completion.model}`);
const choice = completion.choices[0];
check(choice.message.role === "assistant", "role");
check(typeof choice.message.content === "string" && choice.message.content.length > 0, "content is not empty");
check(["stop", "length"].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
check(completion.usage.total_tokens === completion.usage.prompt_tokens + completion.usage.completion_tokens, "usage");

// Streaming, with the usage chunk.
const stream = await client.chat.completions.create({
  model: "gpt-4o-mini", messages, max_tokens: 16, stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null, role = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  const c = chunk.choices[0];
  if (!c) continue;
  if (c.delta.role) role = c.delta.role;
  if (c.delta.content) text += c.delta.content;
  if (c.finish_reason) finish = c.finish_reason;
}
check(chunks >= 3, `chunks ${chunks}`);
check(role === "assistant", "the stream's role");
check(text.length > 0, "streamed content is not empty");
check(["stop", "length"].includes(finish), `stream finish_reason ${finish}`);
check(usage && usage.completion_tokens > 0, "stream usage");

// Errors reach the client as typed exceptions.
try {
  await client.chat.completions.create({ model: "x", messages: [], max_tokens: 4 });
  check(false, "an empty conversation was accepted");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.status === 400, `400 as BadRequestError: ${e}`);
  check(e.param === "messages", `error param ${e.param}`);
}

// The models list.
const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === "elliott-1", "models.list");

if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.error("ok: the openai client works (non-streaming, streaming, errors, models)");

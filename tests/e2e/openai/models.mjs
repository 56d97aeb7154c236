// The official `openai` npm client, unchanged, choosing among the models of one
// `elliott serve` (tests/e2e/serve_models.sh: elliott-1, beta and gamma).
// usage: node models.mjs PORT
import OpenAI from "openai";

const [port] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0, timeout: 120000 });
let failures = 0;
function check(cond, what) {
  if (!cond) {
    failures++;
    console.error("FAIL:", what);
  }
}

const messages = [{ role: "user", content: "Tell me a story about a cat" }];

const ids = [];
for await (const m of client.models.list()) ids.push(m.id);
check(JSON.stringify(ids) === JSON.stringify(["elliott-1", "beta", "gamma"]), `models.list: ${ids}`);
const beta = await client.models.retrieve("beta");
check(beta.id === "beta" && beta.object === "model", `models.retrieve: ${JSON.stringify(beta)}`);

// Each model by its name, streaming and not: the answer says which model gave it,
// and the same model gives the same greedy text either way.
const texts = {};
for (const model of ["elliott-1", "beta", "gamma", "chat"]) {
  const served = model === "chat" ? "gamma" : model;
  const c = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0 });
  check(c.model === served, `${model}: answered by ${c.model}`);
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0, stream: true });
  let text = "", seen = null;
  for await (const chunk of stream) {
    seen = chunk.model;
    if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
  }
  check(seen === served, `${model}: streamed by ${seen}`);
  check(text === c.choices[0].message.content, `${model}: the stream and the reply agree`);
  if (served in texts) check(texts[served] === text, `${model} and ${served} give the same text`);
  texts[served] = text;
}
check(new Set(Object.values(texts)).size === 3, `three models, three answers: ${JSON.stringify(texts)}`);

// An unknown model: OpenAI's NotFoundError with its code.
for (const call of [
  () => client.chat.completions.create({ model: "gpt-nope", messages, max_tokens: 4 }),
  () => client.models.retrieve("gpt-nope"),
  () => client.embeddings.create({ model: "gpt-nope", input: "x" }),
]) {
  try {
    await call();
    check(false, "an unknown model was accepted");
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.status === 404, `404 as NotFoundError: ${e}`);
    check(e.code === "model_not_found" && e.param === null, `code ${e.code}, param ${e.param}`);
    check(e.message.includes("The model `gpt-nope` does not exist"), `message ${e.message}`);
  }
}

if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.error("ok: the openai client selects models");

// The official `openai` npm client's own helpers, unchanged, for structured output
// against `elliott serve` running a random-weight model with a real vocabulary:
// parse() with a json_schema, a tool round trip, streamed tool calls through
// stream()/finalChatCompletion(), runTools() and logprobs.
// usage: node structured.mjs PORT
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

const person = {
  type: "object",
  properties: { name: { type: "string", maxLength: 16 }, age: { type: "integer", minimum: 0, maximum: 120 } },
  required: ["name", "age"],
  additionalProperties: false,
};
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 12 } },
      required: ["city"],
      additionalProperties: false,
    },
  },
};
const base = { model: "gpt-4o-mini", max_tokens: 200, temperature: 1 };

// parse(): the helper reads the JSON answer into message.parsed.
for (const seed of [1, 2, 3]) {
  const done = await client.chat.completions.parse({
    ...base, seed,
    messages: [{ role: "user", content: "Who?" }],
    response_format: { type: "json_schema", json_schema: { name: "person", schema: person, strict: true } },
  });
  const c = done.choices[0];
  if (c.finish_reason === "stop") {
    const p = c.message.parsed;
    check(p && typeof p.name === "string" && Number.isInteger(p.age) && p.age >= 0 && p.age <= 120 &&
          Object.keys(p).length === 2, `parsed ${JSON.stringify(p)}`);
  }
}

// A tool round trip: the call, its result, the answer.
const messages = [{ role: "user", content: "Weather in Oslo?" }];
const first = await client.chat.completions.create({
  ...base, seed: 4, messages, tools: [weather], tool_choice: "required", parallel_tool_calls: false,
});
const call = first.choices[0].message.tool_calls?.[0];
check(first.choices[0].finish_reason === "tool_calls" && first.choices[0].message.content === null,
      `the call: ${JSON.stringify(first.choices[0])}`);
check(call && call.id.startsWith("call_") && call.function.name === "get_weather", "the call's shape");
const args = JSON.parse(call.function.arguments);
check(typeof args.city === "string" && Object.keys(args).length === 1, `arguments ${call.function.arguments}`);
messages.push(first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "-3 C, snow" });
const answer = await client.chat.completions.create({ ...base, seed: 4, messages, tools: [weather], max_tokens: 16,
                                                      tool_choice: "none" });
check(typeof answer.choices[0].message.content === "string", "the answer after the result");

// Streamed tool calls, assembled by the client's stream helper.
const stream = client.chat.completions.stream({
  ...base, seed: 5, messages: [{ role: "user", content: "Weather?" }], tools: [weather], tool_choice: "required",
});
const streamed = await stream.finalChatCompletion();
const sc = streamed.choices[0];
if (sc.finish_reason === "tool_calls") {
  const tc = sc.message.tool_calls[0];
  check(tc.id.startsWith("call_") && tc.function.name === "get_weather", `streamed call ${JSON.stringify(tc)}`);
  check(typeof JSON.parse(tc.function.arguments).city === "string", "streamed arguments parse");
} else {
  check(sc.finish_reason === "length", `streamed finish ${sc.finish_reason}`);
}

// runTools(): the helper calls the function with the parsed arguments.
let called = null;
const runner = client.chat.completions.runTools({
  ...base, seed: 6, messages: [{ role: "user", content: "Weather?" }],
  tool_choice: { type: "function", function: { name: "get_weather" } },
  tools: [{
    type: "function",
    function: { ...weather.function, parse: JSON.parse, function: (a) => { called = a; return "sunny"; } },
  }],
});
await runner.done();
check(called && typeof called.city === "string", `runTools called the function with ${JSON.stringify(called)}`);

// logprobs: the greedy token is the most likely one.
const lp = await client.chat.completions.create({
  ...base, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3,
  messages: [{ role: "user", content: "Hi" }],
});
const content = lp.choices[0].logprobs.content;
check(content.length > 0, "logprobs content");
for (const t of content)
  check(t.top_logprobs.length === 3 && t.top_logprobs[0].token === t.token, `top logprob ${JSON.stringify(t)}`);

if (failures) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
console.error("ok: the openai client's structured-output helpers work (parse, tools, stream, runTools, logprobs)");

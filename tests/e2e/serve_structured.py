#!/usr/bin/env python3
"""Structured output against a running `elliott serve` whose model has random weights
and a real 256k vocabulary: the constraint alone makes the answers valid.

Every answer that stops (finish_reason "stop") must parse and validate against its
schema (python3-jsonschema); answers cut by max_tokens are counted, not judged.
Also: json_object, llama.cpp's grammar and json_schema fields, tools (required,
named, auto, a round trip with a tool result, streamed tool calls), logprobs
(greedy token = top logprob), logit_bias, n, and the 400s for bad constraints.

usage: serve_structured.py --port PORT [--seeds N]
"""
import argparse
import http.client
import json
import re
import sys

import jsonschema

ARGS = None
FAILURES = 0


def check(cond, what):
    global FAILURES
    if not cond:
        FAILURES += 1
        print("FAIL:", what, file=sys.stderr)
    return cond


def post(body, stream=False):
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=300)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if stream and r.status == 200:
        chunks = []
        for line in data.decode().split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
        return r.status, chunks
    return r.status, json.loads(data)


def ask(extra, text="Answer in JSON.", max_tokens=300):
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 1.0}
    body.update(extra)
    return post(body)


SCHEMAS = {
    "person": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                                                "admin": {"type": "boolean"}},
               "required": ["name", "age", "admin"], "additionalProperties": False},
    "enum_const": {"type": "object", "properties": {"colour": {"enum": ["red", "green", 3, None]},
                                                    "v": {"const": "v1"}},
                   "required": ["colour", "v"], "additionalProperties": False},
    "array_bounds": {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5},
                     "minItems": 2, "maxItems": 4},
    "nested": {"type": "object", "properties": {
        "user": {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {
            "type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
            "required": ["id", "tags"], "additionalProperties": False}},
        "required": ["user"], "additionalProperties": False},
    "any_of": {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "integer"}, {"type": "null"}]},
    "recursive": {"$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer", "minimum": 0, "maximum": 9},
        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
        "required": ["v", "kids"], "additionalProperties": False}}, "$ref": "#/$defs/node"},
    "pattern_lengths": {"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[a-z]{2,5}-[0-9]+$"},
        "short": {"type": "string", "minLength": 2, "maxLength": 4}},
        "required": ["code", "short"], "additionalProperties": False},
    "formats": {"type": "object", "properties": {
        "d": {"type": "string", "format": "date"}, "t": {"type": "string", "format": "time"},
        "dt": {"type": "string", "format": "date-time"}, "u": {"type": "string", "format": "uuid"},
        "e": {"type": "string", "format": "email"}},
        "required": ["d", "t", "dt", "u", "e"], "additionalProperties": False},
    "numbers": {"type": "object", "properties": {
        "x": {"type": "number", "minimum": -1.5, "maximum": 2.5},
        "n": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 20}},
        "required": ["x", "n"], "additionalProperties": False},
    "type_list": {"type": "object", "properties": {"maybe": {"type": ["string", "null"], "maxLength": 6}},
                  "required": ["maybe"], "additionalProperties": False},
    "prefix_items": {"type": "array", "prefixItems": [{"type": "string", "maxLength": 5}, {"type": "integer"}],
                     "items": False},
    "all_of": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                         {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
    "extra_props_schema": {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"],
                           "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 3}},
    "one_of": {"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
                          "required": ["kind", "x"], "additionalProperties": False},
                         {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "boolean"}},
                          "required": ["kind", "y"], "additionalProperties": False}]},
    "optional_props": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string",
                                                                                        "maxLength": 5}},
                       "additionalProperties": False},
}


# RFC 3339 full-time (the offset is required), as JSON Schema's "time" means; the
# validator's own check of "time" without the optional rfc3339-validator module
# accepts only offset-less times.
FULL_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("time")
def is_full_time(value):
    return not isinstance(value, str) or FULL_TIME.fullmatch(value) is not None


def validate(answer, schema, what):
    try:
        value = json.loads(answer)
    except ValueError as e:
        return check(False, "%s: the answer is not JSON (%s): %r" % (what, e, answer[:200]))
    try:
        jsonschema.validate(value, schema, format_checker=FORMATS)
    except jsonschema.ValidationError as e:
        return check(False, "%s: invalid (%s): %r" % (what, e.message, answer[:200]))
    return True


def group_schemas():
    stopped = cut = 0
    for name, schema in SCHEMAS.items():
        for seed in range(ARGS.seeds):
            st, d = ask({"seed": seed, "response_format": {"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, "strict": seed % 2 == 0}}})
            if not check(st == 200, "%s seed %d: status %d %r" % (name, seed, st, d)):
                continue
            c = d["choices"][0]
            if c["finish_reason"] == "length":
                cut += 1
                continue
            stopped += 1
            validate(c["message"]["content"], schema, "%s seed %d" % (name, seed))
    print("schemas: %d answers stopped and were validated, %d cut by max_tokens" % (stopped, cut))
    check(stopped >= cut, "most answers stop")
    # The same through llama.cpp's json_schema field, streamed.
    schema = SCHEMAS["person"]
    st, chunks = post({"messages": [{"role": "user", "content": "x"}], "max_tokens": 300, "seed": 5,
                       "json_schema": schema, "stream": True}, stream=True)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    if check(st == 200 and finish, "streamed json_schema"):
        if finish[0] == "stop":
            validate(text, schema, "streamed json_schema")


def group_other_constraints():
    for seed in range(ARGS.seeds):
        st, d = ask({"seed": seed, "response_format": {"type": "json_object"}})
        c = d["choices"][0]
        if check(st == 200, "json_object") and c["finish_reason"] == "stop":
            check(isinstance(json.loads(c["message"]["content"]), dict), "json_object gives an object")
        st, d = ask({"seed": seed, "grammar": 'root ::= ("yes" | "no") " " [0-9]{1,3}'}, max_tokens=20)
        c = d["choices"][0]
        if check(st == 200, "grammar: %r" % (d,)) and c["finish_reason"] == "stop":
            check(re.fullmatch(r"(yes|no) [0-9]{1,3}", c["message"]["content"]) is not None,
                  "grammar answer %r" % c["message"]["content"])
    # refusals: named, quick
    for body, param in (({"response_format": {"type": "json_schema", "json_schema": {
                            "name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}}}},
                         "response_format"),
                        ({"response_format": {"type": "json_schema", "json_schema": {
                            "name": "x", "schema": {"type": "strange"}}}}, "response_format"),
                        ({"grammar": "root ::= ("}, "grammar"),
                        ({"json_schema": {"type": "object", "patternProperties": {"a": {}}}}, "json_schema"),
                        ({"logit_bias": {"999999999": 1}}, "logit_bias"),
                        ({"n": 3}, "n")):
        st, d = ask(body, max_tokens=4)
        check(st == 400 and d["error"]["param"] == param, "refused naming %s: %d %r" % (param, st, d))


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "unit": {"enum": ["C", "F"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "integer", "minimum": -12,
                                                                               "maximum": 12}},
                                       "required": ["zone"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def check_calls(calls, what, only=None):
    ok = check(bool(calls), "%s: no tool calls" % what)
    for call in calls or []:
        ok &= check(call["id"].startswith("call_") and call["type"] == "function", "%s: call shape %r" % (what, call))
        name = call["function"]["name"]
        ok &= check(name in PARAMS and (only is None or name == only), "%s: function %r" % (what, name))
        if name in PARAMS:
            ok &= validate(call["function"]["arguments"], PARAMS[name], what + " arguments")
    return ok


def group_tools():
    for seed in range(ARGS.seeds):
        st, d = ask({"seed": seed, "tools": TOOLS, "tool_choice": "required"}, "Weather in Oslo?")
        c = d["choices"][0] if st == 200 else {}
        if check(st == 200, "required: %r" % (d,)) and c["finish_reason"] == "tool_calls":
            check(c["message"]["content"] is None, "a call has null content")
            check_calls(c["message"].get("tool_calls"), "required seed %d" % seed)
        st, d = ask({"seed": seed, "tools": TOOLS, "parallel_tool_calls": False,
                     "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "Time?")
        c = d["choices"][0] if st == 200 else {}
        if check(st == 200, "named") and c["finish_reason"] == "tool_calls":
            check(len(c["message"]["tool_calls"]) == 1, "named: one call")
            check_calls(c["message"]["tool_calls"], "named seed %d" % seed, only="get_time")
        st, d = ask({"seed": seed, "tools": TOOLS}, "Hello")
        c = d["choices"][0] if st == 200 else {}
        if check(st == 200, "auto") and c["finish_reason"] == "tool_calls":
            check_calls(c["message"]["tool_calls"], "auto seed %d" % seed)
    # A round trip: call, result, answer.
    msgs = [{"role": "user", "content": "Weather in Oslo?"}]
    st, d = post({"messages": msgs, "tools": TOOLS, "tool_choice": "required", "seed": 1, "max_tokens": 300,
                  "parallel_tool_calls": False})
    c = d["choices"][0]
    if check(st == 200 and c["finish_reason"] == "tool_calls", "round trip: the call"):
        call = c["message"]["tool_calls"][0]
        msgs += [c["message"], {"role": "tool", "tool_call_id": call["id"], "content": "-3 C, snow"}]
        st, d = post({"messages": msgs, "tools": TOOLS, "tool_choice": "none", "seed": 1, "max_tokens": 20})
        check(st == 200 and isinstance(d["choices"][0]["message"]["content"], str), "round trip: the answer %r" % d)
    # Streamed calls: deltas rebuild the same calls as the non-streamed answer.
    body = {"messages": [{"role": "user", "content": "Weather?"}], "tools": TOOLS, "tool_choice": "required",
            "seed": 3, "max_tokens": 300, "temperature": 1.0}
    st, d = post(body)
    want = d["choices"][0]
    st, chunks = post(dict(body, stream=True), stream=True)
    calls, finish = {}, None
    for ch in chunks:
        for choice in ch["choices"]:
            check(choice["delta"].get("content") in (None, ""), "streamed calls carry no content")
            for tc in choice["delta"].get("tool_calls", []):
                if tc["index"] not in calls:
                    check("id" in tc and tc.get("type") == "function" and "name" in tc["function"],
                          "a call's first delta has id, type and name: %r" % tc)
                    calls[tc["index"]] = {"id": tc["id"], "type": "function",
                                          "function": {"name": tc["function"]["name"], "arguments": ""}}
                else:
                    check("id" not in tc, "later deltas have no id")
                calls[tc["index"]]["function"]["arguments"] += tc["function"].get("arguments", "")
            finish = choice.get("finish_reason") or finish
    check(finish == want["finish_reason"], "streamed finish %r vs %r" % (finish, want["finish_reason"]))
    if want["finish_reason"] == "tool_calls":
        got = [calls[i]["function"] for i in sorted(calls)]
        check(got == [t["function"] for t in want["message"]["tool_calls"]], "streamed calls equal: %r vs %r" %
              (got, want["message"]["tool_calls"]))


def group_logprobs_and_choices():
    st, d = ask({"temperature": 0, "logprobs": True, "top_logprobs": 5}, "Hi", max_tokens=12)
    content = d["choices"][0]["logprobs"]["content"]
    check(len(content) > 0, "logprobs present")
    for e in content:
        check(e["top_logprobs"][0]["token"] == e["token"] and e["top_logprobs"][0]["logprob"] == e["logprob"],
              "the greedy token is the top logprob: %r" % e)
        check(len(e["top_logprobs"]) == 5 and bytes(e["bytes"]).decode("utf-8", "replace") is not None, "shape")
    st, d = ask({"temperature": 0, "n": 2, "logprobs": True}, "Hi", max_tokens=8)
    check(st == 200 and [c["index"] for c in d["choices"]] == [0, 1], "n=2: two choices")
    check(d["choices"][0]["message"] == d["choices"][1]["message"], "greedy choices agree")
    check(d["usage"]["completion_tokens"] == sum(len(c["logprobs"]["content"]) + (c["finish_reason"] == "stop")
                                                 for c in d["choices"]), "usage sums the choices")
    # streamed: each choice has its role, deltas and finish chunk, then one usage chunk
    st, chunks = post({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0, "n": 2,
                       "stream": True, "stream_options": {"include_usage": True}}, stream=True)
    texts, finishes, roles = ["", ""], [None, None], [0, 0]
    for ch in chunks:
        for c in ch["choices"]:
            roles[c["index"]] += c["delta"].get("role") == "assistant"
            texts[c["index"]] += c["delta"].get("content") or ""
            finishes[c["index"]] = c["finish_reason"] or finishes[c["index"]]
    check(st == 200 and roles == [1, 1] and None not in finishes, "streamed n=2: roles %r finishes %r" %
          (roles, finishes))
    check([t for t in texts] == [c["message"]["content"] for c in d["choices"]], "streamed n=2 text")
    check(chunks[-1]["usage"]["completion_tokens"] == d["usage"]["completion_tokens"], "streamed n=2 usage")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seeds", type=int, default=2)
    ARGS = p.parse_args()
    group_schemas()
    group_other_constraints()
    group_tools()
    group_logprobs_and_choices()
    print("%d failure(s)" % FAILURES)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())

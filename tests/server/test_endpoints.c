/* The other APIs' model-free parts: /v1/completions, /v1/embeddings and Ollama
 * request parsing, their answers' shapes, base64 floats, Matryoshka truncation
 * and the routes. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "server_test_util.h"

/* ---- /v1/completions -------------------------------------------------------------- */

static int parse_text(const char *body, text_request *r, api_error *e)
{
    gen_params d = server_test_defaults();
    return api_parse_text_request(body, strlen(body), &d, r, e);
}

static void expect_text_reject(const char *body, const char *param)
{
    text_request r;
    api_error e;
    memset(&e, 0, sizeof e);
    int rc = parse_text(body, &r, &e);
    if (!server_test_refused(rc, &e, param, body))
        text_request_free(&r);
}

static void test_text_request(void)
{
    text_request r;
    api_error e;
    CHECK_EQ_INT(parse_text("{\"prompt\":\"Once upon\",\"max_tokens\":7,\"temperature\":0.5,\"stop\":[\"x\"],"
                            "\"echo\":true,\"n\":2,\"best_of\":2,\"stream\":true,\"user\":\"u\"}",
                            &r, &e),
                 0);
    CHECK(r.base.params.raw && r.base.n_messages == 1 && r.prompt.len == 9 && !memcmp(r.prompt.text, "Once upon", 9));
    CHECK_EQ_INT(r.base.params.max_tokens, 7);
    CHECK_NEAR(r.base.params.sampling.temperature, 0.5, 1e-6);
    CHECK_EQ_INT(r.base.params.n_stop, 1);
    CHECK_EQ_INT(r.base.params.n_choices, 2);
    CHECK(r.echo && r.base.stream && r.legacy_logprobs == -1 && !r.base.params.logprobs);
    text_request_free(&r);

    CHECK_EQ_INT(parse_text("{\"prompt\":[\"one\"],\"logprobs\":3}", &r, &e), 0);
    CHECK(r.base.params.logprobs && r.base.params.top_logprobs == 3 && r.legacy_logprobs == 3);
    text_request_free(&r);

    CHECK_EQ_INT(parse_text("{\"prompt\":[[1,2,3]]}", &r, &e), 0);
    CHECK(r.n_prompt_tokens == 3 && r.base.params.prompt_tokens && r.base.params.prompt_tokens[2] == 3);
    text_request_free(&r);
    CHECK_EQ_INT(parse_text("{\"prompt\":[5,6]}", &r, &e), 0);
    CHECK(r.n_prompt_tokens == 2 && r.base.params.n_prompt_tokens == 2);
    text_request_free(&r);
    CHECK_EQ_INT(parse_text("{\"prompt\":\"x\",\"suffix\":\"\"}", &r, &e), 0);
    CHECK(r.base.params.suffix == NULL);
    text_request_free(&r);
    CHECK_EQ_INT(parse_text("{\"prompt\":\"x\",\"suffix\":\"yz\"}", &r, &e), 0);
    CHECK(r.base.params.raw && r.base.params.suffix_len == 2 && !memcmp(r.base.params.suffix, "yz", 2));
    text_request_free(&r);

    /* several prompts: strings and token arrays, each answered n times */
    CHECK_EQ_INT(parse_text("{\"prompt\":[\"ab\",\"cde\"],\"n\":2,\"echo\":true}", &r, &e), 0);
    CHECK(r.base.params.prompts == r.prompts && r.base.params.n_prompts == 2 && r.base.params.raw);
    CHECK(r.prompts[0].len == 2 && !memcmp(r.prompts[0].text, "ab", 2) && !r.prompts[0].tokens);
    CHECK(r.prompts[1].len == 3 && !memcmp(r.prompts[1].text, "cde", 3));
    CHECK_EQ_INT(r.base.params.n_choices, 2);
    text_request_free(&r);
    CHECK_EQ_INT(parse_text("{\"prompt\":[[1,2],[3,4,5],\"x\"]}", &r, &e), 0);
    CHECK(r.base.params.n_prompts == 3 && r.prompts[1].n_tokens == 3 && r.prompts[1].tokens[2] == 5);
    CHECK(r.prompts[0].n_tokens == 2 && r.prompts[2].len == 1 && !r.prompts[2].tokens);
    text_request_free(&r);
}

static void test_text_refusals(void)
{
    expect_text_reject("{}", "prompt");
    expect_text_reject("{\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}", "prompt");
    expect_text_reject("{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":3}", "n");
    expect_text_reject("{\"prompt\":[\"a\",7]}", "prompt");
    expect_text_reject("{\"prompt\":[\"a\",[]]}", "prompt");
    expect_text_reject("{\"prompt\":[\"a\",[1]],\"echo\":true}", "echo");
    expect_text_reject("{\"prompt\":[\"a\",[1]],\"suffix\":\"z\"}", "suffix");
    expect_text_reject("{\"prompt\":[]}", "prompt");
    expect_text_reject("{\"prompt\":[1,-2]}", "prompt");
    expect_text_reject("{\"prompt\":{}}", "prompt");
    expect_text_reject("{\"prompt\":[1],\"suffix\":\"b\"}", "suffix");
    expect_text_reject("{\"prompt\":\"a\",\"suffix\":1}", "suffix");
    expect_text_reject("{\"prompt\":\"a\",\"logprobs\":6}", "logprobs");
    expect_text_reject("{\"prompt\":\"a\",\"logprobs\":true}", "logprobs");
    expect_text_reject("{\"prompt\":\"a\",\"echo\":true,\"logprobs\":0}", "echo");
    expect_text_reject("{\"prompt\":[1],\"echo\":true}", "echo");
    expect_text_reject("{\"prompt\":\"a\",\"best_of\":2}", "best_of");
    expect_text_reject("{\"prompt\":\"a\",\"messages\":[]}", "messages");
    expect_text_reject("{\"prompt\":\"a\",\"temperature\":3}", "temperature");
    expect_text_reject("{\"prompt\":\"a\",\"max_completion_tokens\":3}", "max_completion_tokens");
    expect_text_reject("{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "stop");
}

static size_t fake_bytes(void *cls, int32_t token, char *buf, size_t cap)
{
    (void)cls;
    const char *pieces[] = {"Hel", "lo", "!"};
    size_t n = strlen(pieces[token % 3]);
    memcpy(buf, pieces[token % 3], n < cap ? n : cap);
    return n;
}

static void test_legacy_logprobs(void)
{
    gen_logprob lp[2] = {{.token = 0, .logprob = -0.5f, .n_top = 2, .top_token = {0, 2}, .top_logprob = {-0.5f, -1.5f}},
                         {.token = 1, .logprob = -0.25f, .n_top = 1, .top_token = {1}, .top_logprob = {-0.25f}}};
    json_t *o = api_text_logprobs(lp, 2, 10, 2, fake_bytes, NULL);
    CHECK(o != NULL);
    CHECK(!strcmp(json_string_value(json_array_get(json_object_get(o, "tokens"), 1)), "lo"));
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(o, "text_offset"), 0)), 10);
    CHECK_EQ_INT(json_integer_value(json_array_get(json_object_get(o, "text_offset"), 1)), 13);
    CHECK_NEAR(json_real_value(json_array_get(json_object_get(o, "token_logprobs"), 0)), -0.5, 1e-6);
    json_t *top0 = json_array_get(json_object_get(o, "top_logprobs"), 0);
    CHECK_EQ_INT(json_object_size(top0), 2);
    CHECK_NEAR(json_real_value(json_object_get(top0, "!")), -1.5, 1e-6);
    json_decref(o);
}

static void test_text_formats(void)
{
    answer_options opts = {.format = API_FORMAT_TEXT, .n_choices = 1, .include_usage = true};
    api_reply_view v = {.id = "cfai-x", .created = 7, .model = "m", .opts = &opts, .token_bytes = fake_bytes,
                        .prompt_tokens = 3, .completion_tokens = 2};
    api_reply_part part = {0, "Hello", 5, NULL, 0, 0, NULL};
    size_t len;
    char *ev = api_format_delta(&v, &part, &len);
    CHECK(ev && !strncmp(ev, "data: {", 7) && strstr(ev, "\"object\":\"text_completion\"") &&
          strstr(ev, "\"text\":\"Hello\"") && strstr(ev, "\"finish_reason\":null") && !strcmp(ev + len - 2, "\n\n"));
    api_free(ev);
    part = (api_reply_part){.choice = 0, .finish = "length"};
    ev = api_format_close(&v, &part, &len);
    CHECK(ev && strstr(ev, "\"finish_reason\":\"length\"") && strstr(ev, "\"total_tokens\":5") &&
          strstr(ev, "data: [DONE]\n\n"));
    api_free(ev);
    api_reply_part whole = {0, "Hi", 2, NULL, 0, 0, "stop"};
    ev = api_format_body(&v, &whole, 1, &len);
    json_t *o = json_loads(ev, 0, NULL);
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "object")), "text_completion"));
    CHECK(json_is_null(json_object_get(json_array_get(json_object_get(o, "choices"), 0), "logprobs")));
    json_decref(o);
    api_free(ev);
}

/* ---- Ollama ------------------------------------------------------------------------------ */

static int parse_ollama(const char *body, bool generate, chat_request *r, bool *empty, api_error *e)
{
    gen_params d = server_test_defaults();
    return api_parse_ollama_request(body, strlen(body), generate, &d, 2048, r, empty, e);
}

static void expect_ollama_reject(const char *body, bool generate, const char *word)
{
    chat_request r;
    api_error e;
    bool empty;
    memset(&e, 0, sizeof e);
    int rc = parse_ollama(body, generate, &r, &empty, &e);
    if (!server_test_refused(rc, &e, NULL, body)) {
        chat_request_free(&r);
        return;
    }
    CHECKF(strstr(e.message, word) != NULL, "'%s' lacks '%s'", e.message, word);
    size_t len;
    char *body_text = api_ollama_error_body(&e, &len);
    json_t *o = json_loads(body_text, 0, NULL);
    CHECK(o && json_object_size(o) == 1 && json_is_string(json_object_get(o, "error")));
    json_decref(o);
    api_free(body_text);
}

static void test_ollama_chat(void)
{
    chat_request r;
    api_error e;
    bool empty;
    CHECK_EQ_INT(parse_ollama("{\"model\":\"gemma3\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                              "{\"role\":\"user\",\"content\":\"Hi\"}],\"keep_alive\":\"5m\","
                              "\"options\":{\"temperature\":0.2,\"top_k\":5,\"top_p\":0.9,\"min_p\":0.1,"
                              "\"num_predict\":9,\"stop\":[\"END\"],\"seed\":4,\"num_ctx\":1024,"
                              "\"repeat_penalty\":1.1,\"presence_penalty\":0.5,\"frequency_penalty\":0.25}}",
                              false, &r, &empty, &e),
                 0);
    CHECK(r.stream); /* Ollama's default */
    CHECK_EQ_INT(r.n_messages, 2);
    CHECK_EQ_INT(r.params.max_tokens, 9);
    CHECK_EQ_INT(r.params.sampling.top_k, 5);
    CHECK_EQ_INT(r.params.sampling.seed, 4);
    CHECK_NEAR(r.params.sampling.min_p, 0.1, 1e-6);
    CHECK_NEAR(r.params.sampling.repetition_penalty, 1.1, 1e-6);
    CHECK_NEAR(r.params.sampling.frequency_penalty, 0.25, 1e-6);
    CHECK_EQ_INT(r.params.n_stop, 1);
    CHECK(!r.params.raw && r.params.constraint == GEN_CONSTRAINT_NONE);
    chat_request_free(&r);

    CHECK_EQ_INT(parse_ollama("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                              "\"stream\":false,\"format\":\"json\",\"options\":{\"num_predict\":-1}}",
                              false, &r, &empty, &e),
                 0);
    CHECK(!r.stream && r.params.constraint == GEN_CONSTRAINT_JSON_OBJECT && r.params.max_tokens == 0);
    chat_request_free(&r);
    CHECK_EQ_INT(parse_ollama("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                              "\"format\":{\"type\":\"object\"}}",
                              false, &r, &empty, &e),
                 0);
    CHECK(r.params.constraint == GEN_CONSTRAINT_JSON_SCHEMA && r.params.constraint_len > 0);
    CHECK(!strcmp(r.constraint_param, "format"));
    chat_request_free(&r);
}

static void test_ollama_generate(void)
{
    chat_request r;
    api_error e;
    bool empty;
    CHECK_EQ_INT(parse_ollama("{\"model\":\"m\",\"prompt\":\"Why?\",\"system\":\"Be brief\"}", true, &r, &empty, &e),
                 0);
    CHECK(!empty && r.n_messages == 2 && r.messages[0].role == CHAT_ROLE_SYSTEM && r.messages[1].len == 4);
    chat_request_free(&r);
    CHECK_EQ_INT(parse_ollama("{\"model\":\"m\",\"prompt\":\"abc\",\"raw\":true}", true, &r, &empty, &e), 0);
    CHECK(r.params.raw && r.n_messages == 1);
    chat_request_free(&r);
    CHECK_EQ_INT(parse_ollama("{\"model\":\"m\"}", true, &r, &empty, &e), 0);
    CHECK(empty);
    chat_request_free(&r);
}

/* keep_alive: seconds, Go durations, negative for ever; anything else refused. */
static void test_ollama_keep_alive(void)
{
    static const struct { const char *body; long long ms; } good[] = {
        {"{\"keep_alive\":\"5m\"}", 300000},       {"{\"keep_alive\":\"1h30m\"}", 5400000},
        {"{\"keep_alive\":\"300ms\"}", 300},       {"{\"keep_alive\":\"1.5s\"}", 1500},
        {"{\"keep_alive\":\"0\"}", 0},             {"{\"keep_alive\":0}", 0},
        {"{\"keep_alive\":10}", 10000},            {"{\"keep_alive\":-1}", -1},
        {"{\"keep_alive\":\"-1m\"}", -1},          {"{\"keep_alive\":\"87600h1s\"}", -1},
    };
    static const char *const bad[] = {"{\"keep_alive\":\"5\"}", "{\"keep_alive\":\"\"}", "{\"keep_alive\":\"5x\"}",
                                      "{\"keep_alive\":\"m\"}", "{\"keep_alive\":\"1..2s\"}", "{\"keep_alive\":true}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        json_t *root = json_loads(good[i].body, 0, NULL);
        long long ms = 12345;
        bool present = false;
        api_error e;
        CHECKF(api_ollama_keep_alive(root, &ms, &present, &e) == 0 && present && ms == good[i].ms, "%s: %lld",
               good[i].body, ms);
        json_decref(root);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *root = json_loads(bad[i], 0, NULL);
        long long ms;
        bool present;
        api_error e;
        memset(&e, 0, sizeof e);
        CHECKF(api_ollama_keep_alive(root, &ms, &present, &e) < 0 && !strcmp(e.param, "keep_alive"), "%s", bad[i]);
        json_decref(root);
    }
    json_t *none = json_loads("{}", 0, NULL);
    long long ms;
    bool present = true;
    api_error e;
    CHECK(api_ollama_keep_alive(none, &ms, &present, &e) == 0 && !present);
    json_decref(none);
}

static void test_ollama_refusals(void)
{
    const char *msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]";
    char body[256];
    snprintf(body, sizeof body, "{%s,\"options\":{\"mirostat\":1}}", msgs);
    expect_ollama_reject(body, false, "mirostat");
    snprintf(body, sizeof body, "{%s,\"options\":{\"num_ctx\":4096}}", msgs);
    expect_ollama_reject(body, false, "num_ctx");
    snprintf(body, sizeof body, "{%s,\"options\":{\"temperature\":-1}}", msgs);
    expect_ollama_reject(body, false, "temperature");
    snprintf(body, sizeof body, "{%s,\"options\":{\"num_predict\":0}}", msgs);
    expect_ollama_reject(body, false, "num_predict");
    snprintf(body, sizeof body, "{%s,\"format\":\"xml\"}", msgs);
    expect_ollama_reject(body, false, "format");
    snprintf(body, sizeof body, "{%s,\"tools\":[{}]}", msgs);
    expect_ollama_reject(body, false, "tools");
    snprintf(body, sizeof body, "{%s,\"think\":true}", msgs);
    expect_ollama_reject(body, false, "think");
    snprintf(body, sizeof body, "{%s,\"extra\":1}", msgs);
    expect_ollama_reject(body, false, "extra");
    expect_ollama_reject("{\"messages\":[]}", false, "messages");
    expect_ollama_reject("{\"prompt\":\"x\",\"images\":[\"aGk=\"]}", true, "images");
    expect_ollama_reject("{\"prompt\":\"x\",\"template\":\"{{ .Prompt }}\"}", true, "template");
    expect_ollama_reject("{\"prompt\":\"x\",\"context\":[1,2]}", true, "context");
    expect_ollama_reject("{\"prompt\":\"x\",\"raw\":true,\"system\":\"s\"}", true, "system");
    expect_ollama_reject("{\"prompt\":7}", true, "prompt");
    expect_ollama_reject("", true, "empty");
}

static void test_ollama_formats(void)
{
    answer_options opts = {.format = API_FORMAT_OLLAMA_CHAT, .n_choices = 1};
    api_reply_view v = {.model = "m", .opts = &opts, .total_ms = 3, .prompt_ms = 1, .generate_ms = 2,
                        .prompt_tokens = 4, .completion_tokens = 5};
    api_reply_part part = {0, "Hi", 2, NULL, 0, 0, NULL};
    size_t len;
    char *line = api_format_delta(&v, &part, &len);
    CHECK(line && line[len - 1] == '\n' && !memchr(line, '\n', len - 1));
    json_t *o = json_loads(line, 0, NULL);
    CHECK(o && !strcmp(json_string_value(json_object_get(json_object_get(o, "message"), "content")), "Hi"));
    CHECK(json_is_false(json_object_get(o, "done")));
    const char *stamp = json_string_value(json_object_get(o, "created_at"));
    CHECK(stamp && strlen(stamp) == 30 && stamp[29] == 'Z');
    json_decref(o);
    api_free(line);
    part = (api_reply_part){.choice = 0, .finish = "stop"};
    line = api_format_close(&v, &part, &len);
    o = json_loads(line, 0, NULL);
    CHECK(o && json_is_true(json_object_get(o, "done")));
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "eval_duration")), 2000000);
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "prompt_eval_count")), 4);
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "eval_count")), 5);
    CHECK(!strcmp(json_string_value(json_object_get(o, "done_reason")), "stop"));
    json_decref(o);
    api_free(line);
    opts.format = API_FORMAT_OLLAMA_GENERATE;
    api_reply_part whole = {0, "Answer", 6, NULL, 0, 0, "length"};
    char *body = api_format_body(&v, &whole, 1, &len);
    o = json_loads(body, 0, NULL);
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "response")), "Answer") &&
          json_is_true(json_object_get(o, "done")));
    json_decref(o);
    api_free(body);
    CHECK(!strcmp(api_format_content_type(API_FORMAT_OLLAMA_CHAT), "application/x-ndjson"));
    CHECK(!strcmp(api_format_content_type(API_FORMAT_TEXT), "text/event-stream"));
}

/* ---- embeddings ---------------------------------------------------------------------------- */

static void test_embed_requests(void)
{
    embed_request r;
    api_error e;
    const char *b = "{\"input\":[\"a\",\"bc\",[1,2,3]],\"model\":\"x\",\"dimensions\":4,\"encoding_format\":\"base64\"}";
    CHECK_EQ_INT(api_parse_embed_request(b, strlen(b), ROUTE_EMBEDDINGS, &r, &e), 0);
    CHECK_EQ_INT(r.n_inputs, 3);
    CHECK(r.inputs[1].len == 2 && r.inputs[2].n_tokens == 3 && r.inputs[2].tokens[2] == 3);
    CHECK(r.base64 && r.dimensions == 4 && !r.ollama && !r.options.truncate && r.options.normalize);
    CHECK(r.options.pooling == EMBED_POOL_MODEL);
    embed_request_free(&r);
    b = "{\"input\":[4,5],\"pooling\":\"mean\"}";
    CHECK_EQ_INT(api_parse_embed_request(b, strlen(b), ROUTE_EMBEDDINGS, &r, &e), 0);
    CHECK(r.n_inputs == 1 && r.inputs[0].n_tokens == 2 && r.options.pooling == EMBED_POOL_MEAN);
    embed_request_free(&r);
    b = "{\"model\":\"m\",\"input\":\"x\",\"truncate\":false,\"keep_alive\":0}";
    CHECK_EQ_INT(api_parse_embed_request(b, strlen(b), ROUTE_OLLAMA_EMBED, &r, &e), 0);
    CHECK(r.ollama && !r.legacy && !r.options.truncate);
    embed_request_free(&r);
    b = "{\"model\":\"m\",\"prompt\":\"x\"}";
    CHECK_EQ_INT(api_parse_embed_request(b, strlen(b), ROUTE_OLLAMA_EMBEDDINGS, &r, &e), 0);
    CHECK(r.legacy && r.n_inputs == 1 && r.options.truncate);
    embed_request_free(&r);

    static const struct {
        enum api_route route;
        const char *body, *param;
    } bad[] = {
        {ROUTE_EMBEDDINGS, "{}", "input"},
        {ROUTE_EMBEDDINGS, "{\"input\":\"\"}", "input"},
        {ROUTE_EMBEDDINGS, "{\"input\":[]}", "input"},
        {ROUTE_EMBEDDINGS, "{\"input\":[{}]}", "input"},
        {ROUTE_EMBEDDINGS, "{\"input\":[[1,\"a\"]]}", "input"},
        {ROUTE_EMBEDDINGS, "{\"input\":\"a\",\"dimensions\":0}", "dimensions"},
        {ROUTE_EMBEDDINGS, "{\"input\":\"a\",\"encoding_format\":\"int8\"}", "encoding_format"},
        {ROUTE_EMBEDDINGS, "{\"input\":\"a\",\"pooling\":\"max\"}", "pooling"},
        {ROUTE_EMBEDDINGS, "{\"input\":\"a\",\"truncate\":true}", "truncate"},
        {ROUTE_OLLAMA_EMBED, "{\"input\":\"a\",\"options\":{\"temperature\":1}}", "options"},
        {ROUTE_OLLAMA_EMBED, "{\"input\":\"a\",\"encoding_format\":\"float\"}", "encoding_format"},
        {ROUTE_OLLAMA_EMBEDDINGS, "{\"input\":\"a\"}", "input"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = api_parse_embed_request(bad[i].body, strlen(bad[i].body), bad[i].route, &r, &e);
        CHECKF(rc == -1 && e.status == 400 && !strcmp(e.param, bad[i].param), "%s: rc %d param '%s'", bad[i].body,
               rc, e.param);
        if (rc == 0)
            embed_request_free(&r);
    }
}

static void test_matryoshka_and_base64(void)
{
    float rows[2 * 4] = {3, 4, 100, 100, 0, 0, 1, 1};
    api_embed_truncate(rows, 2, 4, 2);
    CHECK_NEAR(rows[0], 0.6, 1e-6);
    CHECK_NEAR(rows[1], 0.8, 1e-6);
    CHECK_NEAR(rows[2], 0, 0); /* an all-zero prefix stays zero */
    CHECK_NEAR(rows[3], 0, 0);
    float v[2] = {1.0f, -2.5f};
    char *b64 = api_base64_floats(v, 2);
    /* 1.0f = 00 00 80 3f, -2.5f = 00 00 20 c0 (little-endian) */
    CHECK(b64 && !strcmp(b64, "AACAPwAAIMA="));
    free(b64);
    float one = 0.5f;
    b64 = api_base64_floats(&one, 1);
    CHECK(b64 && !strcmp(b64, "AAAAPw=="));
    free(b64);
}

static void test_embed_bodies(void)
{
    embed_request r;
    api_error e;
    const char *b = "{\"input\":[\"a\",\"b\"]}";
    CHECK_EQ_INT(api_parse_embed_request(b, strlen(b), ROUTE_EMBEDDINGS, &r, &e), 0);
    float rows[4] = {0.6f, 0.8f, 1, 0};
    size_t len;
    char *body = api_embed_body(&r, "m", rows, 2, 2, 5, &len);
    json_t *o = json_loads(body, 0, NULL);
    CHECK(o && !strcmp(json_string_value(json_object_get(o, "object")), "list"));
    json_t *d1 = json_array_get(json_object_get(o, "data"), 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(d1, "index")), 1);
    CHECK_NEAR(json_real_value(json_array_get(json_object_get(d1, "embedding"), 0)), 1, 1e-6);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(o, "usage"), "prompt_tokens")), 5);
    json_decref(o);
    api_free(body);
    embed_request_free(&r);
    b = "{\"input\":[\"a\",\"b\"]}";
    CHECK_EQ_INT(api_parse_embed_request(b, strlen(b), ROUTE_OLLAMA_EMBED, &r, &e), 0);
    body = api_embed_body(&r, "m", rows, 2, 2, 5, &len);
    o = json_loads(body, 0, NULL);
    CHECK(o && json_array_size(json_object_get(o, "embeddings")) == 2 &&
          json_integer_value(json_object_get(o, "prompt_eval_count")) == 5);
    json_decref(o);
    api_free(body);
    embed_request_free(&r);
}

/* ---- routes ------------------------------------------------------------------------------------ */

static void test_routes(void)
{
    static const struct {
        const char *method, *path;
        enum api_route route;
        bool ok;
    } cases[] = {
        {"POST", "/v1/completions", ROUTE_TEXT_COMPLETIONS, true}, {"GET", "/v1/completions", ROUTE_TEXT_COMPLETIONS, false},
        {"POST", "/v1/embeddings", ROUTE_EMBEDDINGS, true},        {"GET", "/api/tags", ROUTE_OLLAMA_TAGS, true},
        {"HEAD", "/api/version", ROUTE_OLLAMA_VERSION, true},      {"POST", "/api/tags", ROUTE_OLLAMA_TAGS, false},
        {"POST", "/api/show", ROUTE_OLLAMA_SHOW, true},            {"POST", "/api/chat", ROUTE_OLLAMA_CHAT, true},
        {"POST", "/api/generate", ROUTE_OLLAMA_GENERATE, true},    {"POST", "/api/embed", ROUTE_OLLAMA_EMBED, true},
        {"POST", "/api/embeddings", ROUTE_OLLAMA_EMBEDDINGS, true}, {"POST", "/api/pull", ROUTE_NONE, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_route_match m = api_route_for(cases[i].method, cases[i].path);
        CHECKF(m.route == cases[i].route && m.method_ok == cases[i].ok, "%s %s", cases[i].method, cases[i].path);
        if (m.route != ROUTE_NONE)
            CHECK(m.needs_auth);
    }
    CHECK(api_route_is_ollama(ROUTE_OLLAMA_CHAT) && !api_route_is_ollama(ROUTE_EMBEDDINGS));
    CHECK(api_route_takes_body(ROUTE_OLLAMA_SHOW) && !api_route_takes_body(ROUTE_OLLAMA_TAGS));
    CHECK(strcmp(api_route_name(ROUTE_OLLAMA_EMBED), "other") != 0);
}

int main(void)
{
    api_json_init();
    RUN(test_text_request);
    RUN(test_text_refusals);
    RUN(test_legacy_logprobs);
    RUN(test_text_formats);
    RUN(test_ollama_chat);
    RUN(test_ollama_generate);
    RUN(test_ollama_refusals);
    RUN(test_ollama_keep_alive);
    RUN(test_ollama_formats);
    RUN(test_embed_requests);
    RUN(test_matryoshka_and_base64);
    RUN(test_embed_bodies);
    RUN(test_routes);
    return test_summary();
}

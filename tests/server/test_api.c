/* The server layer's model-free parts: request validation, response and SSE
 * formatting, ids, routing, the API key check and the metrics text. */
#include <jansson.h>
#include <string.h>

#include "server/server_internal.h"
#include "test.h"

static gen_params defaults(void)
{
    gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling.temperature = 1.0f;
    p.sampling.top_p = 1.0f;
    p.sampling.repetition_penalty = 1.0f;
    p.sampling.seed = 42;
    return p;
}

static int parse(const char *body, chat_request *r, api_error *e)
{
    gen_params d = defaults();
    return api_parse_chat_request(body, strlen(body), &d, r, e);
}

/* Expects a 400 naming param (NULL: no param) with message containing what. */
static void expect_reject(const char *body, const char *param, const char *what)
{
    chat_request r;
    api_error e;
    memset(&e, 0, sizeof e);
    int rc = parse(body, &r, &e);
    CHECKF(rc == -1, "accepted: %s", body);
    if (rc != -1) {
        chat_request_free(&r);
        return;
    }
    CHECK_EQ_INT(e.status, 400);
    CHECKF(!strcmp(e.param, param ? param : ""), "param '%s', want '%s' for %s", e.param, param ? param : "",
           body);
    CHECKF(!what || strstr(e.message, what), "message '%s' lacks '%s'", e.message, what);
    CHECK(r.messages == NULL && r.text == NULL);
}

static void test_minimal_request(void)
{
    chat_request r;
    api_error e;
    int rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"Hello, how are you?\"}]}", &r, &e);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(r.n_messages, 1);
    CHECK_EQ_INT(r.messages[0].role, CHAT_ROLE_USER);
    CHECK_EQ_INT(r.messages[0].len, 19);
    CHECK(!memcmp(r.messages[0].text, "Hello, how are you?", 19));
    CHECK(!r.stream && !r.include_usage);
    CHECK_EQ_INT(r.params.max_tokens, 0);
    CHECK_EQ_INT(r.params.n_stop, 0);
    CHECK_NEAR(r.params.sampling.temperature, 1.0, 0);
    CHECK_EQ_INT(r.params.sampling.seed, 42);
    chat_request_free(&r);
}

static void test_full_request(void)
{
    const char *body =
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"bc\"}]},"
        "{\"role\":\"assistant\",\"content\":\"ok\",\"name\":\"x\"},{\"role\":\"user\",\"content\":\"\\u00e9\\u0000z\"}],"
        "\"max_tokens\":7,\"max_completion_tokens\":9,\"temperature\":0,\"top_p\":0.5,\"top_k\":40,\"min_p\":0.1,"
        "\"seed\":-1,\"stop\":[\"\\n\\n\",\"END\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"presence_penalty\":-2,\"frequency_penalty\":2,\"repetition_penalty\":1.1,\"n\":1,"
        "\"unknown\":{\"deep\":[1,2,3]},\"logprobs\":null}";
    chat_request r;
    api_error e;
    int rc = parse(body, &r, &e);
    CHECKF(rc == 0, "%s", e.message);
    if (rc)
        return;
    CHECK_EQ_INT(r.n_messages, 4);
    CHECK_EQ_INT(r.messages[0].role, CHAT_ROLE_SYSTEM);
    CHECK_EQ_INT(r.messages[2].role, CHAT_ROLE_ASSISTANT);
    CHECK(r.messages[1].len == 4 && !memcmp(r.messages[1].text, "a\nbc", 4));
    CHECK(r.messages[3].len == 4 && !memcmp(r.messages[3].text, "\xc3\xa9\0z", 4));
    CHECK_EQ_INT(r.params.max_tokens, 9);
    CHECK_NEAR(r.params.sampling.temperature, 0, 0);
    CHECK_NEAR(r.params.sampling.top_p, 0.5, 1e-7);
    CHECK_EQ_INT(r.params.sampling.top_k, 40);
    CHECK_NEAR(r.params.sampling.min_p, 0.1, 1e-7);
    CHECK(r.params.sampling.seed == UINT64_MAX);
    CHECK_NEAR(r.params.sampling.presence_penalty, -2, 0);
    CHECK_NEAR(r.params.sampling.frequency_penalty, 2, 0);
    CHECK_NEAR(r.params.sampling.repetition_penalty, 1.1, 1e-6);
    CHECK_EQ_INT(r.params.n_stop, 2);
    CHECK(r.params.stop == r.stop_ptrs);
    CHECK(!strcmp(r.params.stop[0], "\n\n") && !strcmp(r.params.stop[1], "END"));
    CHECK(r.stream && r.include_usage);
    chat_request_free(&r);
}

static void test_nulls_mean_unset(void)
{
    chat_request r;
    api_error e;
    int rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":null,\"stop\":null,"
                   "\"max_tokens\":null,\"stream\":null,\"stream_options\":null,\"seed\":null,\"model\":null}",
                   &r, &e);
    CHECK_EQ_INT(rc, 0);
    CHECK_NEAR(r.params.sampling.temperature, 1.0, 0);
    CHECK_EQ_INT(r.params.n_stop, 0);
    CHECK(!r.stream);
    chat_request_free(&r);
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":\"###\",\"max_tokens\":1}", &r, &e);
    CHECK_EQ_INT(rc, 0);
    CHECK(r.params.n_stop == 1 && !strcmp(r.params.stop[0], "###"));
    CHECK_EQ_INT(r.params.max_tokens, 1);
    chat_request_free(&r);
}

static void test_body_errors(void)
{
    expect_reject("", NULL, "empty");
    expect_reject("{\"messages\":", NULL, "not valid JSON");
    expect_reject("{\"messages\":[]} trailing", NULL, "not valid JSON");
    expect_reject("[1,2]", NULL, "must be a JSON object");
    expect_reject("\"hi\"", NULL, "JSON");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", NULL, "UTF-8");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", NULL, "UTF-8");
    expect_reject("{\"a\":1,\"a\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL, "duplicate");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":NaN}", NULL, "JSON");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":1e999}", NULL, "JSON");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":99999999999999999999}", NULL,
                  "JSON");
}

static void test_deep_nesting(void)
{
    /* 100k levels: refused by the parser's depth limit, not by the stack. */
    size_t depth = 100000;
    char *body = malloc(depth * 2 + 64);
    size_t at = 0;
    at += (size_t)sprintf(body, "{\"messages\":");
    for (size_t i = 0; i < depth; i++)
        body[at++] = '[';
    for (size_t i = 0; i < depth; i++)
        body[at++] = ']';
    body[at++] = '}';
    body[at] = '\0';
    expect_reject(body, NULL, "nested too deeply");
    free(body);
}

static void test_message_errors(void)
{
    expect_reject("{}", "messages", "required");
    expect_reject("{\"messages\":null}", "messages", "required");
    expect_reject("{\"messages\":\"hi\"}", "messages", "array");
    expect_reject("{\"messages\":[]}", "messages", "empty");
    expect_reject("{\"messages\":[\"hi\"]}", "messages[0]", "object");
    expect_reject("{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "required");
    expect_reject("{\"messages\":[{\"role\":1,\"content\":\"x\"}]}", "messages[0].role", "string");
    expect_reject("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0].role", "one of");
    expect_reject("{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", "required");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", "string");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages[0].content", "string");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
                  "messages[0].content[0]", "type 'text'");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
                  "messages[0].content[0]", "text");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}", "messages[0].content[0]", "object");
    expect_reject("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"bot\",\"content\":\"y\"}]}",
                  "messages[1].role", NULL);
    expect_reject("{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages", "role 'user'");
}

/* Each parameter with a wrong type and with an out-of-range value. */
static void test_parameter_errors(void)
{
    static const struct {
        const char *field, *param;
    } cases[] = {
        {"\"model\":5", "model"},
        {"\"max_tokens\":\"5\"", "max_tokens"},
        {"\"max_tokens\":0", "max_tokens"},
        {"\"max_tokens\":1.5", "max_tokens"},
        {"\"max_tokens\":3000000000", "max_tokens"},
        {"\"max_completion_tokens\":-1", "max_completion_tokens"},
        {"\"max_completion_tokens\":true", "max_completion_tokens"},
        {"\"temperature\":\"hot\"", "temperature"},
        {"\"temperature\":-0.1", "temperature"},
        {"\"temperature\":2.5", "temperature"},
        {"\"top_p\":[1]", "top_p"},
        {"\"top_p\":1.01", "top_p"},
        {"\"top_p\":0", "top_p"},
        /* Above 0 as a double, 0 as the sampler's float (found by fuzz_request). */
        {"\"top_p\":1e-50", "top_p"},
        {"\"repetition_penalty\":1e-300", "repetition_penalty"},
        {"\"top_k\":1.5", "top_k"},
        {"\"top_k\":-1", "top_k"},
        {"\"min_p\":{}", "min_p"},
        {"\"min_p\":2", "min_p"},
        {"\"seed\":1.5", "seed"},
        {"\"seed\":\"1\"", "seed"},
        {"\"stop\":5", "stop"},
        {"\"stop\":[\"a\",5]", "stop"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop"},
        {"\"stop\":\"\"", "stop"},
        {"\"stop\":\"a\\u0000b\"", "stop"},
        {"\"stream\":\"yes\"", "stream"},
        {"\"stream\":1", "stream"},
        {"\"stream_options\":true", "stream_options"},
        {"\"stream_options\":{\"include_usage\":\"true\"}", "stream_options.include_usage"},
        {"\"presence_penalty\":\"0\"", "presence_penalty"},
        {"\"presence_penalty\":2.1", "presence_penalty"},
        {"\"frequency_penalty\":false", "frequency_penalty"},
        {"\"frequency_penalty\":-3", "frequency_penalty"},
        {"\"repetition_penalty\":\"1\"", "repetition_penalty"},
        {"\"repetition_penalty\":0", "repetition_penalty"},
        {"\"repetition_penalty\":11", "repetition_penalty"},
        {"\"n\":2", "n"},
        {"\"n\":\"1\"", "n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}", cases[i].field);
        expect_reject(body, cases[i].param, cases[i].param);
    }
    char stop[600] = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":\"";
    size_t at = strlen(stop);
    memset(stop + at, 'a', 257);
    strcpy(stop + at + 257, "\"}");
    expect_reject(stop, "stop", "256");
}

static json_t *load(const char *text, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb(text, len, 0, &err);
    CHECKF(v != NULL, "invalid JSON: %s", err.text);
    return v;
}

static bool is_id(const char *id)
{
    if (strlen(id) != API_ID_LEN || strncmp(id, "cfai-", 5))
        return false;
    const char *u = id + 5;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !strchr("0123456789abcdef", u[i]))
            return false;
    }
    return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

static void test_ids(void)
{
    char a[API_ID_LEN + 1], b[API_ID_LEN + 1];
    CHECK_EQ_INT(api_new_id(a, NULL), 0);
    CHECK_EQ_INT(api_new_id(b, NULL), 0);
    CHECKF(is_id(a), "%s", a);
    CHECKF(is_id(b), "%s", b);
    CHECK(strcmp(a, b) != 0);
}

static void test_completion_body(void)
{
    api_usage u = {12, 3};
    size_t len;
    char *body = api_completion_body("cfai-x", 1710766200, "elliott-1", "I'm \"fine\"\n", 11, "stop", &u, &len);
    CHECK(body && strlen(body) == len);
    json_t *v = load(body, len);
    CHECK(!strcmp(json_string_value(json_object_get(v, "id")), "cfai-x"));
    CHECK(!strcmp(json_string_value(json_object_get(v, "object")), "chat.completion"));
    CHECK_EQ_INT(json_integer_value(json_object_get(v, "created")), 1710766200);
    CHECK(!strcmp(json_string_value(json_object_get(v, "model")), "elliott-1"));
    json_t *c0 = json_array_get(json_object_get(v, "choices"), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(c0, "index")), 0);
    json_t *msg = json_object_get(c0, "message");
    CHECK(!strcmp(json_string_value(json_object_get(msg, "role")), "assistant"));
    CHECK(!strcmp(json_string_value(json_object_get(msg, "content")), "I'm \"fine\"\n"));
    CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "stop"));
    json_t *usage = json_object_get(v, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(usage, "prompt_tokens")), 12);
    CHECK_EQ_INT(json_integer_value(json_object_get(usage, "completion_tokens")), 3);
    CHECK_EQ_INT(json_integer_value(json_object_get(usage, "total_tokens")), 15);
    json_decref(v);
    api_free(body);
}

static json_t *load_event(char *ev, size_t len)
{
    CHECK(len > 8 && !strncmp(ev, "data: ", 6) && !strcmp(ev + len - 2, "\n\n"));
    CHECK(strlen(ev) == len);
    return load(ev + 6, len - 8);
}

static void test_stream_chunks(void)
{
    size_t len;
    char *ev = api_chunk_role("cfai-s", 5, "m", false, &len);
    json_t *v = load_event(ev, len);
    CHECK(!strcmp(json_string_value(json_object_get(v, "object")), "chat.completion.chunk"));
    json_t *c0 = json_array_get(json_object_get(v, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "delta"), "role")), "assistant"));
    CHECK(json_is_null(json_object_get(c0, "finish_reason")));
    CHECK(json_object_get(v, "usage") == NULL);
    json_decref(v);
    api_free(ev);

    ev = api_chunk_content("cfai-s", 5, "m", "h\xc3\xa9", 3, true, &len);
    v = load_event(ev, len);
    c0 = json_array_get(json_object_get(v, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "delta"), "content")), "h\xc3\xa9"));
    CHECK(json_is_null(json_object_get(v, "usage")));
    CHECK(!strcmp(json_string_value(json_object_get(v, "id")), "cfai-s"));
    CHECK_EQ_INT(json_integer_value(json_object_get(v, "created")), 5);
    json_decref(v);
    api_free(ev);

    ev = api_chunk_finish("cfai-s", 5, "m", "length", false, &len);
    v = load_event(ev, len);
    c0 = json_array_get(json_object_get(v, "choices"), 0);
    CHECK_EQ_INT(json_object_size(json_object_get(c0, "delta")), 0);
    CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length"));
    json_decref(v);
    api_free(ev);

    api_usage u = {4, 5};
    ev = api_chunk_usage("cfai-s", 5, "m", &u, &len);
    v = load_event(ev, len);
    CHECK_EQ_INT(json_array_size(json_object_get(v, "choices")), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "usage"), "total_tokens")), 9);
    json_decref(v);
    api_free(ev);
    CHECK(!strcmp(API_SSE_DONE, "data: [DONE]\n\n"));
}

static void test_error_body(void)
{
    api_error e;
    api_fail(&e, 400, "messages", "bad %d", 7);
    e.code = "context_length_exceeded";
    size_t len;
    char *body = api_error_body(&e, &len);
    json_t *v = load(body, len);
    json_t *err = json_object_get(v, "error");
    CHECK(!strcmp(json_string_value(json_object_get(err, "message")), "bad 7"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "type")), "invalid_request_error"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "param")), "messages"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "code")), "context_length_exceeded"));
    json_decref(v);
    api_free(body);

    api_fail(&e, 500, NULL, "AI service is unavailable");
    char *ev = api_chunk_error(&e, &len);
    v = load_event(ev, len);
    err = json_object_get(v, "error");
    CHECK(json_is_null(json_object_get(err, "param")) && json_is_null(json_object_get(err, "code")));
    CHECK(!strcmp(json_string_value(json_object_get(err, "type")), "server_error"));
    json_decref(v);
    api_free(ev);
}

/* jansson quotes the bytes near a syntax error and may cut a character in two
 * (here U+02DA after a bad escape): the error body must still be built (found by
 * fuzz_request; the connection used to be dropped without an answer). */
static void test_error_body_quotes_invalid_utf8(void)
{
    static const char body[] = "{\"messages\":\"\\u1\xcb\x9a" "9\"}";
    chat_request r;
    api_error e;
    CHECK_EQ_INT(parse(body, &r, &e), -1);
    CHECK_EQ_INT(e.status, 400);
    size_t len;
    char *out = api_error_body(&e, &len);
    CHECK(out != NULL);
    if (!out)
        return;
    json_t *v = load(out, len);
    const char *message = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
    CHECKF(message && strstr(message, "not valid JSON") && strstr(message, "\xef\xbf\xbd"), "%s",
           message ? message : "(none)");
    json_decref(v);
    api_free(out);

    api_fail(&e, 400, "stop", "cut inside a character: \xe2\x82");
    char *ev = api_chunk_error(&e, &len);
    CHECK(ev != NULL);
    if (ev) {
        json_decref(load_event(ev, len));
        api_free(ev);
    }
}

static void test_models_body(void)
{
    size_t len;
    char *body = api_models_body("elliott-1", 100, &len);
    json_t *v = load(body, len);
    CHECK(!strcmp(json_string_value(json_object_get(v, "object")), "list"));
    json_t *m = json_array_get(json_object_get(v, "data"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(m, "id")), "elliott-1"));
    CHECK(!strcmp(json_string_value(json_object_get(m, "object")), "model"));
    json_decref(v);
    api_free(body);
}

static void test_utf8_repair(void)
{
    size_t n;
    char *s = api_utf8_repair("ok\xc3\xa9\xf0\x9f\x98\x80", 9, &n);
    CHECK(n == 9 && !memcmp(s, "ok\xc3\xa9\xf0\x9f\x98\x80", 9));
    api_free(s);
    /* a lone continuation byte, a truncated sequence, an overlong, a surrogate */
    s = api_utf8_repair("a\x80" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80", 12, &n);
    CHECK(!strcmp(s, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd"
                     "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    api_free(s);
    /* a completion whose text is invalid still yields valid JSON */
    api_usage u = {1, 1};
    char *body = api_completion_body("i", 1, "m", "\xff", 1, "stop", &u, &n);
    json_t *v = load(body, n);
    json_decref(v);
    api_free(body);
}

static void test_routes(void)
{
    api_route_match m = api_route_for("POST", "/v1/ai/chat/completions");
    CHECK(m.route == ROUTE_COMPLETIONS && m.method_ok && m.needs_auth);
    CHECK(api_route_for("POST", "/v1/ai/chat/completions/").route == ROUTE_COMPLETIONS);
    CHECK(api_route_for("POST", "/v1/chat/completions").route == ROUTE_COMPLETIONS);
    CHECK(api_route_for("POST", "/v1/chat/completions/x").route == ROUTE_NONE);
    m = api_route_for("GET", "/v1/chat/completions");
    CHECK(!m.method_ok && !strcmp(m.allow, "POST, OPTIONS"));
    m = api_route_for("DELETE", "/health");
    CHECK(m.route == ROUTE_HEALTH && !m.method_ok && !strcmp(m.allow, "GET, HEAD, OPTIONS"));
    m = api_route_for("GET", "/health");
    CHECK(m.method_ok && !m.needs_auth);
    CHECK(api_route_for("HEAD", "/").method_ok && !api_route_for("GET", "/").needs_auth);
    CHECK(api_route_for("GET", "/metrics").needs_auth);
    CHECK(api_route_for("GET", "/v1/models").route == ROUTE_MODELS);
    CHECK(api_route_for("GET", "/v1/models/elliott-1").route == ROUTE_MODEL);
    CHECK(api_route_for("GET", "/v1/models/").route == ROUTE_NONE);
    CHECK(api_route_for("GET", "/nope").route == ROUTE_NONE);
    m = api_route_for("OPTIONS", "/v1/chat/completions");
    CHECK(m.method_ok && !m.needs_auth);
}

static void test_auth(void)
{
    CHECK(api_authorized("Bearer s3cret", "s3cret"));
    CHECK(api_authorized("bearer s3cret", "s3cret"));
    CHECK(!api_authorized(NULL, "s3cret"));
    CHECK(!api_authorized("", "s3cret"));
    CHECK(!api_authorized("Bearer", "s3cret"));
    CHECK(!api_authorized("Bearer ", "s3cret"));
    CHECK(!api_authorized("Bearer s3cre", "s3cret"));
    CHECK(!api_authorized("Bearer s3cretX", "s3cret"));
    CHECK(!api_authorized("Bearer S3cret", "s3cret"));
    CHECK(!api_authorized("Basic s3cret", "s3cret"));
    CHECK(!api_authorized("s3cret", "s3cret"));
}

static void test_metrics_text(void)
{
    server_metrics m;
    metrics_init(&m);
    metrics_record_request(&m, ROUTE_COMPLETIONS, 200, 0.02);
    metrics_record_request(&m, ROUTE_COMPLETIONS, 200, 3.0);
    metrics_record_request(&m, ROUTE_HEALTH, 503, 0.001);
    metrics_record_request(&m, ROUTE_NONE, 418, 0.001);
    metrics_record_ttft(&m, 0.2);
    metrics_record_tokens(&m, 10, 5);
    metrics_record_cancel(&m);
    metrics_gauges g = {.ready = 1, .queue_depth = 2, .active_slots = 1, .in_flight = 3, .open_connections = 7,
                        .connections_timed_out = 4};
    size_t len;
    char *t = metrics_render(&m, &g, &len);
    CHECK(t && strlen(t) == len);
    CHECK(strstr(t, "elliott_http_requests_total{route=\"chat_completions\",status=\"200\"} 2\n"));
    CHECK(strstr(t, "elliott_http_requests_total{route=\"health\",status=\"503\"} 1\n"));
    CHECK(strstr(t, "elliott_http_requests_total{route=\"other\",status=\"other\"} 1\n"));
    CHECK(strstr(t, "elliott_prompt_tokens_total 10\n"));
    CHECK(strstr(t, "elliott_completion_tokens_total 5\n"));
    CHECK(strstr(t, "elliott_requests_cancelled_total 1\n"));
    CHECK(strstr(t, "elliott_http_request_duration_seconds_bucket{le=\"0.025\"} 3\n"));
    CHECK(strstr(t, "elliott_http_request_duration_seconds_bucket{le=\"2.5\"} 3\n"));
    CHECK(strstr(t, "elliott_http_request_duration_seconds_bucket{le=\"5\"} 4\n"));
    CHECK(strstr(t, "elliott_http_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
    CHECK(strstr(t, "elliott_http_request_duration_seconds_count 4\n"));
    CHECK(strstr(t, "elliott_time_to_first_token_seconds_bucket{le=\"0.25\"} 1\n"));
    CHECK(strstr(t, "elliott_time_to_first_token_seconds_bucket{le=\"0.1\"} 0\n"));
    CHECK(strstr(t, "elliott_queue_depth 2\n"));
    CHECK(strstr(t, "elliott_active_slots 1\n"));
    CHECK(strstr(t, "elliott_model_ready 1\n"));
    CHECK(strstr(t, "elliott_http_connections_open 7\n"));
    CHECK(strstr(t, "elliott_http_connections_timed_out_total 4\n"));
    CHECK(strstr(t, "# TYPE elliott_time_to_first_token_seconds histogram\n"));
    /* every line is a comment or "name{labels} value" */
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        CHECK(nl != NULL);
        if (!nl)
            break;
        CHECK(line[0] == '#' || (line[0] >= 'a' && line[0] <= 'z' && memchr(line, ' ', (size_t)(nl - line))));
        line = nl + 1;
    }
    api_free(t);
    metrics_destroy(&m);
}

int main(void)
{
    api_json_init();
    RUN(test_minimal_request);
    RUN(test_full_request);
    RUN(test_nulls_mean_unset);
    RUN(test_body_errors);
    RUN(test_deep_nesting);
    RUN(test_message_errors);
    RUN(test_parameter_errors);
    RUN(test_ids);
    RUN(test_completion_body);
    RUN(test_stream_chunks);
    RUN(test_error_body);
    RUN(test_error_body_quotes_invalid_utf8);
    RUN(test_models_body);
    RUN(test_utf8_repair);
    RUN(test_routes);
    RUN(test_auth);
    RUN(test_metrics_text);
    return test_summary();
}

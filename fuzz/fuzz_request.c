/* libFuzzer target for the HTTP API's request parser and response formatting.
 *
 * The input is a request body. Checked on every input:
 * - parsing either fails with a 400 (or a 500 for memory) whose message is not
 *   empty and whose error body and SSE error event are valid JSON, leaving
 *   nothing behind; or succeeds with messages that lie inside the request's text
 *   buffer, at least one of them from the user, stop strings within their limits
 *   and sampling parameters the sampler accepts (so the engine never refuses what
 *   the API let through);
 * - any bytes (the raw input, and every parsed message) formatted as a completion
 *   body and as a content chunk give valid JSON whose content is the text with
 *   invalid UTF-8 replaced by U+FFFD, and equal to the text when it was valid. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/utf8_check.h"
#include "sampler/sampler.h"
#include "server/server_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_id[] = "cfai-00000000-0000-4000-8000-000000000000";

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_request: %s\n", what);
        abort();
    }
}

/* Parses a JSON text made by the server (NUL allowed: message text may hold it). */
static json_t *load(const char *text, size_t len, const char *what)
{
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!v) {
        fprintf(stderr, "fuzz_request: %s is not valid JSON: %s\n", what, jerr.text);
        abort();
    }
    return v;
}

static void check_content(json_t *content, const char *text, size_t len)
{
    check(json_is_string(content), "content is not a string");
    size_t fixed_len;
    char *fixed = api_utf8_repair(text, len, &fixed_len);
    check(fixed != NULL, "out of memory");
    check(valid_utf8((const unsigned char *)fixed, fixed_len), "repaired text is not valid UTF-8");
    check(json_string_length(content) == fixed_len && !memcmp(json_string_value(content), fixed, fixed_len),
          "content differs from the repaired text");
    if (valid_utf8((const unsigned char *)text, len))
        check(fixed_len == len && !memcmp(fixed, text, len), "valid UTF-8 was changed");
    api_free(fixed);
}

static void format_text(const char *text, size_t len)
{
    api_usage usage = {3, 4};
    size_t n;
    api_choice choice = {.text = text, .text_len = len, .finish = "stop"};
    char *body = api_completion_body(fuzz_id, 1710766200, "elliott-1", &choice, 1, &usage, &n);
    check(body != NULL, "completion body failed");
    json_t *root = load(body, n, "a completion body");
    json_t *message = json_object_get(json_array_get(json_object_get(root, "choices"), 0), "message");
    check_content(json_object_get(message, "content"), text, len);
    json_decref(root);
    api_free(body);

    char *event = api_chunk_content(fuzz_id, 1710766200, "elliott-1", text, len, len & 1, &n);
    check(event != NULL, "content chunk failed");
    check(n > 8 && !memcmp(event, "data: ", 6) && !memcmp(event + n - 2, "\n\n", 2), "chunk is not an SSE event");
    check(memchr(event, '\n', n - 2) == NULL, "chunk has a newline inside its data");
    root = load(event + 6, n - 8, "a content chunk");
    json_t *delta = json_object_get(json_array_get(json_object_get(root, "choices"), 0), "delta");
    check_content(json_object_get(delta, "content"), text, len);
    json_decref(root);
    api_free(event);
}

static void check_error(const api_error *e)
{
    check(e->status == 400 || e->status == 500, "a refusal that is neither 400 nor 500");
    check(e->message[0] != '\0', "a refusal without a message");
    size_t n;
    char *body = api_error_body(e, &n);
    check(body != NULL, "error body failed");
    json_t *root = load(body, n, "an error body");
    check(json_is_string(json_object_get(json_object_get(root, "error"), "message")), "error without message");
    json_decref(root);
    api_free(body);
    char *event = api_chunk_error(e, &n);
    check(event != NULL && n > 8 && !memcmp(event, "data: ", 6), "error event failed");
    json_decref(load(event + 6, n - 8, "an error event"));
    api_free(event);
}

static void check_request(const chat_request *r)
{
    check(r->n_messages > 0 && r->messages != NULL && r->text != NULL, "accepted without messages");
    bool has_user = false;
    for (size_t i = 0; i < r->n_messages; i++) {
        const chat_message *m = &r->messages[i];
        check(m->text >= r->text && m->len <= r->text_size && (size_t)(m->text - r->text) <= r->text_size - m->len,
              "message text outside the request's buffer");
        has_user |= m->role == CHAT_ROLE_USER;
        format_text(m->text, m->len);
    }
    check(has_user, "accepted without a user message");
    check(r->params.n_stop <= API_MAX_STOP && r->params.stop == r->stop_ptrs, "stop list out of bounds");
    for (size_t i = 0; i < r->params.n_stop; i++) {
        size_t len = strlen(r->stop_ptrs[i]);
        check(len > 0 && len <= API_MAX_STOP_BYTES, "stop string length out of bounds");
    }
    check(r->params.max_tokens >= 0, "negative max_tokens accepted");
    el_err err;
    if (sampler_params_validate(&r->params.sampling, &err) < 0) {
        fprintf(stderr, "fuzz_request: accepted sampling the sampler refuses: %s\n", err.msg);
        abort();
    }
}

/* Generated text read for tool calls, whole and byte by byte alike: the same calls,
 * never more than fit, names and arguments made only of the input's bytes. */
static void scan_calls(const char *text, size_t len)
{
    api_call_scanner whole, bytewise;
    api_call_scanner_init(&whole);
    api_call_scanner_init(&bytewise);
    check(api_call_scanner_feed(&whole, text, len) == 0, "scanner out of memory");
    for (size_t i = 0; i < len; i++)
        check(api_call_scanner_feed(&bytewise, text + i, 1) == 0, "scanner out of memory");
    check(whole.kind == bytewise.kind && whole.n_calls == bytewise.n_calls, "scanning depends on the pieces");
    check(whole.n_calls <= API_MAX_PARALLEL_CALLS, "more calls than fit");
    for (size_t i = 0; i < whole.n_calls; i++) {
        const api_scanned_call *a = &whole.calls[i], *b = &bytewise.calls[i];
        check(a->name.len <= len && a->arguments.len <= len, "a call longer than the text");
        check(a->name.len == b->name.len && a->arguments.len == b->arguments.len &&
                  (!a->name.len || !memcmp(a->name.data, b->name.data, a->name.len)) &&
                  (!a->arguments.len || !memcmp(a->arguments.data, b->arguments.data, a->arguments.len)),
              "a call depends on the pieces");
    }
    api_call_scanner_free(&whole);
    api_call_scanner_free(&bytewise);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gen_params defaults;
    gen_params_default(&defaults);
    defaults.sampling.seed = 7;

    chat_request r;
    api_error e = {0};
    if (api_parse_chat_request((const char *)data, size, &defaults, &r, &e) == 0) {
        check_request(&r);
        chat_request_free(&r);
    } else {
        check_error(&e);
        check(r.messages == NULL && r.text == NULL && r.stop_text[0] == NULL, "a refusal left memory behind");
    }
    format_text((const char *)data, size);
    scan_calls((const char *)data, size);
    return 0;
}

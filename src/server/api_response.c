/* Response bodies: completions, stream chunks, errors, the model list, and the
 * cfai- ids. Every buffer returned here is freed with api_free, which wipes it. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/server_internal.h"

int api_new_id(char out[API_ID_LEN + 1], el_err *err)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0)
            return el_fail(err, "getrandom failed");
        got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    memcpy(p, "cfai-", 5);
    p += 5;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = '\0';
    return 0;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if there is none. */
static size_t utf8_sequence(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

char *api_utf8_repair(const char *text, size_t len, size_t *out_len)
{
    /* Each bad byte becomes 3 bytes at most. */
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t at = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(s + i, len - i);
        if (n) {
            memcpy(out + at, s + i, n);
            at += n;
            i += n;
        } else {
            memcpy(out + at, "\xef\xbf\xbd", 3);
            at += 3;
            i++;
        }
    }
    out[at] = '\0';
    *out_len = at;
    return out;
}

json_t *api_json_text(const char *text, size_t len)
{
    size_t fixed_len;
    char *fixed = api_utf8_repair(text ? text : "", text ? len : 0, &fixed_len);
    if (!fixed)
        return NULL;
    json_t *v = json_stringn(fixed, fixed_len);
    api_free(fixed);
    return v;
}

char *api_json_dump_framed(json_t *v, const char *prefix, const char *suffix, size_t *len)
{
    if (!v)
        return NULL;
    char *json = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!json)
        return NULL;
    size_t plen = strlen(prefix), jlen = strlen(json), slen = strlen(suffix);
    char *out = malloc(plen + jlen + slen + 1);
    if (out) {
        memcpy(out, prefix, plen);
        memcpy(out + plen, json, jlen);
        memcpy(out + plen + jlen, suffix, slen + 1);
        *len = plen + jlen + slen;
    }
    api_free(json);
    return out;
}

char *api_error_body(const api_error *e, size_t *len)
{
    api_json_init();
    /* The message may quote the body (jansson's "near '...'") or be cut inside a
     * character: invalid UTF-8 there would fail the whole error response. */
    json_t *message = api_json_text(e->message, strnlen(e->message, sizeof e->message));
    if (!message)
        return NULL;
    json_t *err = json_pack("{s:o, s:s, s:o, s:o}", "message", message, "type",
                            e->type ? e->type : "invalid_request_error", "param",
                            e->param[0] ? json_string(e->param) : json_null(), "code",
                            e->code ? json_string(e->code) : json_null());
    return api_json_dump_framed(err ? json_pack("{s:o}", "error", err) : NULL, "", "", len);
}

static json_t *usage_object(const api_usage *u)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", u->prompt_tokens, "completion_tokens",
                     u->completion_tokens, "total_tokens", u->prompt_tokens + u->completion_tokens);
}

/* ---- logprobs ------------------------------------------------------------------ */

static json_t *token_entry(const api_logprobs *lp, int32_t token, float logprob)
{
    char bytes[DETOKENIZER_OUT_MAX];
    size_t n = lp->token_bytes(lp->cls, token, bytes, sizeof bytes);
    if (n > sizeof bytes)
        n = sizeof bytes;
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, json_integer((unsigned char)bytes[i]));
    json_t *text = api_json_text(bytes, n);
    explicit_bzero(bytes, sizeof bytes);
    /* -inf (a token the model cannot produce) has no JSON spelling: OpenAI reports -9999 */
    double value = isfinite(logprob) ? (double)logprob : -9999.0;
    return json_pack("{s:o, s:f, s:o}", "token", text, "logprob", value, "bytes", list);
}

static json_t *logprobs_object(const api_logprobs *lp)
{
    if (!lp)
        return json_null();
    json_t *content = json_array();
    for (size_t i = 0; content && i < lp->n; i++) {
        const gen_logprob *g = &lp->items[i];
        json_t *entry = token_entry(lp, g->token, g->logprob);
        json_t *top = json_array();
        for (int k = 0; top && k < g->n_top; k++)
            json_array_append_new(top, token_entry(lp, g->top_token[k], g->top_logprob[k]));
        if (!entry || !top || json_object_set_new(entry, "top_logprobs", top) < 0 ||
            json_array_append_new(content, entry) < 0) {
            json_decref(content);
            return NULL;
        }
    }
    return json_pack("{s:o, s:n}", "content", content, "refusal");
}

/* ---- tool calls ------------------------------------------------------------------ */

/* One call, whole (a completion) or as a delta (id and name only in the first). */
static json_t *call_object(const api_tool_call *c)
{
    json_t *args = api_json_text(c->arguments ? c->arguments : "", c->arguments_len);
    json_t *fn = json_pack("{s:o}", "arguments", args);
    if (fn && c->name)
        json_object_set_new(fn, "name", json_stringn(c->name, c->name_len));
    json_t *call = json_pack("{s:i, s:o}", "index", c->index, "function", fn);
    if (call && c->id) {
        json_object_set_new(call, "id", json_string(c->id));
        json_object_set_new(call, "type", json_string("function"));
    }
    return call;
}

static json_t *calls_array(const api_tool_call *calls, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, call_object(&calls[i])) < 0) {
            json_decref(list);
            return NULL;
        }
    return list;
}

/* ---- completions ------------------------------------------------------------------- */

static json_t *choice_object(const api_choice *c)
{
    json_t *content = c->text ? api_json_text(c->text, c->text_len) : json_null();
    json_t *message = json_pack("{s:s, s:o, s:n}", "role", "assistant", "content", content, "refusal");
    if (message && c->n_calls)
        json_object_set_new(message, "tool_calls", calls_array(c->calls, c->n_calls));
    return json_pack("{s:i, s:o, s:o, s:s}", "index", c->index, "message", message, "logprobs",
                     logprobs_object(c->logprobs), "finish_reason", c->finish);
}

char *api_completion_body(const char *id, long long created, const char *model, const api_choice *choices,
                          size_t n_choices, const api_usage *usage, size_t *len)
{
    api_json_init();
    json_t *list = json_array();
    for (size_t i = 0; list && i < n_choices; i++)
        if (json_array_append_new(list, choice_object(&choices[i])) < 0) {
            json_decref(list);
            list = NULL;
        }
    if (!list)
        return NULL;
    json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", id, "object", "chat.completion", "created",
                             (json_int_t)created, "model", model, "choices", list, "usage", usage_object(usage));
    return api_json_dump_framed(body, "", "", len);
}

/* The envelope every chunk shares; choices (stolen) may be an empty array. */
static json_t *chunk(const char *id, long long created, const char *model, json_t *choices)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "object", "chat.completion.chunk", "created",
                     (json_int_t)created, "model", model, "choices", choices);
}

static char *sse(json_t *v, bool with_null_usage, size_t *len)
{
    if (v && with_null_usage)
        json_object_set_new(v, "usage", json_null());
    return api_json_dump_framed(v, "data: ", "\n\n", len);
}

char *api_chunk_choice_role(const char *id, long long created, const char *model, int choice,
                            bool with_null_usage, size_t *len)
{
    api_json_init();
    json_t *choices = json_pack("[{s:i, s:{s:s, s:s}, s:n}]", "index", choice, "delta", "role", "assistant",
                                "content", "", "finish_reason");
    return sse(chunk(id, created, model, choices), with_null_usage, len);
}

char *api_chunk_role(const char *id, long long created, const char *model, bool with_null_usage, size_t *len)
{
    return api_chunk_choice_role(id, created, model, 0, with_null_usage, len);
}

char *api_chunk_content(const char *id, long long created, const char *model, const char *text,
                        size_t text_len, bool with_null_usage, size_t *len)
{
    api_json_init();
    json_t *content = api_json_text(text, text_len);
    if (!content)
        return NULL;
    json_t *choices = json_pack("[{s:i, s:{s:o}, s:n}]", "index", 0, "delta", "content", content,
                                "finish_reason");
    return sse(chunk(id, created, model, choices), with_null_usage, len);
}

char *api_chunk_finish(const char *id, long long created, const char *model, const char *finish,
                       bool with_null_usage, size_t *len)
{
    api_json_init();
    json_t *choices = json_pack("[{s:i, s:{}, s:s}]", "index", 0, "delta", "finish_reason", finish);
    return sse(chunk(id, created, model, choices), with_null_usage, len);
}

char *api_chunk_delta(const char *id, long long created, const char *model, int choice, const char *text,
                      size_t text_len, const api_tool_call *calls, size_t n_calls, const api_logprobs *logprobs,
                      bool with_null_usage, size_t *len)
{
    api_json_init();
    json_t *delta = json_object();
    if (delta && text)
        json_object_set_new(delta, "content", api_json_text(text, text_len));
    if (delta && n_calls)
        json_object_set_new(delta, "tool_calls", calls_array(calls, n_calls));
    json_t *c = json_pack("{s:i, s:o, s:n}", "index", choice, "delta", delta, "finish_reason");
    if (c && logprobs)
        json_object_set_new(c, "logprobs", logprobs_object(logprobs));
    return sse(chunk(id, created, model, json_pack("[o]", c)), with_null_usage, len);
}

char *api_chunk_choice_finish(const char *id, long long created, const char *model, int choice,
                              const char *finish, bool with_null_usage, size_t *len)
{
    api_json_init();
    json_t *choices = json_pack("[{s:i, s:{}, s:s}]", "index", choice, "delta", "finish_reason", finish);
    return sse(chunk(id, created, model, choices), with_null_usage, len);
}

char *api_chunk_usage(const char *id, long long created, const char *model, const api_usage *usage,
                      size_t *len)
{
    api_json_init();
    json_t *c = chunk(id, created, model, json_array());
    if (c)
        json_object_set_new(c, "usage", usage_object(usage));
    return sse(c, false, len);
}

char *api_chunk_error(const api_error *e, size_t *len)
{
    size_t body_len;
    char *body = api_error_body(e, &body_len);
    if (!body)
        return NULL;
    char *out = malloc(body_len + 9);
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, body, body_len);
        memcpy(out + 6 + body_len, "\n\n", 3);
        *len = body_len + 8;
    }
    api_free(body);
    return out;
}

static json_t *model_object(const char *model, long long created)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", model, "object", "model", "created", (json_int_t)created,
                     "owned_by", "elliott");
}

char *api_models_body(const char *const *models, const long long *created, size_t n, size_t *len)
{
    api_json_init();
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++)
        if (json_array_append_new(data, model_object(models[i], created[i])) < 0) {
            json_decref(data);
            data = NULL;
        }
    return api_json_dump_framed(data ? json_pack("{s:s, s:o}", "object", "list", "data", data) : NULL, "", "", len);
}

char *api_model_body(const char *model, long long created, size_t *len)
{
    api_json_init();
    return api_json_dump_framed(model_object(model, created), "", "", len);
}

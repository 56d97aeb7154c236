/* Answers in the shapes of the other APIs the server speaks: OpenAI's legacy
 * text_completion (JSON and SSE) and Ollama's /api/chat and /api/generate
 * (JSON and NDJSON). The chat completion shape is api_response.c's. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

static bool is_ollama(const api_reply_view *v)
{
    return v->opts->format == API_FORMAT_OLLAMA_CHAT || v->opts->format == API_FORMAT_OLLAMA_GENERATE;
}

const char *api_format_content_type(enum api_format f)
{
    return f == API_FORMAT_OLLAMA_CHAT || f == API_FORMAT_OLLAMA_GENERATE ? "application/x-ndjson"
                                                                            : "text/event-stream";
}

/* ---- text_completion ----------------------------------------------------------------- */

static json_t *text_choice(const api_reply_view *v, const api_reply_part *p)
{
    json_t *c = json_pack("{s:i, s:o, s:o}", "index", p->choice, "text", api_json_text(p->text, p->len),
                          "finish_reason", p->finish ? json_string(p->finish) : json_null());
    if (!c)
        return NULL;
    json_t *lp = NULL;
    if (v->opts->logprobs && (p->n_logprobs || p->len))
        lp = api_text_logprobs(p->logprobs, p->n_logprobs, p->text_offset, v->opts->top_logprobs, v->token_bytes,
                               v->cls);
    json_object_set_new(c, "logprobs", lp ? lp : json_null());
    return c;
}

static json_t *text_object(const api_reply_view *v, json_t *choices)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", v->id, "object", "text_completion", "created",
                     (json_int_t)v->created, "model", v->model, "choices", choices);
}

static json_t *usage(const api_reply_view *v)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", v->prompt_tokens, "completion_tokens",
                     v->completion_tokens, "total_tokens", v->prompt_tokens + v->completion_tokens);
}

/* ---- Ollama ---------------------------------------------------------------------------- */

static long long ns(double ms)
{
    return (long long)(ms * 1e6);
}

static json_t *ollama_object(const api_reply_view *v, const char *text, size_t len, bool done)
{
    char stamp[40];
    api_ollama_timestamp(stamp);
    json_t *o = json_pack("{s:s, s:s}", "model", v->model, "created_at", stamp);
    if (!o)
        return NULL;
    json_t *t = api_json_text(text, len);
    if (v->opts->format == API_FORMAT_OLLAMA_CHAT)
        json_object_set_new(o, "message", json_pack("{s:s, s:o}", "role", "assistant", "content", t));
    else
        json_object_set_new(o, "response", t);
    json_object_set_new(o, "done", json_boolean(done));
    return o;
}

static json_t *ollama_final(const api_reply_view *v, const char *text, size_t len, const char *finish)
{
    json_t *o = ollama_object(v, text, len, true);
    if (!o)
        return NULL;
    json_object_set_new(o, "done_reason", json_string(finish ? finish : "stop"));
    json_object_set_new(o, "total_duration", json_integer(ns(v->total_ms)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(v->prompt_tokens));
    json_object_set_new(o, "prompt_eval_duration", json_integer(ns(v->prompt_ms)));
    json_object_set_new(o, "eval_count", json_integer(v->completion_tokens));
    json_object_set_new(o, "eval_duration", json_integer(ns(v->generate_ms)));
    return o;
}

/* ---- the entry points ------------------------------------------------------------------ */

char *api_format_delta(const api_reply_view *v, const api_reply_part *part, size_t *len)
{
    if (is_ollama(v))
        return api_json_dump_framed(ollama_object(v, part->text, part->len, false), "", "\n", len);
    json_t *choice = text_choice(v, part);
    return api_json_dump_framed(text_object(v, choice ? json_pack("[o]", choice) : NULL), "data: ", "\n\n", len);
}

char *api_format_close(const api_reply_view *v, const api_reply_part *last, size_t *len)
{
    if (is_ollama(v))
        return api_json_dump_framed(ollama_final(v, "", 0, last->finish), "", "\n", len);
    size_t n1 = 0, n2 = 0;
    char *fin = NULL;
    if (v->opts->n_choices <= 1) {
        json_t *choice = text_choice(v, last);
        fin = api_json_dump_framed(text_object(v, choice ? json_pack("[o]", choice) : NULL), "data: ", "\n\n", &n1);
    } else {
        fin = strdup(""); /* each choice sent its end as it came */
    }
    char *use = NULL;
    if (fin && v->opts->include_usage) {
        json_t *o = text_object(v, json_array());
        if (o)
            json_object_set_new(o, "usage", usage(v));
        use = api_json_dump_framed(o, "data: ", "\n\n", &n2);
    }
    if (!fin || (v->opts->include_usage && !use)) {
        api_free(fin);
        api_free(use);
        return NULL;
    }
    size_t nd = strlen(API_SSE_DONE);
    char *all = malloc(n1 + n2 + nd + 1);
    if (all) {
        memcpy(all, fin, n1);
        if (use)
            memcpy(all + n1, use, n2);
        memcpy(all + n1 + n2, API_SSE_DONE, nd + 1);
        *len = n1 + n2 + nd;
    }
    api_free(fin);
    api_free(use);
    return all;
}

char *api_format_stream_error(const api_reply_view *v, const api_error *e, size_t *len)
{
    if (!is_ollama(v))
        return api_chunk_error(e, len);
    size_t n;
    char *body = api_ollama_error_body(e, &n);
    if (!body)
        return NULL;
    char *line = malloc(n + 2);
    if (line) {
        memcpy(line, body, n);
        memcpy(line + n, "\n", 2);
        *len = n + 1;
    }
    api_free(body);
    return line;
}

char *api_format_body(const api_reply_view *v, const api_reply_part *parts, size_t n, size_t *len)
{
    if (is_ollama(v))
        return api_json_dump_framed(ollama_final(v, parts[0].text, parts[0].len, parts[0].finish), "", "", len);
    json_t *choices = json_array();
    for (size_t i = 0; choices && i < n; i++) {
        json_t *c = text_choice(v, &parts[i]);
        if (!c || json_array_append_new(choices, c) < 0) {
            json_decref(choices);
            return NULL;
        }
    }
    json_t *o = text_object(v, choices);
    if (o)
        json_object_set_new(o, "usage", usage(v));
    return api_json_dump_framed(o, "", "", len);
}

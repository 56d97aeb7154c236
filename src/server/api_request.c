/* Chat completion requests: JSON body -> validated chat_request. Every rejection
 * is a 400 naming the offending parameter, in OpenAI's style. */
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

int api_fail(api_error *e, int status, const char *param, const char *fmt, ...)
{
    if (!e)
        return -1;
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- JSON memory: jansson's blocks are wiped before they are freed ------------- */

static void *json_alloc(size_t size)
{
    return malloc(size);
}

void api_free(void *p)
{
    if (!p)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

static void install_json_alloc(void)
{
    json_set_alloc_funcs(json_alloc, api_free);
}

void api_json_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_json_alloc);
}

/* ---- parsing ------------------------------------------------------------------ */

static int parse_error(const json_error_t *jerr, api_error *e)
{
    switch (json_error_code(jerr)) {
    case json_error_invalid_utf8:
        return api_fail(e, 400, NULL, "request body is not valid UTF-8");
    case json_error_stack_overflow:
        return api_fail(e, 400, NULL, "request body is nested too deeply (the limit is %d levels)",
                        JSON_PARSER_MAX_DEPTH);
    case json_error_duplicate_key:
        return api_fail(e, 400, NULL, "request body has a duplicate key (line %d, column %d)", jerr->line,
                        jerr->column);
    default:
        return api_fail(e, 400, NULL, "request body is not valid JSON: %s (line %d, column %d)", jerr->text,
                        jerr->line, jerr->column);
    }
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* An optional field: NULL when absent or null (clients send null for "unset"). */
static json_t *optional(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int get_number(json_t *root, const char *key, double min, double max, bool min_exclusive,
                      float *out, api_error *e)
{
    json_t *v = optional(root, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return api_fail(e, 400, key, "'%s' must be a number, not %s", key, type_name(v));
    double x = json_number_value(v);
    /* The exclusive bound is checked on the float the sampler will see: 1e-50 is
     * above 0 as a double but rounds to 0. */
    float f = (float)x;
    if (!isfinite(x) || x > max || (min_exclusive ? f <= min : x < min))
        return api_fail(e, 400, key, "'%s' must be %s %g and <= %g", key, min_exclusive ? ">" : ">=", min,
                        max);
    *out = f;
    return 0;
}

static int get_integer(json_t *root, const char *key, long long min, long long max, long long *out,
                       bool *present, api_error *e)
{
    json_t *v = optional(root, key);
    if (present)
        *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return api_fail(e, 400, key, "'%s' must be an integer, not %s", key, type_name(v));
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return api_fail(e, 400, key, "'%s' must be between %lld and %lld", key, min, max);
    *out = x;
    return 0;
}

static int get_bool(json_t *root, const char *key, const char *param, bool *out, api_error *e)
{
    json_t *v = optional(root, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return api_fail(e, 400, param, "'%s' must be a boolean, not %s", param, type_name(v));
    *out = json_is_true(v);
    return 0;
}

static int parse_role(json_t *msg, size_t i, enum chat_role *role, api_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].role", i);
    json_t *v = json_object_get(msg, "role");
    if (!v)
        return api_fail(e, 400, param, "'%s' is required", param);
    if (!json_is_string(v))
        return api_fail(e, 400, param, "'%s' must be a string, not %s", param, type_name(v));
    const char *s = json_string_value(v);
    if (!strcmp(s, "system"))
        *role = CHAT_ROLE_SYSTEM;
    else if (!strcmp(s, "user"))
        *role = CHAT_ROLE_USER;
    else if (!strcmp(s, "assistant"))
        *role = CHAT_ROLE_ASSISTANT;
    else
        return api_fail(e, 400, param, "'%s' must be one of 'system', 'user', 'assistant'", param);
    return 0;
}

/* Text parts of one message's content are joined with newlines. Returns the
 * byte count the content needs, or -1 when it is malformed. */
static long long content_size(json_t *msg, size_t i, api_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    json_t *c = json_object_get(msg, "content");
    if (!c)
        return api_fail(e, 400, param, "'%s' is required", param);
    if (json_is_string(c))
        return (long long)json_string_length(c);
    if (!json_is_array(c))
        return api_fail(e, 400, param, "'%s' must be a string or an array of text parts, not %s", param,
                        type_name(c));
    long long total = 0;
    size_t j;
    json_t *part;
    json_array_foreach(c, j, part) {
        snprintf(param, sizeof param, "messages[%zu].content[%zu]", i, j);
        if (!json_is_object(part))
            return api_fail(e, 400, param, "'%s' must be an object, not %s", param, type_name(part));
        json_t *type = json_object_get(part, "type");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0)
            return api_fail(e, 400, param, "'%s': only parts of type 'text' are supported", param);
        json_t *text = json_object_get(part, "text");
        if (!json_is_string(text))
            return api_fail(e, 400, param, "'%s' needs a string 'text'", param);
        total += (long long)json_string_length(text) + (j > 0);
    }
    return total;
}

static size_t copy_content(json_t *msg, char *dst)
{
    json_t *c = json_object_get(msg, "content");
    if (json_is_string(c)) {
        size_t n = json_string_length(c);
        memcpy(dst, json_string_value(c), n);
        return n;
    }
    size_t at = 0, j;
    json_t *part;
    json_array_foreach(c, j, part) {
        json_t *text = json_object_get(part, "text");
        if (j > 0)
            dst[at++] = '\n';
        size_t n = json_string_length(text);
        memcpy(dst + at, json_string_value(text), n);
        at += n;
    }
    return at;
}

static int parse_messages(json_t *root, chat_request *out, api_error *e)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs || json_is_null(msgs))
        return api_fail(e, 400, "messages", "'messages' is required");
    if (!json_is_array(msgs))
        return api_fail(e, 400, "messages", "'messages' must be an array, not %s", type_name(msgs));
    size_t n = json_array_size(msgs);
    if (n == 0)
        return api_fail(e, 400, "messages", "'messages' must not be empty");

    /* Pass 1: validate and size; pass 2: copy into one buffer. The total is
     * bounded by the body size, which the HTTP layer limits. */
    size_t total = 0;
    bool has_user = false;
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(msgs, i);
        if (!json_is_object(msg)) {
            char param[64];
            snprintf(param, sizeof param, "messages[%zu]", i);
            return api_fail(e, 400, param, "'%s' must be an object, not %s", param, type_name(msg));
        }
        enum chat_role role;
        if (parse_role(msg, i, &role, e) < 0)
            return -1;
        has_user |= role == CHAT_ROLE_USER;
        long long size = content_size(msg, i, e);
        if (size < 0)
            return -1;
        total += (size_t)size;
    }
    if (!has_user)
        return api_fail(e, 400, "messages", "'messages' must contain a message with role 'user'");

    out->messages = calloc(n, sizeof *out->messages);
    out->text = malloc(total ? total : 1);
    if (!out->messages || !out->text)
        return api_fail(e, 500, NULL, "out of memory");
    out->text_size = total;
    out->n_messages = n;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(msgs, i);
        parse_role(msg, i, &out->messages[i].role, NULL);
        size_t len = copy_content(msg, out->text + at);
        out->messages[i].text = out->text + at;
        out->messages[i].len = len;
        at += len;
    }
    return 0;
}

static int check_stop_string(json_t *v, const char *param, api_error *e)
{
    if (!json_is_string(v))
        return api_fail(e, 400, param, "'%s' must be a string or an array of strings, not %s", param,
                        type_name(v));
    size_t len = json_string_length(v);
    if (len == 0 || len > API_MAX_STOP_BYTES)
        return api_fail(e, 400, param, "'%s' strings must be 1 to %d bytes long", param, API_MAX_STOP_BYTES);
    if (memchr(json_string_value(v), '\0', len))
        return api_fail(e, 400, param, "'%s' strings must not contain NUL characters", param);
    return 0;
}

static int add_stop(chat_request *out, json_t *v, api_error *e)
{
    char *copy = strdup(json_string_value(v));
    if (!copy)
        return api_fail(e, 500, NULL, "out of memory");
    out->stop_text[out->params.n_stop] = copy;
    out->stop_ptrs[out->params.n_stop] = copy;
    out->params.n_stop++;
    return 0;
}

static int parse_stop(json_t *root, chat_request *out, api_error *e)
{
    out->params.stop = out->stop_ptrs;
    out->params.n_stop = 0;
    json_t *stop = optional(root, "stop");
    if (!stop)
        return 0;
    if (!json_is_array(stop)) {
        if (check_stop_string(stop, "stop", e) < 0)
            return -1;
        return add_stop(out, stop, e);
    }
    if (json_array_size(stop) > API_MAX_STOP)
        return api_fail(e, 400, "stop", "'stop' may hold at most %d strings", API_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(stop, i, s) {
        if (check_stop_string(s, "stop", e) < 0 || add_stop(out, s, e) < 0)
            return -1;
    }
    return 0;
}

static int parse_max_tokens(json_t *root, gen_params *p, api_error *e)
{
    long long v;
    bool present;
    if (get_integer(root, "max_tokens", 1, INT_MAX, &v, &present, e) < 0)
        return -1;
    if (present)
        p->max_tokens = (int)v;
    /* The newer name wins when both are given. */
    if (get_integer(root, "max_completion_tokens", 1, INT_MAX, &v, &present, e) < 0)
        return -1;
    if (present)
        p->max_tokens = (int)v;
    return 0;
}

static int parse_sampling(json_t *root, sampler_params *s, api_error *e)
{
    long long v;
    bool present;
    if (get_number(root, "temperature", 0, 2, false, &s->temperature, e) < 0 ||
        get_number(root, "top_p", 0, 1, true, &s->top_p, e) < 0 ||
        get_number(root, "min_p", 0, 1, false, &s->min_p, e) < 0 ||
        get_number(root, "presence_penalty", -2, 2, false, &s->presence_penalty, e) < 0 ||
        get_number(root, "frequency_penalty", -2, 2, false, &s->frequency_penalty, e) < 0 ||
        get_number(root, "repetition_penalty", 0, 10, true, &s->repetition_penalty, e) < 0)
        return -1;
    if (get_integer(root, "top_k", 0, INT_MAX, &v, &present, e) < 0)
        return -1;
    if (present)
        s->top_k = (int)v;
    if (get_integer(root, "seed", LLONG_MIN, LLONG_MAX, &v, &present, e) < 0)
        return -1;
    if (present)
        s->seed = (uint64_t)v;
    return 0;
}

static int parse_streaming(json_t *root, chat_request *out, api_error *e)
{
    if (get_bool(root, "stream", "stream", &out->stream, e) < 0)
        return -1;
    json_t *opts = optional(root, "stream_options");
    if (!opts)
        return 0;
    if (!json_is_object(opts))
        return api_fail(e, 400, "stream_options", "'stream_options' must be an object, not %s", type_name(opts));
    return get_bool(opts, "include_usage", "stream_options.include_usage", &out->include_usage, e);
}

static int parse_fields(json_t *root, chat_request *out, api_error *e)
{
    if (!json_is_object(root))
        return api_fail(e, 400, NULL, "request body must be a JSON object, not %s", type_name(root));
    json_t *model = optional(root, "model");
    if (model && !json_is_string(model))
        return api_fail(e, 400, "model", "'model' must be a string, not %s", type_name(model));
    long long n;
    bool has_n;
    if (get_integer(root, "n", 1, 1, &n, &has_n, e) < 0) {
        if (json_is_integer(json_object_get(root, "n")))
            api_fail(e, 400, "n", "'n' must be 1: one choice per request is supported");
        return -1;
    }
    if (parse_messages(root, out, e) < 0 || parse_max_tokens(root, &out->params, e) < 0 ||
        parse_sampling(root, &out->params.sampling, e) < 0 || parse_stop(root, out, e) < 0 ||
        parse_streaming(root, out, e) < 0)
        return -1;
    return 0;
}

int api_parse_chat_request(const char *body, size_t len, const gen_params *defaults, chat_request *out,
                           api_error *e)
{
    memset(out, 0, sizeof *out);
    out->params = *defaults;
    out->params.stop = out->stop_ptrs;
    out->params.n_stop = 0;
    if (len == 0)
        return api_fail(e, 400, NULL, "request body is empty: send a JSON object with 'messages'");
    api_json_init();
    json_error_t jerr;
    /* Duplicate keys are refused: two parsers reading one body differently is how
     * validation gets bypassed. NUL is allowed inside message text (it has a length). */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return parse_error(&jerr, e);
    int rc = parse_fields(root, out, e);
    json_decref(root);
    if (rc < 0)
        chat_request_free(out);
    return rc;
}

void chat_request_free(chat_request *r)
{
    if (!r)
        return;
    if (r->text)
        explicit_bzero(r->text, r->text_size);
    free(r->text);
    free(r->messages);
    for (size_t i = 0; i < API_MAX_STOP; i++)
        api_free(r->stop_text[i]);
    memset(r, 0, sizeof *r);
}

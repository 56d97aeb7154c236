/* Chat completion requests: JSON body -> validated chat_request. Every rejection
 * is a 400 naming the offending parameter, in OpenAI's style. */
#include <ctype.h>
#include <errno.h>
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

int api_fail_unavailable(api_error *e)
{
    return api_fail(e, 500, NULL, API_UNAVAILABLE_MESSAGE);
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

static int parse_failed(json_error_t *jerr, api_error *e)
{
    int rc = parse_error(jerr, e);
    explicit_bzero(jerr, sizeof *jerr);
    /* jansson quotes the text near a syntax error in its own stack frames, below ours */
    wipe_stack_below();
    return rc;
}

const char *api_json_type_name(const json_t *v)
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

json_t *api_json_optional(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return v && !json_is_null(v) ? v : NULL;
}

/* Short local names for the shared helpers. */
static const char *type_name(const json_t *v)
{
    return api_json_type_name(v);
}

static json_t *optional(json_t *root, const char *key)
{
    return api_json_optional(root, key);
}

int api_request_own(chat_request *r, char *text, api_error *e)
{
    if (!text)
        return api_fail(e, 500, NULL, "out of memory");
    char **grown = realloc(r->owned, (r->n_owned + 1) * sizeof *grown);
    if (!grown) {
        api_free(text);
        return api_fail(e, 500, NULL, "out of memory");
    }
    r->owned = grown;
    r->owned[r->n_owned++] = text;
    return 0;
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

static int require_string(json_t *v, const char *param, api_error *e)
{
    if (!json_is_string(v))
        return api_fail(e, 400, param, "'%s' must be a string, not %s", param, type_name(v));
    return 0;
}

/* ---- which fields exist ------------------------------------------------------------ */

/* Every top-level field elliott knows (docs/api.md says what each does). Any other
 * is refused as OpenAI refuses it. */
static const char *const known_fields[] = {
    /* OpenAI's, honoured */
    "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens",
    "n", "parallel_tool_calls", "presence_penalty", "response_format", "seed", "stop", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p",
    /* OpenAI's, accepted: they cannot change the answer */
    "metadata", "modalities", "prediction", "prompt_cache_key", "prompt_cache_retention", "safety_identifier",
    "service_tier", "store", "user",
    /* OpenAI's, refused unless null: elliott cannot honour them */
    "audio", "function_call", "functions", "reasoning_effort", "verbosity", "web_search_options",
    /* llama.cpp's extensions that elliott implements */
    "top_k", "min_p", "repetition_penalty", "repeat_penalty", "repeat_last_n", "grammar", "json_schema",
};

static bool is_known(const char *key, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(key, list[i]))
            return true;
    return false;
}

static int check_known_fields(json_t *object, const char *const *list, size_t n, const char *prefix,
                              api_error *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(object, key, v) {
        if (is_known(key, list, n))
            continue;
        char param[64];
        snprintf(param, sizeof param, "%s%s", prefix, key);
        return api_fail(e, 400, param, "Unrecognized request argument supplied: %s", param);
    }
    return 0;
}

/* OpenAI fields for what elliott's text-only models cannot do. */
static int refuse_unsupported(json_t *root, api_error *e)
{
    static const struct {
        const char *field, *why;
    } refused[] = {
        {"audio", "elliott's models produce text only"},
        {"function_call", "the deprecated functions API is not supported: use 'tools' and 'tool_choice'"},
        {"functions", "the deprecated functions API is not supported: use 'tools'"},
        {"reasoning_effort", "the served model does not reason"},
        {"verbosity", "the served model has no verbosity setting"},
        {"web_search_options", "elliott has no web search"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (optional(root, refused[i].field))
            return api_fail(e, 400, refused[i].field, "'%s' is not supported: %s", refused[i].field,
                            refused[i].why);
    return 0;
}

static int check_optional_string(json_t *root, const char *key, api_error *e)
{
    json_t *v = optional(root, key);
    return v ? require_string(v, key, e) : 0;
}

/* Fields that cannot change the answer: validated, then left alone. */
static int check_accepted_noops(json_t *root, api_error *e)
{
    if (check_optional_string(root, "user", e) < 0 || check_optional_string(root, "safety_identifier", e) < 0 ||
        check_optional_string(root, "prompt_cache_key", e) < 0 ||
        check_optional_string(root, "service_tier", e) < 0)
        return -1;
    json_t *v = optional(root, "prompt_cache_retention");
    if (v && (!json_is_string(v) || (strcmp(json_string_value(v), "in_memory") && strcmp(json_string_value(v), "24h"))))
        return api_fail(e, 400, "prompt_cache_retention", "'prompt_cache_retention' must be 'in_memory' or '24h'");
    v = optional(root, "store");
    if (v && !json_is_boolean(v))
        return api_fail(e, 400, "store", "'store' must be a boolean, not %s", type_name(v));
    if (v && json_is_true(v))
        return api_fail(e, 400, "store", "'store': elliott never stores completions; send false or leave it out");
    v = optional(root, "metadata");
    if (v) {
        if (!json_is_object(v))
            return api_fail(e, 400, "metadata", "'metadata' must be an object, not %s", type_name(v));
        const char *key;
        json_t *value;
        json_object_foreach(v, key, value) {
            if (!json_is_string(value))
                return api_fail(e, 400, "metadata", "'metadata' values must be strings");
        }
    }
    v = optional(root, "modalities");
    if (v) {
        if (!json_is_array(v))
            return api_fail(e, 400, "modalities", "'modalities' must be an array, not %s", type_name(v));
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) {
            if (!json_is_string(m) || strcmp(json_string_value(m), "text"))
                return api_fail(e, 400, "modalities", "'modalities': elliott's models produce only \"text\"");
        }
    }
    v = optional(root, "prediction");
    if (v) {
        json_t *type = json_object_get(v, "type"), *content = json_object_get(v, "content");
        if (!json_is_object(v) || !json_is_string(type) || strcmp(json_string_value(type), "content") ||
            !(json_is_string(content) || json_is_array(content)))
            return api_fail(e, 400, "prediction",
                            "'prediction' must be {\"type\":\"content\",\"content\":...}");
    }
    return 0;
}

/* ---- messages ------------------------------------------------------------------------ */

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
    /* developer is the newer name of system */
    if (!strcmp(s, "system") || !strcmp(s, "developer"))
        *role = CHAT_ROLE_SYSTEM;
    else if (!strcmp(s, "user"))
        *role = CHAT_ROLE_USER;
    else if (!strcmp(s, "assistant"))
        *role = CHAT_ROLE_ASSISTANT;
    else if (!strcmp(s, "tool"))
        *role = CHAT_ROLE_TOOL;
    else
        return api_fail(e, 400, param, "'%s' must be one of 'system', 'developer', 'user', 'assistant', 'tool'",
                        param);
    return 0;
}

/* The keys a message of each role may have. */
static int check_message_keys(json_t *msg, size_t i, enum chat_role role, api_error *e)
{
    static const char *const common[] = {"role", "content", "name"};
    static const char *const assistant[] = {"role", "content", "name", "tool_calls", "refusal", "audio",
                                            "function_call"};
    static const char *const tool[] = {"role", "content", "tool_call_id"};
    char prefix[48];
    snprintf(prefix, sizeof prefix, "messages[%zu].", i);
    const char *const *list = common;
    size_t n = 3;
    if (role == CHAT_ROLE_ASSISTANT)
        list = assistant, n = sizeof assistant / sizeof assistant[0];
    else if (role == CHAT_ROLE_TOOL)
        list = tool, n = sizeof tool / sizeof tool[0];
    if (check_known_fields(msg, list, n, prefix, e) < 0)
        return -1;
    char param[64];
    json_t *name = optional(msg, "name");
    snprintf(param, sizeof param, "messages[%zu].name", i);
    if (name && require_string(name, param, e) < 0)
        return -1;
    if (role == CHAT_ROLE_ASSISTANT) {
        static const char *const refused[] = {"refusal", "audio", "function_call"};
        for (size_t k = 0; k < 3; k++) {
            if (optional(msg, refused[k])) {
                snprintf(param, sizeof param, "messages[%zu].%s", i, refused[k]);
                return api_fail(e, 400, param, "'%s' is not supported (send it as null or leave it out)", param);
            }
        }
    }
    return 0;
}

static const char *unsupported_part_why(const char *type)
{
    if (!strcmp(type, "image_url"))
        return "the served model does not read images";
    if (!strcmp(type, "input_audio"))
        return "the served model does not hear audio";
    if (!strcmp(type, "file"))
        return "the served model does not read files";
    return "unknown part type";
}

/* Text parts of one message's content are joined with newlines. Returns the
 * byte count the content needs, or -1 when it is malformed. An assistant message
 * that carries tool calls may have null content. */
static long long content_size(json_t *msg, size_t i, bool may_be_null, api_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    json_t *c = json_object_get(msg, "content");
    if (may_be_null && (!c || json_is_null(c)))
        return 0;
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
        if (!json_is_string(type))
            return api_fail(e, 400, param, "'%s' needs a string 'type'", param);
        if (strcmp(json_string_value(type), "text") != 0)
            return api_fail(e, 400, param, "'%s': parts of type '%s' are not supported (%s); only parts of "
                            "type 'text' are supported", param, json_string_value(type),
                            unsupported_part_why(json_string_value(type)));
        json_t *text = json_object_get(part, "text");
        if (!json_is_string(text))
            return api_fail(e, 400, param, "'%s' needs a string 'text'", param);
        const char *key;
        json_t *value;
        json_object_foreach(part, key, value) {
            if (strcmp(key, "type") && strcmp(key, "text"))
                return api_fail(e, 400, param, "'%s': unrecognized key '%s'", param, key);
        }
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
    if (!json_is_array(c))
        return 0;
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

/* An assistant message's tool_calls: [{"id","type":"function","function":{"name","arguments"}}]. */
static int check_tool_calls(json_t *msg, size_t i, size_t *count, api_error *e)
{
    char param[80];
    snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
    json_t *calls = optional(msg, "tool_calls");
    *count = 0;
    if (!calls)
        return 0;
    if (!json_is_array(calls))
        return api_fail(e, 400, param, "'%s' must be an array, not %s", param, type_name(calls));
    size_t j;
    json_t *call;
    json_array_foreach(calls, j, call) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu]", i, j);
        json_t *id = json_object_get(call, "id"), *type = json_object_get(call, "type"),
               *fn = json_object_get(call, "function");
        if (!json_is_object(call) || !json_is_string(id) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") || !json_is_object(fn))
            return api_fail(e, 400, param, "'%s' must be {\"id\":STRING,\"type\":\"function\",\"function\":{...}}",
                            param);
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_string(name) || !json_is_string(args))
            return api_fail(e, 400, param, "'%s.function' needs string 'name' and 'arguments'", param);
    }
    *count = json_array_size(calls);
    return 0;
}

/* The function name of the assistant call that a tool message answers. */
static json_t *find_call_name(json_t *msgs, size_t before, const char *call_id)
{
    for (size_t k = before; k-- > 0;) {
        json_t *calls = optional(json_array_get(msgs, k), "tool_calls");
        size_t j;
        json_t *call;
        json_array_foreach(calls, j, call) {
            if (!strcmp(json_string_value(json_object_get(call, "id")), call_id))
                return json_object_get(json_object_get(call, "function"), "name");
        }
    }
    return NULL;
}

static int check_tool_message(json_t *msgs, json_t *msg, size_t i, api_error *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
    json_t *id = json_object_get(msg, "tool_call_id");
    if (!json_is_string(id))
        return api_fail(e, 400, param, "'%s' is required and must be a string", param);
    if (!find_call_name(msgs, i, json_string_value(id)))
        return api_fail(e, 400, param, "'%s' does not answer a tool call of an earlier assistant message",
                        param);
    return 0;
}

/* Validates one message; adds its text size and tool call count. */
static int check_message(json_t *msgs, size_t i, bool *has_user, size_t *text, size_t *calls, api_error *e)
{
    json_t *msg = json_array_get(msgs, i);
    if (!json_is_object(msg)) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        return api_fail(e, 400, param, "'%s' must be an object, not %s", param, type_name(msg));
    }
    enum chat_role role;
    if (parse_role(msg, i, &role, e) < 0 || check_message_keys(msg, i, role, e) < 0)
        return -1;
    *has_user |= role == CHAT_ROLE_USER;
    size_t n_calls = 0;
    if (role == CHAT_ROLE_ASSISTANT && check_tool_calls(msg, i, &n_calls, e) < 0)
        return -1;
    if (role == CHAT_ROLE_TOOL && check_tool_message(msgs, msg, i, e) < 0)
        return -1;
    long long size = content_size(msg, i, n_calls > 0, e);
    if (size < 0)
        return -1;
    *text += (size_t)size;
    *calls += n_calls;
    return 0;
}

static void copy_calls(json_t *msg, chat_tool_call *dst)
{
    size_t j;
    json_t *call;
    json_array_foreach(optional(msg, "tool_calls"), j, call) {
        json_t *fn = json_object_get(call, "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        dst[j] = (chat_tool_call){json_string_value(name), json_string_length(name), json_string_value(args),
                                  json_string_length(args)};
    }
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
    size_t total = 0, n_calls = 0;
    bool has_user = false;
    for (size_t i = 0; i < n; i++)
        if (check_message(msgs, i, &has_user, &total, &n_calls, e) < 0)
            return -1;
    if (!has_user)
        return api_fail(e, 400, "messages", "'messages' must contain a message with role 'user'");

    out->messages = calloc(n, sizeof *out->messages);
    out->text = malloc(total ? total : 1);
    out->calls = calloc(n_calls ? n_calls : 1, sizeof *out->calls);
    if (!out->messages || !out->text || !out->calls)
        return api_fail(e, 500, NULL, "out of memory");
    out->text_size = total;
    out->n_messages = n;
    size_t at = 0, call_at = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(msgs, i);
        chat_message *m = &out->messages[i];
        parse_role(msg, i, &m->role, NULL);
        size_t len = copy_content(msg, out->text + at);
        m->text = out->text + at;
        m->len = len;
        at += len;
        if (m->role == CHAT_ROLE_ASSISTANT && optional(msg, "tool_calls")) {
            m->tool_calls = out->calls + call_at;
            m->n_tool_calls = json_array_size(optional(msg, "tool_calls"));
            copy_calls(msg, out->calls + call_at);
            call_at += m->n_tool_calls;
        }
        if (m->role == CHAT_ROLE_TOOL) {
            json_t *name = find_call_name(msgs, i, json_string_value(json_object_get(msg, "tool_call_id")));
            m->tool_name = json_string_value(name);
            m->tool_name_len = json_string_length(name);
        }
    }
    return 0;
}

/* ---- generation parameters ---------------------------------------------------------------- */

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
    if (optional(root, "repetition_penalty") && optional(root, "repeat_penalty"))
        return api_fail(e, 400, "repeat_penalty", "'repeat_penalty' and 'repetition_penalty' are the same "
                        "setting: send one");
    if (get_number(root, "temperature", 0, 2, false, &s->temperature, e) < 0 ||
        get_number(root, "top_p", 0, 1, true, &s->top_p, e) < 0 ||
        get_number(root, "min_p", 0, 1, false, &s->min_p, e) < 0 ||
        get_number(root, "presence_penalty", -2, 2, false, &s->presence_penalty, e) < 0 ||
        get_number(root, "frequency_penalty", -2, 2, false, &s->frequency_penalty, e) < 0 ||
        get_number(root, "repetition_penalty", 0, 10, true, &s->repetition_penalty, e) < 0 ||
        get_number(root, "repeat_penalty", 0, 10, true, &s->repetition_penalty, e) < 0)
        return -1;
    if (get_integer(root, "top_k", 0, INT_MAX, &v, &present, e) < 0)
        return -1;
    if (present)
        s->top_k = (int)v;
    if (get_integer(root, "repeat_last_n", 0, SAMPLER_MAX_PENALTY_LAST_N, &v, &present, e) < 0)
        return -1;
    if (present)
        s->penalty_last_n = (int)v;
    if (get_integer(root, "seed", LLONG_MIN, LLONG_MAX, &v, &present, e) < 0)
        return -1;
    if (present)
        s->seed = (uint64_t)v;
    return 0;
}

/* logit_bias: {"TOKEN_ID": BIAS}, ids as decimal strings, biases -100..100. */
static int parse_logit_bias(json_t *root, chat_request *out, api_error *e)
{
    json_t *map = optional(root, "logit_bias");
    if (!map)
        return 0;
    if (!json_is_object(map))
        return api_fail(e, 400, "logit_bias", "'logit_bias' must be an object, not %s", type_name(map));
    size_t n = json_object_size(map);
    if (n > GEN_MAX_LOGIT_BIAS)
        return api_fail(e, 400, "logit_bias", "'logit_bias' may hold at most %d tokens", GEN_MAX_LOGIT_BIAS);
    if (n == 0)
        return 0;
    out->logit_bias = calloc(n, sizeof *out->logit_bias);
    if (!out->logit_bias)
        return api_fail(e, 500, NULL, "out of memory");
    const char *key;
    json_t *v;
    size_t at = 0;
    json_object_foreach(map, key, v) {
        char *end;
        errno = 0;
        long long id = strtoll(key, &end, 10);
        if (!isdigit((unsigned char)key[0]) || *end || errno || id > INT32_MAX)
            return api_fail(e, 400, "logit_bias", "'logit_bias' keys must be token ids (non-negative integers "
                            "as strings), not '%.40s'", key);
        if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100)
            return api_fail(e, 400, "logit_bias", "'logit_bias' values must be numbers from -100 to 100");
        out->logit_bias[at++] = (gen_logit_bias){(int32_t)id, (float)json_number_value(v)};
    }
    out->params.logit_bias = out->logit_bias;
    out->params.n_logit_bias = n;
    return 0;
}

static int parse_logprobs(json_t *root, chat_request *out, api_error *e)
{
    long long top;
    bool has_top;
    if (get_bool(root, "logprobs", "logprobs", &out->params.logprobs, e) < 0 ||
        get_integer(root, "top_logprobs", 0, GEN_MAX_TOP_LOGPROBS, &top, &has_top, e) < 0)
        return -1;
    if (has_top && !out->params.logprobs)
        return api_fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    out->params.top_logprobs = has_top ? (int)top : 0;
    return 0;
}

static int parse_choices(json_t *root, chat_request *out, api_error *e)
{
    long long n = 1;
    if (get_integer(root, "n", 1, GEN_MAX_CHOICES, &n, NULL, e) < 0)
        return -1;
    out->params.n_choices = (int)n;
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
    static const char *const keys[] = {"include_usage", "include_obfuscation"};
    bool obfuscation = false;
    if (check_known_fields(opts, keys, 2, "stream_options.", e) < 0 ||
        get_bool(opts, "include_obfuscation", "stream_options.include_obfuscation", &obfuscation, e) < 0)
        return -1;
    return get_bool(opts, "include_usage", "stream_options.include_usage", &out->include_usage, e);
}

static int parse_fields(json_t *root, chat_request *out, api_error *e)
{
    if (!json_is_object(root))
        return api_fail(e, 400, NULL, "request body must be a JSON object, not %s", type_name(root));
    if (check_known_fields(root, known_fields, sizeof known_fields / sizeof known_fields[0], "", e) < 0 ||
        refuse_unsupported(root, e) < 0 || check_accepted_noops(root, e) < 0)
        return -1;
    json_t *model = optional(root, "model");
    if (model && !json_is_string(model))
        return api_fail(e, 400, "model", "'model' must be a string, not %s", type_name(model));
    if (parse_choices(root, out, e) < 0 || parse_messages(root, out, e) < 0 ||
        parse_max_tokens(root, &out->params, e) < 0 || parse_sampling(root, &out->params.sampling, e) < 0 ||
        parse_stop(root, out, e) < 0 || parse_streaming(root, out, e) < 0 || parse_logprobs(root, out, e) < 0 ||
        parse_logit_bias(root, out, e) < 0 || api_parse_constraint(root, out, e) < 0)
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
        return parse_failed(&jerr, e);
    out->json = root; /* tool names and calls point into it */
    int rc = parse_fields(root, out, e);
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
    free(r->calls);
    free(r->tools);
    free(r->logit_bias);
    for (size_t i = 0; i < r->n_owned; i++)
        api_free(r->owned[i]);
    free(r->owned);
    for (size_t i = 0; i < API_MAX_STOP; i++)
        api_free(r->stop_text[i]);
    if (r->json)
        json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* ---- pieces shared with the other APIs' parsers (api_text.c, api_ollama.c, api_embed.c) ---- */

int api_load_json(const char *body, size_t len, const char *needs, struct json_t **root, api_error *e)
{
    *root = NULL;
    if (len == 0)
        return api_fail(e, 400, NULL, "request body is empty: send a JSON object with %s", needs);
    api_json_init();
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!v)
        return parse_failed(&jerr, e);
    if (!json_is_object(v)) {
        api_fail(e, 400, NULL, "request body must be a JSON object, not %s", type_name(v));
        json_decref(v);
        return -1;
    }
    *root = v;
    return 0;
}

int api_check_fields(json_t *object, const char *const *known, size_t n, const char *prefix, api_error *e)
{
    return check_known_fields(object, known, n, prefix, e);
}

int api_get_number(json_t *root, const char *key, double min, double max, bool min_exclusive, float *out,
                   api_error *e)
{
    return get_number(root, key, min, max, min_exclusive, out, e);
}

int api_get_integer(json_t *root, const char *key, long long min, long long max, long long *out, bool *present,
                    api_error *e)
{
    return get_integer(root, key, min, max, out, present, e);
}

int api_get_bool(json_t *root, const char *key, bool *out, api_error *e)
{
    return get_bool(root, key, key, out, e);
}

int api_parse_sampling(json_t *root, sampler_params *s, api_error *e)
{
    return parse_sampling(root, s, e);
}

int api_parse_stop(json_t *root, chat_request *out, api_error *e)
{
    return parse_stop(root, out, e);
}

int api_parse_generation(json_t *root, chat_request *out, api_error *e)
{
    if (check_accepted_noops(root, e) < 0)
        return -1;
    json_t *model = optional(root, "model");
    if (model && !json_is_string(model))
        return api_fail(e, 400, "model", "'model' must be a string, not %s", type_name(model));
    return parse_choices(root, out, e) < 0 || parse_max_tokens(root, &out->params, e) < 0 ||
                   parse_sampling(root, &out->params.sampling, e) < 0 || parse_stop(root, out, e) < 0 ||
                   parse_streaming(root, out, e) < 0 || parse_logit_bias(root, out, e) < 0
               ? -1
               : 0;
}

int api_parse_messages(json_t *root, chat_request *out, api_error *e)
{
    return parse_messages(root, out, e);
}

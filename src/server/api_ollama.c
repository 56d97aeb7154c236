/* Ollama's API: /api/chat and /api/generate requests (their "options" mapped onto
 * chat's generation parameters, with chat's limits), error bodies, and the
 * /api/tags, /api/show and /api/version answers. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server_internal.h"

char *api_ollama_error_body(const api_error *e, size_t *len)
{
    json_t *o = json_pack("{s:s}", "error", e->message);
    if (!o)
        return NULL;
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text)
        *len = strlen(text);
    return text;
}

void api_ollama_timestamp(char out[40])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%09ldZ", day, now.tv_nsec);
}

/* ---- requests ------------------------------------------------------------------------ */

static const char *const chat_fields[] = {"model", "messages", "stream", "format", "options", "keep_alive",
                                          "tools", "think"};
static const char *const generate_fields[] = {"model", "prompt", "system", "stream", "format", "options",
                                              "keep_alive", "raw", "suffix", "images", "template", "context",
                                              "think"};
static const char *const option_fields[] = {"temperature", "top_k", "top_p", "min_p", "num_predict", "stop",
                                            "seed", "num_ctx", "repeat_penalty", "repeat_last_n",
                                            "presence_penalty", "frequency_penalty"};

/* The options object: sampling under chat's names and limits, num_predict,
 * num_ctx (at most the server's context: a slot's size is fixed at start). */
static int parse_options(json_t *root, int n_ctx, chat_request *out, api_error *e)
{
    json_t *o = api_json_optional(root, "options");
    if (!o)
        return 0;
    if (!json_is_object(o))
        return api_fail(e, 400, "options", "'options' must be an object, not %s", api_json_type_name(o));
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof option_fields / sizeof *option_fields; i++)
            known |= !strcmp(key, option_fields[i]);
        if (!known)
            return api_fail(e, 400, "options", "option '%.40s' is not supported", key);
    }
    if (api_parse_sampling(o, &out->params.sampling, e) < 0 || api_parse_stop(o, out, e) < 0)
        return -1;
    long long x;
    bool present;
    if (api_get_integer(o, "num_predict", -2, INT_MAX, &x, &present, e) < 0)
        return -1;
    if (present && x > 0)
        out->params.max_tokens = (int)x;
    else if (present && x == 0)
        return api_fail(e, 400, "num_predict", "'num_predict' must be positive, or -1 for the server's limit");
    /* -1 (no limit) and -2 (fill the context) both run to the engine's limit. */
    if (api_get_integer(o, "num_ctx", 1, INT_MAX, &x, &present, e) < 0)
        return -1;
    if (present && x > n_ctx)
        return api_fail(e, 400, "num_ctx", "'num_ctx' %lld is larger than the server's context of %d (set it "
                                           "with elliott serve --ctx)",
                        x, n_ctx);
    return 0;
}

/* format: "json" or a JSON Schema object, compiled by the grammar layer as
 * chat's response_format is. */
static int parse_format(json_t *root, chat_request *out, api_error *e)
{
    json_t *f = api_json_optional(root, "format");
    if (!f || (json_is_string(f) && json_string_length(f) == 0))
        return 0;
    if (json_is_string(f)) {
        if (strcmp(json_string_value(f), "json"))
            return api_fail(e, 400, "format", "'format' must be \"json\" or a JSON Schema object");
        out->params.constraint = GEN_CONSTRAINT_JSON_OBJECT;
    } else if (json_is_object(f)) {
        char *schema = json_dumps(f, JSON_COMPACT);
        if (api_request_own(out, schema, e) < 0)
            return -1;
        out->params.constraint = GEN_CONSTRAINT_JSON_SCHEMA;
        out->params.constraint_text = schema;
        out->params.constraint_len = strlen(schema);
    } else {
        return api_fail(e, 400, "format", "'format' must be \"json\" or a JSON Schema object, not %s",
                        api_json_type_name(f));
    }
    out->constraint_param = "format";
    return 0;
}

/* One number and unit of a Go duration ("1.5h", "300ms"), in milliseconds; the
 * length read, 0 when it is not one. */
static size_t duration_term(const char *s, double *ms)
{
    static const struct { const char *unit; double ms; } units[] = {
        {"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"\xce\xbcs", 1e-3}, {"ms", 1.0},
        {"s", 1e3}, {"m", 6e4}, {"h", 3.6e6},
    };
    size_t i = 0, digits = 0;
    double v = 0, scale = 1;
    bool frac = false;
    for (; s[i] == '.' || (s[i] >= '0' && s[i] <= '9'); i++) {
        if (s[i] == '.') {
            if (frac)
                return 0;
            frac = true;
            continue;
        }
        digits++;
        if (frac)
            v += (s[i] - '0') * (scale /= 10);
        else
            v = v * 10 + (s[i] - '0');
    }
    if (!digits)
        return 0;
    size_t best = 0;
    double unit_ms = 0;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t n = strlen(units[u].unit);
        if (n > best && !strncmp(s + i, units[u].unit, n)) {
            best = n;
            unit_ms = units[u].ms;
        }
    }
    if (!best)
        return 0;
    *ms = v * unit_ms;
    return i + best;
}

/* Ollama's keep_alive: a number of seconds or a Go duration string ("5m", "1h30m",
 * "0"); negative: for ever (-1 here), as is anything beyond ten years. */
int api_ollama_keep_alive(json_t *root, long long *ms, bool *present, api_error *e)
{
    static const double forever_ms = 10.0 * 365 * 24 * 3600 * 1000;
    json_t *v = api_json_optional(root, "keep_alive");
    *present = v != NULL;
    if (!v)
        return 0;
    double total = 0;
    if (json_is_number(v)) {
        total = json_number_value(v) * 1000.0;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        bool negative = *s == '-';
        if (*s == '-' || *s == '+')
            s++;
        if (!strcmp(s, "0")) {
            s++;
        } else if (!*s) {
            return api_fail(e, 400, "keep_alive", "'keep_alive' must be a duration such as \"5m\" or a number of seconds");
        }
        while (*s) {
            double term;
            size_t n = duration_term(s, &term);
            if (!n)
                return api_fail(e, 400, "keep_alive",
                                "'keep_alive' must be a duration such as \"5m\" or a number of seconds");
            total += term;
            s += n;
        }
        if (negative)
            total = -total;
    } else {
        return api_fail(e, 400, "keep_alive", "'keep_alive' must be a duration string or a number");
    }
    *ms = total < 0 || total > forever_ms ? -1 : (long long)total;
    return 0;
}

/* Fields Ollama has that elliott cannot honour: refused unless empty. */
static int refuse_unhonoured(json_t *root, api_error *e)
{
    static const char *const fields[] = {"images", "template", "context", "tools"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        json_t *v = api_json_optional(root, fields[i]);
        bool empty = !v || (json_is_array(v) && json_array_size(v) == 0) ||
                     (json_is_string(v) && json_string_length(v) == 0);
        if (!empty)
            return api_fail(e, 400, fields[i], "'%s' is not supported by elliott", fields[i]);
    }
    json_t *think = api_json_optional(root, "think");
    if (think && !json_is_false(think))
        return api_fail(e, 400, "think", "'think': the served model does not reason");
    long long keep_ms;
    bool keep;
    return api_ollama_keep_alive(root, &keep_ms, &keep, e);
}

/* /api/generate: the prompt as the user's turn (after the system text), or with
 * raw as plain text without the template. */
static int parse_generate_prompt(json_t *root, chat_request *out, bool *empty, api_error *e)
{
    json_t *prompt = api_json_optional(root, "prompt"), *system = api_json_optional(root, "system");
    if (prompt && !json_is_string(prompt))
        return api_fail(e, 400, "prompt", "'prompt' must be a string, not %s", api_json_type_name(prompt));
    if (system && !json_is_string(system))
        return api_fail(e, 400, "system", "'system' must be a string, not %s", api_json_type_name(system));
    json_t *suffix = api_json_optional(root, "suffix");
    if (suffix && !json_is_string(suffix))
        return api_fail(e, 400, "suffix", "'suffix' must be a string, not %s", api_json_type_name(suffix));
    bool raw = false;
    if (api_get_bool(root, "raw", &raw, e) < 0)
        return -1;
    *empty = !prompt || json_string_length(prompt) == 0;
    if (*empty)
        return 0;
    if (suffix && json_string_length(suffix) > 0) {
        /* fill in the middle: the prompt and suffix around the gap, as code models take them */
        raw = true;
        out->params.suffix = json_string_value(suffix);
        out->params.suffix_len = json_string_length(suffix);
    }
    if (raw && system)
        return api_fail(e, 400, "system", "'system' has no place in a raw or fill-in-the-middle prompt");
    out->messages = calloc(2, sizeof *out->messages);
    if (!out->messages)
        return api_fail(e, 500, NULL, "out of memory");
    if (system)
        out->messages[out->n_messages++] =
            (chat_message){.role = CHAT_ROLE_SYSTEM, .text = json_string_value(system), .len = json_string_length(system)};
    out->messages[out->n_messages++] =
        (chat_message){.role = CHAT_ROLE_USER, .text = json_string_value(prompt), .len = json_string_length(prompt)};
    out->params.raw = raw;
    return 0;
}

int api_parse_ollama_request(const char *body, size_t len, bool generate, const gen_params *defaults, int n_ctx,
                             chat_request *out, bool *empty_generate, api_error *e)
{
    memset(out, 0, sizeof *out);
    out->params = *defaults;
    out->params.stop = out->stop_ptrs;
    out->stream = true; /* Ollama streams unless told not to */
    *empty_generate = false;
    json_t *root;
    if (api_load_json(body, len, generate ? "'prompt'" : "'messages'", &root, e) < 0)
        return -1;
    out->json = root;
    const char *const *known = generate ? generate_fields : chat_fields;
    size_t n_known = generate ? sizeof generate_fields / sizeof *generate_fields : sizeof chat_fields / sizeof *chat_fields;
    json_t *model = api_json_optional(root, "model");
    int rc = api_check_fields(root, known, n_known, "", e) < 0 || refuse_unhonoured(root, e) < 0 ||
                     (model && !json_is_string(model) &&
                      api_fail(e, 400, "model", "'model' must be a string, not %s", api_json_type_name(model))) ||
                     api_get_bool(root, "stream", &out->stream, e) < 0 || parse_options(root, n_ctx, out, e) < 0 ||
                     parse_format(root, out, e) < 0 ||
                     (generate ? parse_generate_prompt(root, out, empty_generate, e)
                               : api_parse_messages(root, out, e)) < 0
                 ? -1
                 : 0;
    if (rc < 0)
        chat_request_free(out);
    return rc;
}

/* ---- the model ---------------------------------------------------------------------------- */

static json_t *details(const api_ollama_model *m)
{
    if (!m->info) /* not loaded: what its metadata says is not known yet */
        return json_pack("{s:s, s:s, s:s, s:[], s:s, s:s}", "parent_model", "", "format", "gguf", "family", "",
                         "families", "parameter_size", "", "quantization_level", "");
    return json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "parent_model", "", "format", "gguf", "family",
                     m->info->arch, "families", m->info->arch, "parameter_size", m->parameter_size,
                     "quantization_level", m->quantization);
}

static void stamp_of(long long t, char out[40])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *dump(json_t *o, size_t *len)
{
    return api_json_dump_framed(o, "", "", len);
}

static json_t *tag(const api_ollama_model *m)
{
    char modified[40];
    stamp_of(m->modified, modified);
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:o}", "name", m->name, "model", m->name, "modified_at", modified,
                     "size", (json_int_t)m->size, "digest", m->digest, "details", details(m));
}

char *api_ollama_tags_body(const api_ollama_model *models, size_t n, size_t *len)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, tag(&models[i])) < 0) {
            json_decref(list);
            list = NULL;
        }
    return dump(list ? json_pack("{s:o}", "models", list) : NULL, len);
}

char *api_ollama_show_body(const api_ollama_model *m, size_t *len)
{
    char modified[40];
    stamp_of(m->modified, modified);
    char modelfile[600];
    snprintf(modelfile, sizeof modelfile, "# served by elliott\nFROM %s\n", m->path ? m->path : "(embedded model)");
    json_t *caps = json_array();
    json_array_append_new(caps, json_string("completion"));
    return dump(json_pack("{s:s, s:s, s:s, s:o, s:O, s:s, s:o}", "modelfile", modelfile, "parameters", "",
                          "template", m->template_text ? m->template_text : "", "details", details(m), "model_info",
                          m->model_info, "modified_at", modified, "capabilities", caps),
                len);
}

char *api_ollama_version_body(size_t *len)
{
    /* Ollama's clients compare versions: this is the API level elliott speaks. */
    return dump(json_pack("{s:s}", "version", "0.6.0"), len);
}

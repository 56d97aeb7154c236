/* Embedding requests and answers: OpenAI's POST /v1/embeddings and Ollama's
 * POST /api/embed (and its older /api/embeddings). Texts point into the parsed
 * body, which jansson wipes when it is freed (api_json_init). */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

/* "pooling" is elliott's extension: "mean", "cls" or "last" asks for that pooling
 * of the final hidden states (how a generative model gives embeddings); absent or
 * "model", the embedding model's own. */
static const char *const openai_fields[] = {"input", "model", "dimensions", "encoding_format", "user", "pooling"};
static const char *const ollama_fields[] = {"input", "model", "dimensions", "truncate", "options", "keep_alive",
                                            "pooling"};
static const char *const legacy_fields[] = {"prompt", "model", "options", "keep_alive", "pooling"};

static int parse_pooling(json_t *root, embed_request *out, api_error *e)
{
    json_t *p = api_json_optional(root, "pooling");
    if (!p)
        return 0;
    static const struct {
        const char *name;
        enum embed_pooling pooling;
    } kinds[] = {{"model", EMBED_POOL_MODEL}, {"mean", EMBED_POOL_MEAN}, {"cls", EMBED_POOL_CLS},
                 {"last", EMBED_POOL_LAST}};
    for (size_t i = 0; json_is_string(p) && i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(json_string_value(p), kinds[i].name)) {
            out->options.pooling = kinds[i].pooling;
            return 0;
        }
    return api_fail(e, 400, "pooling", "'pooling' must be \"model\", \"mean\", \"cls\" or \"last\"");
}

static bool is_token_list(json_t *v)
{
    return json_is_array(v) && json_array_size(v) > 0 && json_is_integer(json_array_get(v, 0));
}

static int count_tokens(json_t *list, size_t *total, api_error *e)
{
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
            return api_fail(e, 400, "input", "'input' token lists must hold token ids (non-negative integers)");
    }
    *total += json_array_size(list);
    return 0;
}

static void add_input(embed_request *out, json_t *item, size_t *tok_at)
{
    embed_input *in = &out->inputs[out->n_inputs++];
    if (json_is_string(item)) {
        *in = (embed_input){.text = json_string_value(item), .len = json_string_length(item)};
        return;
    }
    in->tokens = out->tokens + *tok_at;
    in->n_tokens = json_array_size(item);
    size_t i;
    json_t *t;
    json_array_foreach(item, i, t) out->tokens[(*tok_at)++] = (int32_t)json_integer_value(t);
}

/* A string, a list of strings, a list of token ids, or a list of such lists. */
static int parse_input(json_t *root, const char *key, embed_request *out, api_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return api_fail(e, 400, key, "'%s' is required", key);
    json_t *single = json_is_string(v) || is_token_list(v) ? v : NULL;
    if (!single && !json_is_array(v))
        return api_fail(e, 400, key, "'%s' must be a string, an array of strings or token lists, not %s", key,
                        api_json_type_name(v));
    size_t n = single ? 1 : json_array_size(v);
    if (n == 0)
        return api_fail(e, 400, key, "'%s' must not be empty", key);
    if (n > API_MAX_EMBED_INPUTS)
        return api_fail(e, 400, key, "'%s' may hold at most %d inputs", key, API_MAX_EMBED_INPUTS);
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *item = single ? single : json_array_get(v, i);
        if (json_is_string(item)) {
            if (json_string_length(item) == 0)
                return api_fail(e, 400, key, "'%s' strings must not be empty", key);
        } else if (is_token_list(item)) {
            if (count_tokens(item, &tokens, e) < 0)
                return -1;
        } else {
            return api_fail(e, 400, key, "'%s' items must be strings or token lists", key);
        }
    }
    out->inputs = calloc(n, sizeof *out->inputs);
    out->tokens = malloc((tokens ? tokens : 1) * sizeof *out->tokens);
    if (!out->inputs || !out->tokens)
        return api_fail(e, 500, NULL, "out of memory");
    size_t tok_at = 0;
    for (size_t i = 0; i < n; i++)
        add_input(out, single ? single : json_array_get(v, i), &tok_at);
    return 0;
}

static int parse_options_object(json_t *root, api_error *e)
{
    json_t *o = api_json_optional(root, "options");
    if (!o)
        return 0;
    if (!json_is_object(o))
        return api_fail(e, 400, "options", "'options' must be an object");
    /* An embedding has no sampling: only num_ctx could matter, and the context is
     * the server's. */
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        return api_fail(e, 400, "options", "option '%.40s' does not apply to embeddings", key);
    }
    return 0;
}

static int parse_fields(json_t *root, enum api_route route, embed_request *out, api_error *e)
{
    out->ollama = route != ROUTE_EMBEDDINGS;
    out->legacy = route == ROUTE_OLLAMA_EMBEDDINGS;
    out->options = (embed_options){.pooling = EMBED_POOL_MODEL, .normalize = true, .truncate = out->ollama};
    const char *const *known = out->legacy ? legacy_fields : out->ollama ? ollama_fields : openai_fields;
    size_t n_known = out->legacy   ? sizeof legacy_fields / sizeof *legacy_fields
                     : out->ollama ? sizeof ollama_fields / sizeof *ollama_fields
                                   : sizeof openai_fields / sizeof *openai_fields;
    if (api_check_fields(root, known, n_known, "", e) < 0 || parse_pooling(root, out, e) < 0 ||
        parse_input(root, out->legacy ? "prompt" : "input", out, e) < 0)
        return -1;
    json_t *model = api_json_optional(root, "model");
    if (model && !json_is_string(model))
        return api_fail(e, 400, "model", "'model' must be a string, not %s", api_json_type_name(model));
    json_t *user = api_json_optional(root, "user");
    if (user && !json_is_string(user))
        return api_fail(e, 400, "user", "'user' must be a string, not %s", api_json_type_name(user));
    long long dims = 0;
    if (api_get_integer(root, "dimensions", 1, INT_MAX, &dims, NULL, e) < 0)
        return -1;
    out->dimensions = (int)dims;
    if (api_get_bool(root, "truncate", &out->options.truncate, e) < 0 || parse_options_object(root, e) < 0)
        return -1;
    long long keep_ms;
    bool keep;
    if (api_ollama_keep_alive(root, &keep_ms, &keep, e) < 0)
        return -1;
    json_t *fmt = api_json_optional(root, "encoding_format");
    if (fmt) {
        if (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") && strcmp(json_string_value(fmt), "base64")))
            return api_fail(e, 400, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
        out->base64 = !strcmp(json_string_value(fmt), "base64");
    }
    return 0;
}

int api_parse_embed_request(const char *body, size_t len, enum api_route route, embed_request *out, api_error *e)
{
    memset(out, 0, sizeof *out);
    json_t *root;
    if (api_load_json(body, len, route == ROUTE_OLLAMA_EMBEDDINGS ? "'prompt'" : "'input'", &root, e) < 0)
        return -1;
    out->json = root;
    int rc = parse_fields(root, route, out, e);
    if (rc < 0)
        embed_request_free(out);
    return rc;
}

void embed_request_free(embed_request *r)
{
    if (!r)
        return;
    size_t tokens = 0;
    for (size_t i = 0; r->inputs && i < r->n_inputs; i++)
        tokens += r->inputs[i].n_tokens;
    if (r->tokens)
        explicit_bzero(r->tokens, tokens * sizeof *r->tokens);
    free(r->tokens);
    free(r->inputs);
    if (r->json)
        json_decref(r->json);
    memset(r, 0, sizeof *r);
}

void api_embed_truncate(float *rows, size_t n, int dim, int dims)
{
    if (dims <= 0 || dims >= dim)
        return;
    for (size_t i = 0; i < n; i++) {
        const float *src = rows + i * (size_t)dim;
        float *dst = rows + i * (size_t)dims;
        double sum = 0;
        for (int k = 0; k < dims; k++)
            sum += (double)src[k] * src[k];
        float scale = sum > 0 ? (float)(1.0 / sqrt(sum)) : 0.0f;
        for (int k = 0; k < dims; k++)
            dst[k] = src[k] * scale;
    }
}

char *api_base64_floats(const float *v, size_t n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t bytes = n * 4;
    char *out = malloc((bytes + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    unsigned char *raw = malloc(bytes ? bytes : 1);
    if (!raw) {
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int b = 0; b < 4; b++)
            raw[i * 4 + (size_t)b] = (unsigned char)(u >> (8 * b)); /* little-endian on any host */
    }
    size_t o = 0;
    for (size_t i = 0; i < bytes; i += 3) {
        uint32_t w = (uint32_t)raw[i] << 16;
        if (i + 1 < bytes)
            w |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < bytes)
            w |= raw[i + 2];
        out[o++] = alphabet[(w >> 18) & 63];
        out[o++] = alphabet[(w >> 12) & 63];
        out[o++] = i + 1 < bytes ? alphabet[(w >> 6) & 63] : '=';
        out[o++] = i + 2 < bytes ? alphabet[w & 63] : '=';
    }
    out[o] = '\0';
    explicit_bzero(raw, bytes);
    free(raw);
    return out;
}

static json_t *float_array(const float *v, int n)
{
    json_t *a = json_array();
    for (int k = 0; a && k < n; k++)
        if (json_array_append_new(a, json_real(v[k])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *openai_body(const embed_request *r, const char *model, const float *rows, size_t n, int dim,
                           int prompt_tokens)
{
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++) {
        json_t *vec;
        if (r->base64) {
            char *b64 = api_base64_floats(rows + i * (size_t)dim, (size_t)dim);
            vec = b64 ? json_string(b64) : NULL;
            if (b64)
                explicit_bzero(b64, strlen(b64));
            free(b64);
        } else {
            vec = float_array(rows + i * (size_t)dim, dim);
        }
        json_t *item = vec ? json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", (int)i, "embedding", vec)
                           : NULL;
        if (!item || json_array_append_new(data, item) < 0) {
            json_decref(data);
            return NULL;
        }
    }
    return data ? json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list", "data", data, "model", model,
                            "usage", "prompt_tokens", prompt_tokens, "total_tokens", prompt_tokens)
                : NULL;
}

static json_t *ollama_body(const embed_request *r, const char *model, const float *rows, size_t n, int dim,
                           int prompt_tokens)
{
    if (r->legacy)
        return json_pack("{s:o}", "embedding", float_array(rows, dim));
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, float_array(rows + i * (size_t)dim, dim)) < 0) {
            json_decref(list);
            return NULL;
        }
    return list ? json_pack("{s:s, s:o, s:i}", "model", model, "embeddings", list, "prompt_eval_count",
                            prompt_tokens)
                : NULL;
}

char *api_embed_body(const embed_request *r, const char *model, const float *rows, size_t n, int dim,
                     int prompt_tokens, size_t *len)
{
    json_t *o = r->ollama ? ollama_body(r, model, rows, n, dim, prompt_tokens)
                          : openai_body(r, model, rows, n, dim, prompt_tokens);
    if (!o)
        return NULL;
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (text)
        *len = strlen(text);
    return text;
}

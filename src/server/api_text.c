/* POST /v1/completions: OpenAI's legacy text completion request (a raw prompt,
 * no chat template) and its logprobs object. The generation fields are chat's
 * (api_parse_generation), with the same limits. */
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

enum { TEXT_MAX_LOGPROBS = 5 };

static const char *const known_fields[] = {
    /* OpenAI's, honoured */
    "model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "logprobs", "echo",
    "stop", "presence_penalty", "frequency_penalty", "logit_bias", "seed", "best_of",
    /* OpenAI's: fill-in-the-middle, for models with its tokens (CodeGemma) */
    "suffix",
    /* OpenAI's, accepted: they cannot change the answer */
    "user",
    /* llama.cpp's extensions that chat completions take too */
    "top_k", "min_p", "repetition_penalty", "repeat_penalty", "repeat_last_n",
};

static int token_array(json_t *v, const char *param, int32_t **out, size_t *n, api_error *e)
{
    size_t count = json_array_size(v);
    if (count == 0)
        return api_fail(e, 400, param, "'%s' must not be empty", param);
    int32_t *ids = malloc(count * sizeof *ids);
    if (!ids)
        return api_fail(e, 500, NULL, "out of memory");
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX) {
            free(ids);
            return api_fail(e, 400, param, "'%s' must hold token ids (non-negative integers)", param);
        }
        ids[i] = (int32_t)json_integer_value(t);
    }
    *out = ids;
    *n = count;
    return 0;
}

/* One of several prompts: a string (pointing into the body) or a list of token ids. */
static int parse_one_of_prompts(json_t *p, size_t i, text_request *out, api_error *e)
{
    if (json_is_string(p)) {
        out->prompts[i] = (gen_prompt){.text = json_string_value(p), .len = json_string_length(p)};
        return 0;
    }
    if (!json_is_array(p))
        return api_fail(e, 400, "prompt", "'prompt' must be an array of strings or of token id arrays, not hold %s",
                        api_json_type_name(p));
    size_t n;
    if (token_array(p, "prompt", &out->prompt_ids[i], &n, e) < 0)
        return -1;
    out->prompts[i] = (gen_prompt){.tokens = out->prompt_ids[i], .n_tokens = n};
    return 0;
}

/* Several prompts, each answered n times. */
static int parse_prompts(json_t *p, text_request *out, api_error *e)
{
    size_t count = json_array_size(p);
    if (count > GEN_MAX_CHOICES)
        return api_fail(e, 400, "prompt", "'prompt' holds %zu prompts; at most %d (each answered 'n' times)", count,
                        GEN_MAX_CHOICES);
    out->n_prompts = count;
    for (size_t i = 0; i < count; i++)
        if (parse_one_of_prompts(json_array_get(p, i), i, out, e) < 0)
            return -1;
    return 0;
}

/* A string, a list of token ids, or a list of strings or of lists of token ids
 * (several prompts). */
static int parse_prompt(json_t *root, text_request *out, api_error *e)
{
    json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p))
        return api_fail(e, 400, "prompt", "'prompt' is required");
    if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0)))
        return token_array(p, "prompt", &out->prompt_tokens, &out->n_prompt_tokens, e);
    if (json_is_array(p)) {
        if (json_array_size(p) == 0)
            return api_fail(e, 400, "prompt", "'prompt' must not be empty");
        if (json_array_size(p) > 1)
            return parse_prompts(p, out, e);
        p = json_array_get(p, 0);
        if (json_is_array(p))
            return token_array(p, "prompt", &out->prompt_tokens, &out->n_prompt_tokens, e);
    }
    if (!json_is_string(p))
        return api_fail(e, 400, "prompt", "'prompt' must be a string, an array of strings or token ids, not %s",
                        api_json_type_name(p));
    out->prompt = (chat_message){.role = CHAT_ROLE_USER, .text = json_string_value(p), .len = json_string_length(p)};
    return 0;
}

static bool any_token_prompt(const text_request *r)
{
    for (size_t i = 0; i < r->n_prompts; i++)
        if (r->prompts[i].tokens)
            return true;
    return false;
}

/* A non-empty suffix asks for fill-in-the-middle: the prompt is the text before the
 * gap (the engine refuses it for a model without the markers). */
static int parse_suffix(json_t *root, text_request *out, api_error *e)
{
    json_t *suffix = api_json_optional(root, "suffix");
    if (!suffix)
        return 0;
    if (!json_is_string(suffix))
        return api_fail(e, 400, "suffix", "'suffix' must be a string, not %s", api_json_type_name(suffix));
    if (json_string_length(suffix) == 0)
        return 0;
    if (out->prompt_tokens || any_token_prompt(out))
        return api_fail(e, 400, "suffix", "'suffix' needs the prompt as text, not token ids");
    out->base.params.suffix = json_string_value(suffix);
    out->base.params.suffix_len = json_string_length(suffix);
    return 0;
}

static int parse_text_fields(json_t *root, text_request *out, api_error *e)
{
    chat_request *base = &out->base;
    if (api_check_fields(root, known_fields, sizeof known_fields / sizeof known_fields[0], "", e) < 0 ||
        parse_prompt(root, out, e) < 0 || api_parse_generation(root, base, e) < 0 ||
        api_get_bool(root, "echo", &out->echo, e) < 0)
        return -1;
    if (parse_suffix(root, out, e) < 0)
        return -1;
    long long best_of;
    bool has_best_of;
    if (api_get_integer(root, "best_of", 1, GEN_MAX_CHOICES, &best_of, &has_best_of, e) < 0)
        return -1;
    int n = base->params.n_choices > 1 ? base->params.n_choices : 1;
    if (out->n_prompts > 1 && out->n_prompts * (size_t)n > GEN_MAX_CHOICES)
        return api_fail(e, 400, "n", "%zu prompts with 'n' %d make %zu choices; at most %d", out->n_prompts, n,
                        out->n_prompts * (size_t)n, GEN_MAX_CHOICES);
    if (has_best_of && best_of != n)
        return api_fail(e, 400, "best_of", "'best_of' must equal 'n' (%d): elliott does not rank answers", n);
    long long lp;
    bool has_lp;
    if (api_get_integer(root, "logprobs", 0, TEXT_MAX_LOGPROBS, &lp, &has_lp, e) < 0)
        return -1;
    out->legacy_logprobs = has_lp ? (int)lp : -1;
    base->params.logprobs = has_lp;
    base->params.top_logprobs = has_lp ? (int)lp : 0;
    if (has_lp && out->echo)
        return api_fail(e, 400, "echo", "'echo' with 'logprobs' needs the prompt's log-probabilities, which "
                                        "elliott does not compute");
    if (out->echo && (out->prompt_tokens || any_token_prompt(out)))
        return api_fail(e, 400, "echo", "'echo' needs the prompt as text, not token ids");
    base->params.raw = true;
    base->params.prompt_tokens = out->prompt_tokens;
    base->params.n_prompt_tokens = out->n_prompt_tokens;
    if (out->n_prompts > 1) {
        base->params.prompts = out->prompts;
        base->params.n_prompts = out->n_prompts;
    }
    base->messages = &out->prompt;
    base->n_messages = 1;
    if (out->prompt_tokens || out->n_prompts > 1)
        out->prompt = (chat_message){.role = CHAT_ROLE_USER, .text = "", .len = 0};
    return 0;
}

int api_parse_text_request(const char *body, size_t len, const gen_params *defaults, text_request *out,
                           api_error *e)
{
    memset(out, 0, sizeof *out);
    out->legacy_logprobs = -1;
    out->base.params = *defaults;
    json_t *root;
    if (api_load_json(body, len, "'prompt'", &root, e) < 0)
        return -1;
    out->base.json = root;
    int rc = parse_text_fields(root, out, e);
    if (rc < 0)
        text_request_free(out);
    return rc;
}

void text_request_free(text_request *r)
{
    if (!r)
        return;
    r->base.messages = NULL; /* r->prompt, pointing into the body */
    chat_request_free(&r->base);
    if (r->prompt_tokens)
        explicit_bzero(r->prompt_tokens, r->n_prompt_tokens * sizeof *r->prompt_tokens);
    free(r->prompt_tokens);
    for (size_t i = 0; i < GEN_MAX_CHOICES; i++) {
        if (r->prompt_ids[i])
            explicit_bzero(r->prompt_ids[i], r->prompts[i].n_tokens * sizeof *r->prompt_ids[i]);
        free(r->prompt_ids[i]);
    }
    memset(r, 0, sizeof *r);
}

static json_t *token_text(const gen_logprob *lp, int32_t token, api_token_bytes_fn token_bytes, void *cls)
{
    (void)lp;
    char buf[256];
    size_t n = token_bytes(cls, token, buf, sizeof buf);
    if (n > sizeof buf)
        n = sizeof buf;
    size_t fixed_len;
    char *fixed = api_utf8_repair(buf, n, &fixed_len);
    explicit_bzero(buf, sizeof buf);
    if (!fixed)
        return NULL;
    json_t *s = json_stringn(fixed, fixed_len);
    api_free(fixed);
    return s;
}

json_t *api_text_logprobs(const gen_logprob *lp, size_t n, size_t text_offset, int top,
                          api_token_bytes_fn token_bytes, void *cls)
{
    json_t *tokens = json_array(), *values = json_array(), *tops = json_array(), *offsets = json_array();
    json_t *o = json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", values, "top_logprobs", tops,
                          "text_offset", offsets);
    if (!o)
        return NULL;
    size_t at = text_offset;
    for (size_t i = 0; i < n; i++) {
        json_t *t = token_text(&lp[i], lp[i].token, token_bytes, cls);
        if (!t)
            break;
        json_array_append_new(offsets, json_integer((json_int_t)at));
        at += json_string_length(t);
        json_array_append_new(tokens, t);
        json_array_append_new(values, json_real(lp[i].logprob));
        json_t *alts = json_object();
        for (int k = 0; alts && k < top && k < lp[i].n_top; k++) {
            json_t *name = token_text(&lp[i], lp[i].top_token[k], token_bytes, cls);
            if (name && !json_object_get(alts, json_string_value(name)))
                json_object_set_new(alts, json_string_value(name), json_real(lp[i].top_logprob[k]));
            json_decref(name);
        }
        json_array_append_new(tops, alts ? alts : json_null());
    }
    return o;
}

/* Constrained decoding in the engine: one grammar vocabulary per loaded model, a
 * compiled grammar per request, a matcher per slot; before each draw the tokens the
 * grammar does not allow get -infinity, after it the token advances the matcher.
 *
 * The grammar sees exactly the bytes the slot emits: the detokenizer continues the
 * prompt (at_start is off), so even on add_space_prefix models a token's leading
 * space is part of the answer and of what the grammar matched.
 *
 * Lazy constraints (tool_choice auto): while the answer is still blank, a token may
 * open a call ('{' or '[' first) only where the call grammar allows it; any other
 * token is free. Once a call opens, the grammar holds to the end; once other text
 * appears, nothing constrains the answer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void set_bit(uint32_t *mask, int32_t t)
{
    mask[t / 32] |= 1u << (t % 32);
}

static bool has_bit(const uint32_t *mask, int32_t t)
{
    return mask[t / 32] >> (t % 32) & 1u;
}

static bool is_end_token(const engine *e, int32_t t)
{
    for (size_t i = 0; i < e->n_stop_ids; i++)
        if (e->stop_ids[i] == t)
            return true;
    return false;
}

/* Records how a text token starts, for lazy constraints. */
static void classify(engine *e, int32_t t, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len && is_blank((unsigned char)text[i]))
        i++;
    if (i == len)
        set_bit(e->blank_tokens, t);
    if (i < len && (text[i] == '{' || text[i] == '['))
        set_bit(e->opener_tokens, t);
    else
        set_bit(e->free_tokens, t);
}

int constraint_vocab_init(engine *e, el_err *err)
{
    int n = e->n_vocab, n_text = tokenizer_n_vocab(e->tok);
    size_t words = ((size_t)n + 31) / 32;
    char **bytes = calloc((size_t)n, sizeof *bytes);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    enum grammar_token_kind *kinds = calloc((size_t)n, sizeof *kinds);
    e->opener_tokens = calloc(words, sizeof *e->opener_tokens);
    e->blank_tokens = calloc(words, sizeof *e->blank_tokens);
    e->free_tokens = calloc(words, sizeof *e->free_tokens);
    int rc = -1;
    if (!bytes || !lens || !kinds || !e->opener_tokens || !e->blank_tokens || !e->free_tokens) {
        el_fail(err, "engine: out of memory for the grammar vocabulary");
        goto done;
    }
    char piece[DETOKENIZER_OUT_MAX];
    for (int t = 0; t < n; t++) {
        kinds[t] = GRAMMAR_TOKEN_NEVER; /* control tokens, and logits past the tokenizer's vocabulary */
        if (is_end_token(e, t)) {
            kinds[t] = GRAMMAR_TOKEN_END;
            set_bit(e->free_tokens, t);
            continue;
        }
        if (t >= n_text || tokenizer_is_control(e->tok, t))
            continue;
        size_t len = tokenizer_token_text(e->tok, t, piece, sizeof piece);
        if (len == 0 || len > sizeof piece)
            continue;
        bytes[t] = malloc(len);
        if (!bytes[t]) {
            el_fail(err, "engine: out of memory for the grammar vocabulary");
            goto done;
        }
        memcpy(bytes[t], piece, len);
        lens[t] = len;
        kinds[t] = GRAMMAR_TOKEN_TEXT;
        classify(e, t, piece, len);
    }
    e->gvocab = grammar_vocab_new(n, (const char *const *)bytes, lens, kinds, err);
    rc = e->gvocab ? 0 : -1;
done:
    if (bytes)
        for (int t = 0; t < n; t++)
            free(bytes[t]);
    free(bytes);
    free(lens);
    free(kinds);
    return rc;
}

void constraint_vocab_free(engine *e)
{
    grammar_vocab_free(e->gvocab);
    e->gvocab = NULL;
    free(e->opener_tokens);
    free(e->blank_tokens);
    free(e->free_tokens);
    e->opener_tokens = e->blank_tokens = e->free_tokens = NULL;
}

enum gen_status constraint_compile(const engine *e, const gen_params *p, grammar **out, el_err *err)
{
    *out = NULL;
    if (p->constraint == GEN_CONSTRAINT_NONE)
        return GEN_OK;
    if (p->constraint != GEN_CONSTRAINT_JSON_OBJECT && (!p->constraint_text || p->constraint_len == 0)) {
        el_fail(err, "the constraint has no text");
        return GEN_ERR_CONSTRAINT;
    }
    switch (p->constraint) {
    case GEN_CONSTRAINT_JSON_OBJECT:
        *out = grammar_json_object(e->gvocab, err);
        break;
    case GEN_CONSTRAINT_JSON_SCHEMA:
        *out = grammar_from_json_schema(e->gvocab, p->constraint_text, p->constraint_len, err);
        break;
    case GEN_CONSTRAINT_GBNF:
        *out = grammar_from_gbnf(e->gvocab, p->constraint_text, p->constraint_len, err);
        break;
    case GEN_CONSTRAINT_NONE:
        break;
    default:
        el_fail(err, "unknown constraint");
        return GEN_ERR_CONSTRAINT;
    }
    return *out ? GEN_OK : GEN_ERR_CONSTRAINT;
}

/* ---- per slot ---------------------------------------------------------------------- */

int constraint_slot_begin(engine *e, slot *s, el_err *err)
{
    const gen_request *r = s->req;
    s->constrained = false;
    s->lazy_pending = false;
    if (!r->grammar)
        return 0;
    s->matcher = grammar_matcher_new(r->grammar, err);
    if (!s->matcher)
        return -1;
    s->constrained = !r->constraint_lazy;
    s->lazy_pending = r->constraint_lazy;
    return 0;
}

void constraint_slot_end(slot *s)
{
    grammar_matcher_free(s->matcher);
    s->matcher = NULL;
    s->constrained = s->lazy_pending = false;
}

/* Gives -infinity to every token outside mask; returns how many stay. Whole words
 * of the mask are taken at once: under a grammar most words are all clear. */
static int apply_mask(const engine *e, const uint32_t *mask, float *logits)
{
    int allowed = 0;
    for (int base = 0; base < e->n_vocab; base += 32) {
        uint32_t bits = mask[base / 32];
        int n = e->n_vocab - base < 32 ? e->n_vocab - base : 32;
        if (n == 32 && bits == UINT32_MAX) {
            allowed += 32;
            continue;
        }
        if (n == 32 && bits == 0) { /* a plain loop the compiler vectorises */
            for (int i = 0; i < 32; i++)
                logits[base + i] = -INFINITY;
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (bits >> i & 1u)
                allowed++;
            else
                logits[base + i] = -INFINITY;
        }
    }
    return allowed;
}

int constraint_mask_logits(engine *e, slot *s, float *logits)
{
    if (!s->constrained && !s->lazy_pending)
        return 0;
    int n = grammar_matcher_fill_mask(s->matcher, s->mask);
    if (s->lazy_pending) {
        /* a call may open only as the grammar allows; any other text (or an end) is free */
        size_t words = ((size_t)e->n_vocab + 31) / 32;
        for (size_t w = 0; w < words; w++)
            s->mask[w] |= e->free_tokens[w];
    }
    if (!s->lazy_pending && n == 0)
        return -1; /* cannot happen with a well-formed grammar: nothing may follow */
    return apply_mask(e, s->mask, logits) > 0 ? 0 : -1;
}

int constraint_accept(engine *e, slot *s, int32_t tok)
{
    if (s->lazy_pending) {
        if (has_bit(e->opener_tokens, tok)) {
            s->lazy_pending = false;
            s->constrained = true;
        } else {
            if (!has_bit(e->blank_tokens, tok))
                s->lazy_pending = false; /* free text: nothing constrains the rest */
            return 0;
        }
    }
    if (!s->constrained)
        return 0;
    if (grammar_matcher_accept_token(s->matcher, tok) < 0)
        return -1;
    return grammar_matcher_must_end(s->matcher) ? 1 : 0;
}

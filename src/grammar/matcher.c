/* The public entry points: compiling sources, and one sequence's matcher. */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"

/* Compile-time spent on token masks before the rest is left to first use. */
#define MASK_BUDGET_SECONDS 0.5

struct grammar_matcher {
    const grammar *g;
    stackset cur, next, scratch_a, scratch_b;
    uint32_t *tmp_mask;
    bool finished;
};

grammar *grammar_from_gbnf(const grammar_vocab *v, const char *text, size_t len, el_err *err)
{
    if (!v || (!text && len)) {
        el_fail(err, "grammar: no vocabulary or text");
        return NULL;
    }
    gb_builder b = {0};
    grammar *g = NULL;
    if (gbnf_parse(&b, text ? text : "", len, err) == 0 && (g = grammar_build(v, &b, err)) != NULL &&
        grammar_precompute_masks(g, MASK_BUDGET_SECONDS, err) < 0) {
        grammar_free(g);
        g = NULL;
    }
    gb_builder_free(&b);
    return g;
}

/* Compiles GBNF made from a schema; its errors are told in the schema's terms (the
 * generated text's lines and columns mean nothing to the caller). */
static grammar *from_generated(const grammar_vocab *v, char *gbnf, el_err *err)
{
    if (!gbnf)
        return NULL;
    el_err mine = {{0}};
    grammar *g = grammar_from_gbnf(v, gbnf, strlen(gbnf), &mine);
    free(gbnf);
    if (!g) {
        const char *msg = mine.msg, *col = strstr(msg, ", column ");
        if (strstr(msg, "left-recursive"))
            el_fail(err, "json schema: a $ref cycle refers back to itself before any character (left-recursive)");
        else if (!strncmp(msg, "grammar: line ", 14) && col && (col = strstr(col, ": ")) != NULL)
            el_fail(err, "json schema: %s", col + 2);
        else
            el_fail(err, "json schema: %s", !strncmp(msg, "grammar: ", 9) ? msg + 9 : msg);
    }
    return g;
}

grammar *grammar_from_json_schema(const grammar_vocab *v, const char *schema, size_t len, el_err *err)
{
    if (!v || !schema) {
        el_fail(err, "json schema: no vocabulary or schema");
        return NULL;
    }
    return from_generated(v, json_schema_to_gbnf(schema, len, err), err);
}

grammar *grammar_json_object(const grammar_vocab *v, el_err *err)
{
    if (!v) {
        el_fail(err, "grammar: no vocabulary");
        return NULL;
    }
    return from_generated(v, json_object_gbnf(err), err);
}

/* ---- matcher ---------------------------------------------------------------------------------- */

grammar_matcher *grammar_matcher_new(const grammar *g, el_err *err)
{
    grammar_matcher *m = calloc(1, sizeof *m);
    if (!m || !(m->tmp_mask = malloc(g->vocab->mask_words * sizeof *m->tmp_mask)) ||
        stackset_push(&m->cur, &g->start_pos, 1, NULL, 0, 0, true) < 0) {
        grammar_matcher_free(m);
        el_fail(err, "grammar: out of memory for a matcher");
        return NULL;
    }
    m->g = g;
    return m;
}

void grammar_matcher_free(grammar_matcher *m)
{
    if (!m)
        return;
    stackset_free(&m->cur);
    stackset_free(&m->next);
    stackset_free(&m->scratch_a);
    stackset_free(&m->scratch_b);
    if (m->tmp_mask)
        explicit_bzero(m->tmp_mask, m->g ? m->g->vocab->mask_words * sizeof *m->tmp_mask : 0);
    free(m->tmp_mask);
    free(m);
}

int grammar_matcher_fill_mask(grammar_matcher *m, uint32_t *mask)
{
    const grammar_vocab *v = m->g->vocab;
    size_t words = v->mask_words;
    if (m->finished) {
        memset(mask, 0, words * sizeof *mask);
        return 0;
    }
    if (grammar_mask_fill(m->g, &m->cur, mask, m->tmp_mask, &m->scratch_a, &m->scratch_b) < 0) {
        /* out of memory computing a mask: allow only an end, if there may be one */
        memset(mask, 0, words * sizeof *mask);
    }
    if (stackset_can_end(m->g, &m->cur))
        for (size_t i = 0; i < words; i++)
            mask[i] |= v->end_mask[i];
    int n = 0;
    for (size_t i = 0; i < words; i++)
        n += popcount32(mask[i]);
    return n;
}

/* Consumes bytes into m->next; false (m->cur unchanged) if some byte is refused. */
static bool advance_bytes(grammar_matcher *m, const uint8_t *s, size_t len)
{
    if (stackset_copy(&m->next, &m->cur) < 0)
        return false;
    stackset *a = &m->next, *b = &m->scratch_a;
    for (size_t i = 0; i < len; i++) {
        stackset_advance(m->g, a, s[i], b, false);
        if (!b->n)
            return false;
        stackset *t = a;
        a = b;
        b = t;
    }
    /* a holds the result: keep it as the current set */
    stackset t = m->cur;
    m->cur = *a;
    *a = t;
    return true;
}

int grammar_matcher_accept_bytes(grammar_matcher *m, const char *bytes, size_t len)
{
    if (m->finished || (!bytes && len))
        return -1;
    return advance_bytes(m, (const uint8_t *)bytes, len) ? 0 : -1;
}

int grammar_matcher_accept_token(grammar_matcher *m, int32_t token)
{
    const grammar_vocab *v = m->g->vocab;
    if (m->finished || token < 0 || token >= v->n_tokens)
        return -1;
    switch (v->kinds[token]) {
    case GRAMMAR_TOKEN_END:
        if (!stackset_can_end(m->g, &m->cur))
            return -1;
        m->finished = true;
        return 0;
    case GRAMMAR_TOKEN_TEXT:
        return advance_bytes(m, v->text + v->tok_off[token], v->tok_off[token + 1] - v->tok_off[token]) ? 0 : -1;
    default:
        return -1;
    }
}

bool grammar_matcher_can_end(const grammar_matcher *m)
{
    return !m->finished && stackset_can_end(m->g, &m->cur);
}

/* Can the stack consume any byte at all? */
static bool stack_can_continue(const grammar *g, const uint32_t *frames, size_t len)
{
    while (len > 0) {
        uint32_t q = frames[len - 1];
        if (g->item_n[q])
            return true;
        if (!g->nullable_rest[q])
            return false;
        len--;
    }
    return false;
}

bool grammar_matcher_must_end(const grammar_matcher *m)
{
    if (m->finished)
        return true;
    for (size_t i = 0; i < m->cur.n; i++)
        if (stack_can_continue(m->g, m->cur.frames + m->cur.stacks[i].off, m->cur.stacks[i].len))
            return false;
    return stackset_can_end(m->g, &m->cur);
}

bool grammar_matcher_finished(const grammar_matcher *m)
{
    return m->finished;
}

int grammar_matcher_fill_mask_reference(grammar_matcher *m, uint32_t *mask)
{
    const grammar_vocab *v = m->g->vocab;
    if (m->finished) {
        memset(mask, 0, v->mask_words * sizeof *mask);
        return 0;
    }
    if (grammar_mask_fill_direct(m->g, &m->cur, mask) < 0)
        return -1;
    if (stackset_can_end(m->g, &m->cur))
        for (size_t i = 0; i < v->mask_words; i++)
            mask[i] |= v->end_mask[i];
    int n = 0;
    for (size_t i = 0; i < v->mask_words; i++)
        n += popcount32(mask[i]);
    return n;
}

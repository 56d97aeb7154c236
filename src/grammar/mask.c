/* Token masks: walks of the vocabulary trie.
 *
 * For every position that can be on top of a stack, compiling walks the trie once
 * with the stack [q] and nothing known below it (XGrammar's adaptive token mask
 * cache): a token whose bytes are matched without leaving what is known is accepted
 * whatever the stack, one that fails on every path is rejected, and the rest (few:
 * they run past the end of q's rule into a place that depends on the caller) are
 * "uncertain" and checked per step against the real stack. Each position keeps the
 * shorter of its accepted and rejected lists. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar_internal.h"

static inline void bit_set(uint32_t *m, int32_t t)
{
    m[t >> 5] |= 1u << (t & 31);
}
static inline bool bit_get(const uint32_t *m, int32_t t)
{
    return (m[t >> 5] >> (t & 31)) & 1u;
}

typedef struct walk_levels {
    stackset *lv;
    size_t n;
} walk_levels;

static void levels_free(walk_levels *w)
{
    for (size_t i = 0; i < w->n; i++)
        stackset_free(&w->lv[i]);
    free(w->lv);
}

/* Walks the trie from `start`. Runtime (analysis false): tokens matched by some stack
 * go to acc. Analysis: tokens matched on a path that knew every frame go to acc,
 * tokens matched only past what is known go to unc. */
static int walk_trie(const grammar *g, const stackset *start, bool analysis, uint32_t *acc, uint32_t *unc)
{
    const grammar_vocab *v = g->vocab;
    walk_levels w = {calloc(v->max_len + 1, sizeof *w.lv), v->max_len + 1};
    if (!w.lv)
        return -1;
    int rc = 0;
    if (stackset_copy(&w.lv[0], start) < 0)
        rc = -1;
    for (size_t i = 1; i < v->n_trie && !rc;) {
        const trie_node *node = &v->trie[i];
        stackset *parent = &w.lv[node->depth - 1], *here = &w.lv[node->depth];
        stackset_advance(g, parent, node->byte, here, analysis);
        if (!here->n && !here->wild) {
            i = node->next;
            continue;
        }
        if (node->tok_n) {
            bool det = false;
            for (size_t s = 0; s < here->n && !det; s++)
                det = !analysis || here->stacks[s].det;
            for (uint32_t k = 0; k < node->tok_n; k++)
                bit_set(det ? acc : unc, v->trie_tokens[node->tok_off + k]);
        }
        i++;
    }
    levels_free(&w);
    return rc;
}

static int32_t *list_of(const uint32_t *bits, size_t words, uint32_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < words; i++)
        n += (size_t)__builtin_popcount(bits[i]);
    int32_t *list = malloc((n ? n : 1) * sizeof *list);
    if (!list)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < words; i++)
        for (uint32_t w = bits[i]; w; w &= w - 1)
            list[k++] = (int32_t)(i * 32 + (size_t)__builtin_ctz(w));
    *count = (uint32_t)n;
    return list;
}

int grammar_compute_pos_mask(grammar *g, uint32_t q)
{
    pos_mask *pm = &g->masks[q];
    if (atomic_load_explicit(&pm->state, memory_order_acquire) != MASK_PENDING)
        return 0;
    const grammar_vocab *v = g->vocab;
    size_t words = v->mask_words;
    uint32_t *acc = calloc(words, sizeof *acc), *unc = calloc(words, sizeof *unc);
    stackset start = {0};
    int rc = -1;
    if (!acc || !unc || stackset_push(&start, &q, 1, NULL, 0, g->rule_of[q], true) < 0)
        goto done;
    if (walk_trie(g, &start, true, acc, unc) < 0)
        goto done;
    size_t n_acc = 0, n_text = 0;
    for (size_t i = 0; i < words; i++) {
        unc[i] &= ~acc[i];
        n_acc += (size_t)__builtin_popcount(acc[i]);
        n_text += (size_t)__builtin_popcount(v->text_mask[i]);
    }
    int kind = MASK_ACCEPT_LIST;
    if (2 * n_acc > n_text) { /* keep the rejected tokens instead */
        kind = MASK_REJECT_LIST;
        for (size_t i = 0; i < words; i++)
            acc[i] = v->text_mask[i] & ~acc[i] & ~unc[i];
    }
    pm->list = list_of(acc, words, &pm->n_list);
    pm->uncertain = list_of(unc, words, &pm->n_uncertain);
    if (!pm->list || !pm->uncertain) {
        free(pm->list), free(pm->uncertain);
        pm->list = pm->uncertain = NULL;
        goto done;
    }
    atomic_store_explicit(&pm->state, kind, memory_order_release);
    rc = 0;
done:
    stackset_free(&start);
    free(acc);
    free(unc);
    return rc;
}

const pos_mask *grammar_pos_mask(const grammar *g, uint32_t q)
{
    pos_mask *pm = &g->masks[q];
    if (atomic_load_explicit(&pm->state, memory_order_acquire) != MASK_PENDING)
        return pm;
    grammar *mg = (grammar *)g; /* the cache is filled once, under the lock */
    pthread_mutex_lock(&mg->mask_lock);
    int rc = grammar_compute_pos_mask(mg, q);
    pthread_mutex_unlock(&mg->mask_lock);
    return rc < 0 ? NULL : pm;
}

/* ---- per-step masks ------------------------------------------------------------------------ */

/* Does the stack accept every byte of token t? */
static bool stack_accepts(const grammar *g, const uint32_t *frames, uint32_t len, int32_t t, stackset *a, stackset *b)
{
    const grammar_vocab *v = g->vocab;
    stackset_clear(a);
    if (stackset_push(a, frames, len, NULL, 0, 0, true) < 0)
        return false;
    for (uint32_t i = v->tok_off[t]; i < v->tok_off[t + 1]; i++) {
        stackset_advance(g, a, v->text[i], b, false);
        if (!b->n)
            return false;
        stackset *tmp = a;
        a = b;
        b = tmp;
    }
    return true;
}

/* Stacks this deep are walked directly: the analysis did not see their depth bound. */
enum { DEEP_STACK = GRAMMAR_MAX_STACK / 2 };

int grammar_mask_fill(const grammar *g, const stackset *cur, uint32_t *mask, uint32_t *tmp, stackset *a,
                      stackset *b)
{
    const grammar_vocab *v = g->vocab;
    size_t words = v->mask_words;
    memset(mask, 0, words * sizeof *mask);
    for (size_t s = 0; s < cur->n; s++) {
        const gstack *st = &cur->stacks[s];
        if (!st->len)
            continue;
        const uint32_t *frames = cur->frames + st->off;
        uint32_t q = frames[st->len - 1];
        if (st->len > DEEP_STACK) {
            stackset one = {0};
            int rc = stackset_push(&one, frames, st->len, NULL, 0, 0, true);
            memset(tmp, 0, words * sizeof *tmp);
            if (rc == 0)
                rc = walk_trie(g, &one, false, tmp, NULL);
            stackset_free(&one);
            if (rc < 0)
                return -1;
            for (size_t i = 0; i < words; i++)
                mask[i] |= tmp[i];
            continue;
        }
        /* the stack-independent part, once per distinct top */
        bool seen = false;
        for (size_t p = 0; p < s && !seen; p++)
            seen = cur->stacks[p].len && cur->frames[cur->stacks[p].off + cur->stacks[p].len - 1] == q &&
                   cur->stacks[p].len <= DEEP_STACK;
        const pos_mask *pm = grammar_pos_mask(g, q);
        if (!pm)
            return -1;
        if (!seen) {
            if (pm->state == MASK_ACCEPT_LIST) {
                for (uint32_t i = 0; i < pm->n_list; i++)
                    bit_set(mask, pm->list[i]);
            } else {
                memcpy(tmp, v->text_mask, words * sizeof *tmp);
                for (uint32_t i = 0; i < pm->n_list; i++)
                    tmp[pm->list[i] >> 5] &= ~(1u << (pm->list[i] & 31));
                for (uint32_t i = 0; i < pm->n_uncertain; i++)
                    tmp[pm->uncertain[i] >> 5] &= ~(1u << (pm->uncertain[i] & 31));
                for (size_t i = 0; i < words; i++)
                    mask[i] |= tmp[i];
            }
        }
        for (uint32_t i = 0; i < pm->n_uncertain; i++) {
            int32_t t = pm->uncertain[i];
            if (!bit_get(mask, t) && stack_accepts(g, frames, st->len, t, a, b))
                bit_set(mask, t);
        }
    }
    return 0;
}

/* The reference: every token checked by a trie walk with the real stacks. */
int grammar_mask_fill_direct(const grammar *g, const stackset *cur, uint32_t *mask)
{
    memset(mask, 0, g->vocab->mask_words * sizeof *mask);
    return walk_trie(g, cur, false, mask, NULL);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int grammar_precompute_masks(grammar *g, double budget_seconds, el_err *err)
{
    double start = now_seconds();
    /* tops of stacks: the start, and whatever follows a terminal or a reference */
    for (uint32_t q = 0; q < g->n_elems; q++) {
        bool top = q == g->start_pos ||
                   (q > 0 && !EL_IS_BOUNDARY(g->elems[q]) && !EL_IS_BOUNDARY(g->elems[q - 1]));
        if (!top)
            continue;
        if (now_seconds() - start > budget_seconds)
            return 0;
        if (grammar_compute_pos_mask(g, q) < 0)
            return el_fail(err, "grammar: out of memory for token masks");
    }
    return 0;
}

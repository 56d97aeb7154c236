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

/* Walks the trie from `start` one stack set per depth (the fallback when the DFA below
 * is full). Runtime (analysis false): tokens matched by some stack go to acc.
 * Analysis: tokens matched on a path that knew every frame go to acc, tokens matched
 * only past what is known go to unc. */
static int walk_trie_sets(const grammar *g, const stackset *start, bool analysis, uint32_t *acc, uint32_t *unc)
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
        if (analysis && here->overflow)
            here->wild = true; /* incomplete: let the real stack decide */
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

/* ---- a lazily built DFA over stack sets ------------------------------------------------------
 *
 * The trie has about a million nodes for Gemma's vocabulary, but a walk meets few
 * distinct stack sets: the state after "hello" inside a string is the state after
 * "h". Stack sets are interned as states and each (state, byte) transition is
 * computed once, so a walk costs one table lookup per node. */

enum { DFA_MAX_STATES = 1 << 14, DFA_UNKNOWN = -1, DFA_DEAD = -2 };

typedef struct dfa dfa;
struct dfa {
    const grammar *g;
    bool analysis;
    double deadline;    /* seconds (CLOCK_MONOTONIC) after which a walk gives up; 0: none */
    stackset *states;
    uint8_t *det;       /* some stack knows every frame below it (or runtime) */
    int32_t *trans;     /* states x 256 */
    uint64_t *hashes;
    uint32_t *table;    /* open addressing: state index + 1 */
    size_t n, cap, table_cap;
    stackset scratch;
};

static void dfa_free(dfa *d)
{
    for (size_t i = 0; i < d->n; i++)
        stackset_free(&d->states[i]);
    stackset_free(&d->scratch);
    free(d->states);
    free(d->det);
    free(d->trans);
    free(d->hashes);
    free(d->table);
    memset(d, 0, sizeof *d);
}

static uint64_t set_hash(const stackset *s)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)s->wild;
    for (size_t i = 0; i < s->n; i++) {
        const gstack *t = &s->stacks[i];
        h = (h ^ t->len) * 1099511628211ull;
        h = (h ^ t->bottom_rule) * 1099511628211ull;
        h = (h ^ t->det) * 1099511628211ull;
        for (uint32_t k = 0; k < t->len; k++)
            h = (h ^ s->frames[t->off + k]) * 1099511628211ull;
    }
    return h;
}

static bool set_equal(const stackset *a, const stackset *b)
{
    if (a->n != b->n || a->wild != b->wild)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const gstack *x = &a->stacks[i], *y = &b->stacks[i];
        if (x->len != y->len || x->bottom_rule != y->bottom_rule || x->det != y->det ||
            (x->len && memcmp(a->frames + x->off, b->frames + y->off, x->len * sizeof *a->frames)))
            return false;
    }
    return true;
}

/* The state of set s (interned); DFA_DEAD for an empty set; -3 when the DFA is full
 * or out of memory. */
static int32_t dfa_intern(dfa *d, const stackset *s)
{
    if (!s->n && !s->wild)
        return DFA_DEAD;
    uint64_t h = set_hash(s);
    if (d->table_cap) {
        for (size_t j = h & (d->table_cap - 1); d->table[j]; j = (j + 1) & (d->table_cap - 1)) {
            uint32_t k = d->table[j] - 1;
            if (d->hashes[k] == h && set_equal(&d->states[k], s))
                return (int32_t)k;
        }
    }
    if (d->n >= DFA_MAX_STATES)
        return -3;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        stackset *st = realloc(d->states, cap * sizeof *st);
        if (st)
            d->states = st;
        uint8_t *det = realloc(d->det, cap);
        if (det)
            d->det = det;
        int32_t *tr = realloc(d->trans, cap * 256 * sizeof *tr);
        if (tr)
            d->trans = tr;
        uint64_t *hs = realloc(d->hashes, cap * sizeof *hs);
        if (hs)
            d->hashes = hs;
        if (!st || !det || !tr || !hs)
            return -3;
        d->cap = cap;
    }
    if (2 * (d->n + 1) > d->table_cap) {
        size_t cap = d->table_cap ? 2 * d->table_cap : 1024;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t)
            return -3;
        for (size_t k = 0; k < d->n; k++) {
            size_t j = d->hashes[k] & (cap - 1);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = (uint32_t)k + 1;
        }
        free(d->table);
        d->table = t;
        d->table_cap = cap;
    }
    stackset *copy = &d->states[d->n];
    memset(copy, 0, sizeof *copy);
    if (stackset_copy(copy, s) < 0) {
        stackset_free(copy);
        return -3;
    }
    bool det = !d->analysis;
    for (size_t i = 0; i < s->n && !det; i++)
        det = s->stacks[i].det;
    d->det[d->n] = det;
    d->hashes[d->n] = h;
    for (int b = 0; b < 256; b++)
        d->trans[d->n * 256 + (size_t)b] = DFA_UNKNOWN;
    size_t j = h & (d->table_cap - 1);
    while (d->table[j])
        j = (j + 1) & (d->table_cap - 1);
    d->table[j] = (uint32_t)d->n + 1;
    return (int32_t)d->n++;
}

static inline int32_t dfa_next(dfa *d, int32_t state, unsigned b)
{
    int32_t t = d->trans[(size_t)state * 256 + b];
    if (t != DFA_UNKNOWN)
        return t;
    stackset_advance(d->g, &d->states[state], b, &d->scratch, d->analysis);
    if (d->analysis && d->scratch.overflow)
        d->scratch.wild = true; /* incomplete: let the real stack decide */
    d->scratch.overflow = false;
    t = dfa_intern(d, &d->scratch);
    if (t >= DFA_DEAD) /* -3 (full) is not remembered */
        d->trans[(size_t)state * 256 + b] = t;
    return t;
}

static double now_seconds(void);

/* The trie walk through the DFA; 1 when the DFA filled up (the caller falls back), 2
 * when past the deadline (nothing is decided). */
static int walk_trie_dfa(dfa *d, const stackset *start, uint32_t *acc, uint32_t *unc)
{
    const grammar_vocab *v = d->g->vocab;
    int32_t *level = malloc((v->max_len + 1) * sizeof *level);
    if (!level)
        return -1;
    int rc = 0;
    level[0] = dfa_intern(d, start);
    if (level[0] == -3)
        rc = 1;
    for (size_t i = 1, visits = 0; i < v->n_trie && !rc && level[0] >= 0; visits++) {
        if (d->deadline > 0 && !(visits & 0xffff) && now_seconds() > d->deadline) {
            rc = 2;
            break;
        }
        const trie_node *node = &v->trie[i];
        int32_t s = dfa_next(d, level[node->depth - 1], node->byte);
        if (s == -3) {
            rc = 1;
            break;
        }
        if (s == DFA_DEAD) {
            i = node->next;
            continue;
        }
        level[node->depth] = s;
        if (node->tok_n) {
            uint32_t *dst = d->det[s] ? acc : unc;
            for (uint32_t k = 0; k < node->tok_n; k++)
                bit_set(dst, v->trie_tokens[node->tok_off + k]);
        }
        i++;
    }
    free(level);
    return rc;
}

/* 0, or 2 when d's deadline passed, -1 when out of memory. */
static int walk_trie(const grammar *g, dfa *d, const stackset *start, bool analysis, uint32_t *acc, uint32_t *unc)
{
    dfa local = {.g = g, .analysis = analysis};
    if (!d)
        d = &local;
    size_t words = g->vocab->mask_words;
    int rc = walk_trie_dfa(d, start, acc, unc);
    if (rc == 1 && d->deadline > 0) {
        rc = 2; /* the slow way would not fit in the time left either */
    } else if (rc == 1) { /* full: start over without it */
        memset(acc, 0, words * sizeof *acc);
        if (unc)
            memset(unc, 0, words * sizeof *unc);
        rc = walk_trie_sets(g, start, analysis, acc, unc);
    }
    dfa_free(&local);
    return rc;
}

static int32_t *list_of(const uint32_t *bits, size_t words, uint32_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < words; i++)
        n += (size_t)popcount32(bits[i]);
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

/* The position whose masks q shares (a far rule of a repetition chain), or q. */
static uint32_t chain_alias(const grammar *g, uint32_t q)
{
    uint32_t r = g->rule_of[q], k = g->rule_chain_k[r];
    uint32_t same = (uint32_t)g->vocab->max_len + 2;
    if (k <= same)
        return q;
    uint32_t t = r - (k - same);
    if (g->rule_chain_k[t] != same)
        return q;
    uint32_t size = g->rule_start[r + 1] - g->rule_start[r];
    if (g->rule_start[t + 1] - g->rule_start[t] != size)
        return q;
    return g->rule_start[t] + (q - g->rule_start[r]);
}

/* 0 when computed, 1 when d's deadline passed first, -1 when out of memory. */
static int compute_pos_mask(grammar *g, dfa *d, uint32_t q)
{
    pos_mask *pm = &g->masks[q];
    if (atomic_load_explicit(&pm->state, memory_order_acquire) != MASK_PENDING)
        return 0;
    uint32_t alias = chain_alias(g, q);
    if (alias != q) {
        int rc = compute_pos_mask(g, d, alias);
        if (rc)
            return rc;
        const pos_mask *src = &g->masks[alias];
        pm->n_list = src->n_list;
        pm->n_uncertain = src->n_uncertain;
        pm->list = src->list;
        pm->bitmap = src->bitmap;
        pm->uncertain = src->uncertain;
        pm->borrowed = true;
        atomic_store_explicit(&pm->state, atomic_load(&src->state), memory_order_release);
        return 0;
    }
    const grammar_vocab *v = g->vocab;
    size_t words = v->mask_words;
    uint32_t *acc = calloc(words, sizeof *acc), *unc = calloc(words, sizeof *unc);
    stackset start = {0};
    int rc = -1;
    if (!acc || !unc || stackset_push(&start, &q, 1, NULL, 0, g->rule_of[q], true) < 0)
        goto done;
    int walked = walk_trie(g, d, &start, true, acc, unc);
    if (walked == 2) /* out of time: left for its first use */
        rc = 1;
    if (walked)
        goto done;
    size_t n_acc = 0, n_unc = 0;
    for (size_t i = 0; i < words; i++) {
        unc[i] &= ~acc[i];
        n_acc += (size_t)popcount32(acc[i]);
        n_unc += (size_t)popcount32(unc[i]);
    }
    size_t n_rej = v->n_text - n_acc - n_unc;
    int kind = n_acc <= n_rej ? MASK_ACCEPT_LIST : MASK_REJECT_LIST;
    if ((n_acc < n_rej ? n_acc : n_rej) > words / 2) { /* a bitmap is smaller than either list */
        kind = MASK_BITMAP;
        pm->bitmap = acc;
        acc = NULL;
        pm->list = malloc(sizeof *pm->list);
        pm->n_list = 0;
    } else {
        if (kind == MASK_REJECT_LIST)
            for (size_t i = 0; i < words; i++)
                acc[i] = v->text_mask[i] & ~acc[i] & ~unc[i];
        pm->list = list_of(acc, words, &pm->n_list);
    }
    pm->uncertain = list_of(unc, words, &pm->n_uncertain);
    if (!pm->list || !pm->uncertain) {
        free(pm->list), free(pm->uncertain), free(pm->bitmap);
        pm->list = pm->uncertain = NULL;
        pm->bitmap = NULL;
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

void grammar_free_lazy_dfa(grammar *g)
{
    if (g->lazy_dfa)
        dfa_free(g->lazy_dfa);
    free(g->lazy_dfa);
    g->lazy_dfa = NULL;
}

int grammar_compute_pos_mask(grammar *g, uint32_t q)
{
    return compute_pos_mask(g, NULL, q) < 0 ? -1 : 0;
}

const pos_mask *grammar_pos_mask(const grammar *g, uint32_t q)
{
    pos_mask *pm = &g->masks[q];
    if (atomic_load_explicit(&pm->state, memory_order_acquire) != MASK_PENDING)
        return pm;
    grammar *mg = (grammar *)g; /* the cache is filled once, under the lock */
    pthread_mutex_lock(&mg->mask_lock);
    if (!mg->lazy_dfa && (mg->lazy_dfa = calloc(1, sizeof *mg->lazy_dfa)) != NULL) {
        mg->lazy_dfa->g = g;
        mg->lazy_dfa->analysis = true;
    }
    int rc = compute_pos_mask(mg, mg->lazy_dfa, q);
    pthread_mutex_unlock(&mg->mask_lock);
    return rc < 0 ? NULL : pm;
}

/* ---- per-step masks ------------------------------------------------------------------------ */

/* Does the stack accept every byte of token t? Tried first on the top frames only, over
 * the floor (a token rarely reaches deep): the full stack is needed only when some path
 * reaches the floor before the token's end. */
enum { CHECK_FRAMES = 24 };

static bool stack_accepts_from(const grammar *g, const uint32_t *frames, uint32_t len, bool floored, int32_t t,
                               stackset *a, stackset *b, bool *needs_full)
{
    const grammar_vocab *v = g->vocab;
    stackset_clear(a);
    if ((floored && stackset_push(a, &g->floor_pos, 1, frames, len, 0, true) < 0) ||
        (!floored && stackset_push(a, frames, len, NULL, 0, 0, true) < 0))
        return false;
    for (uint32_t i = v->tok_off[t]; i < v->tok_off[t + 1]; i++) {
        stackset_advance(g, a, v->text[i], b, false);
        if (b->hit_floor || b->overflow)
            *needs_full = true;
        if (!b->n)
            return false;
        stackset *tmp = a;
        a = b;
        b = tmp;
    }
    return true;
}

static bool stack_accepts(const grammar *g, const uint32_t *frames, uint32_t len, int32_t t, stackset *a, stackset *b)
{
    if (len > CHECK_FRAMES) {
        bool needs_full = false;
        if (stack_accepts_from(g, frames + len - CHECK_FRAMES, CHECK_FRAMES, true, t, a, b, &needs_full))
            return true;
        if (!needs_full)
            return false;
    }
    bool unused = false;
    return stack_accepts_from(g, frames, len, false, t, a, b, &unused);
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
                rc = walk_trie(g, NULL, &one, false, tmp, NULL);
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
            if (pm->state == MASK_BITMAP) {
                for (size_t i = 0; i < words; i++)
                    mask[i] |= pm->bitmap[i];
            } else if (pm->state == MASK_ACCEPT_LIST) {
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
    return walk_trie(g, NULL, cur, false, mask, NULL);
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
    dfa d = {.g = g, .analysis = true, .deadline = start + budget_seconds};
    int rc = 0;
    /* tops of stacks: the start, and whatever follows a terminal or a reference */
    for (uint32_t q = 0; q < g->n_elems; q++) {
        bool top = q == g->start_pos ||
                   (q > 0 && !EL_IS_BOUNDARY(g->elems[q]) && !EL_IS_BOUNDARY(g->elems[q - 1]));
        if (!top)
            continue;
        if (now_seconds() - start > budget_seconds)
            break;
        int computed = compute_pos_mask(g, &d, q);
        if (computed < 0)
            rc = el_fail(err, "grammar: out of memory for token masks");
        if (computed)
            break;
    }
    dfa_free(&d);
    return rc;
}

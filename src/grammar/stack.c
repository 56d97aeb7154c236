/* Sets of parse stacks and how a byte moves them.
 *
 * The matcher keeps every stack the input so far can be in (a grammar may be
 * ambiguous; equal stacks are merged). The mask analysis uses the same code on
 * stacks that start from a single position with nothing known below: when such a
 * stack runs out of frames it continues at every place its bottom rule can return to
 * (g->conts); `det` stays set only while that place is unique. */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"

enum { MAX_RETURN_HOPS = 4, HASH_FROM = 16 };

void stackset_clear(stackset *s)
{
    if (s->hashed) {
        memset(s->slots, 0, s->n_slots * sizeof *s->slots);
        s->hashed = false;
    }
    s->n_frames = 0;
    s->n = 0;
    s->wild = false;
    s->overflow = false;
    s->hit_floor = false;
}

void stackset_free(stackset *s)
{
    /* frames spell out where the answer is: wipe them */
    if (s->frames)
        explicit_bzero(s->frames, s->cap_frames * sizeof *s->frames);
    free(s->frames);
    free(s->stacks);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

static int reserve(void **p, size_t *cap, size_t need, size_t size, bool wipe)
{
    if (need <= *cap && *p) /* allocated even when nothing is needed yet: pointers into it stay defined */
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = malloc(c * size);
    if (!q)
        return -1;
    if (*p) {
        memcpy(q, *p, *cap * size);
        if (wipe)
            explicit_bzero(*p, *cap * size);
        free(*p);
    }
    *p = q;
    *cap = c;
    return 0;
}

static uint64_t frames_hash(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, uint32_t bottom)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ bottom;
    for (size_t i = 0; i < na; i++)
        h = (h ^ a[i]) * 0x100000001b3ull;
    for (size_t i = 0; i < nb; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static bool same_stack(const stackset *s, const gstack *t, const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                       uint32_t bottom_rule)
{
    if (t->len != na + nb || t->bottom_rule != bottom_rule)
        return false;
    const uint32_t *f = s->frames + t->off;
    return (!na || !memcmp(f, a, na * sizeof *a)) && (!nb || !memcmp(f + na, b, nb * sizeof *b));
}

/* (Re)builds the hash table for at least n stacks; -1 when out of memory. */
static int rehash(stackset *s, size_t n)
{
    if (2 * n > s->n_slots) {
        size_t cap = s->n_slots ? s->n_slots : 64;
        while (cap < 2 * n)
            cap *= 2;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t)
            return -1;
        free(s->slots);
        s->slots = t;
        s->n_slots = cap;
    } else {
        memset(s->slots, 0, s->n_slots * sizeof *s->slots);
    }
    for (size_t i = 0; i < s->n; i++) {
        const gstack *t = &s->stacks[i];
        size_t j = frames_hash(s->frames + t->off, t->len, NULL, 0, t->bottom_rule) & (s->n_slots - 1);
        while (s->slots[j])
            j = (j + 1) & (s->n_slots - 1);
        s->slots[j] = (uint32_t)i + 1;
    }
    s->hashed = true;
    return 0;
}

int stackset_push(stackset *s, const uint32_t *a, size_t na, const uint32_t *b, size_t nb, uint32_t bottom_rule,
                  bool det)
{
    size_t len = na + nb;
    if (len > GRAMMAR_MAX_STACK) {
        s->overflow = true;
        return -1;
    }
    /* merge with an equal stack: a linear look while few, a hash table past that */
    size_t slot = 0;
    if (s->n >= HASH_FROM) {
        if ((!s->hashed || 2 * (s->n + 1) > s->n_slots) && rehash(s, s->n + 1) < 0) {
            s->overflow = true;
            return -1;
        }
        slot = frames_hash(a, na, b, nb, bottom_rule) & (s->n_slots - 1);
        for (; s->slots[slot]; slot = (slot + 1) & (s->n_slots - 1)) {
            gstack *t = &s->stacks[s->slots[slot] - 1];
            if (same_stack(s, t, a, na, b, nb, bottom_rule)) {
                t->det |= det;
                return 0;
            }
        }
    } else {
        for (size_t i = 0; i < s->n; i++)
            if (same_stack(s, &s->stacks[i], a, na, b, nb, bottom_rule)) {
                s->stacks[i].det |= det;
                return 0;
            }
    }
    if (s->n >= GRAMMAR_MAX_STACKS) {
        s->overflow = true;
        return -1;
    }
    if (reserve((void **)&s->frames, &s->cap_frames, s->n_frames + len, sizeof *s->frames, true) < 0 ||
        reserve((void **)&s->stacks, &s->cap, s->n + 1, sizeof *s->stacks, false) < 0) {
        s->overflow = true;
        return -1;
    }
    uint32_t *f = s->frames + s->n_frames;
    if (na)
        memcpy(f, a, na * sizeof *a);
    if (nb)
        memcpy(f + na, b, nb * sizeof *b);
    if (s->hashed)
        s->slots[slot] = (uint32_t)s->n + 1;
    s->stacks[s->n++] = (gstack){(uint32_t)s->n_frames, (uint32_t)len, bottom_rule, det};
    s->n_frames += len;
    return 0;
}

int stackset_copy(stackset *dst, const stackset *src)
{
    stackset_clear(dst);
    if (reserve((void **)&dst->frames, &dst->cap_frames, src->n_frames, sizeof *dst->frames, true) < 0 ||
        reserve((void **)&dst->stacks, &dst->cap, src->n, sizeof *dst->stacks, false) < 0)
        return -1;
    if (src->n_frames)
        memcpy(dst->frames, src->frames, src->n_frames * sizeof *src->frames);
    if (src->n)
        memcpy(dst->stacks, src->stacks, src->n * sizeof *src->stacks);
    dst->n_frames = src->n_frames;
    dst->n = src->n;
    dst->wild = src->wild;
    dst->overflow = src->overflow;
    return 0;
}

static void advance_one(const grammar *g, const uint32_t *frames, size_t len, uint32_t bottom, bool det, unsigned b,
                        stackset *out, bool analysis, int hops)
{
    while (len > 0) {
        uint32_t q = frames[len - 1];
        if (q == g->floor_pos) {
            out->hit_floor = true;
            return;
        }
        const gram_item *it = g->items + g->item_off[q];
        for (uint32_t i = 0, n = g->item_n[q]; i < n; i++)
            if (byteset_has(&g->sets[it[i].set], b))
                stackset_push(out, frames, len - 1, g->seqs + it[i].seq_off, it[i].seq_n, bottom, det);
        if (!g->nullable_rest[q])
            return;
        len--; /* the rest of q's alternative may be empty: try the frame below */
    }
    if (!analysis)
        return; /* the whole grammar is complete: nothing may follow */
    if (hops >= MAX_RETURN_HOPS || g->rule_cont_unknown[bottom]) {
        out->wild = true;
        return;
    }
    uint32_t n = g->cont_n[bottom];
    bool unique = det && n == 1 && !g->rule_can_finish[bottom];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = g->conts[g->cont_off[bottom] + i];
        advance_one(g, &c, 1, g->rule_of[c], unique, b, out, analysis, hops + 1);
    }
}

void stackset_advance(const grammar *g, const stackset *in, unsigned b, stackset *out, bool analysis)
{
    stackset_clear(out);
    out->wild = in->wild;
    out->overflow = in->overflow;
    for (size_t i = 0; i < in->n; i++) {
        const gstack *s = &in->stacks[i];
        advance_one(g, in->frames + s->off, s->len, s->bottom_rule, s->det, b, out, analysis, 0);
    }
}

bool stack_can_end(const grammar *g, const uint32_t *frames, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!g->nullable_rest[frames[i]])
            return false;
    return true;
}

bool stackset_can_end(const grammar *g, const stackset *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (stack_can_end(g, s->frames + s->stacks[i].off, s->stacks[i].len))
            return true;
    return false;
}

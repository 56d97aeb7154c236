/* Random walks through a grammar on a real vocabulary: at each step the mask is
 * filled and one allowed token is drawn uniformly; after `soft_steps` steps the walk
 * heads for the end (an END token when allowed, else a closing '"', '}' or ']' when
 * allowed), so that walks finish. Used by the property test and the benchmark. */
#ifndef ELLIOTT_TESTS_GRAMMAR_WALK_H
#define ELLIOTT_TESTS_GRAMMAR_WALK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

typedef struct walk_vocab {
    const grammar_vocab *v;
    const tokenizer *tok;
    int32_t ends[2];    /* EOS, end of turn */
    int32_t closers[3]; /* single-byte tokens '"', '}', ']' (-1 if absent) */
    int32_t bytes[256]; /* a token for each single byte (-1 if none) */
} walk_vocab;

static walk_vocab walk_vocab_make(const grammar_vocab *v, const tokenizer *tok)
{
    walk_vocab wv = {v, tok, {tokenizer_eos(tok), tokenizer_eot(tok)}, {-1, -1, -1}, {0}};
    for (int b = 0; b < 256; b++)
        wv.bytes[b] = -1;
    const char closers[] = "\"}]";
    for (int32_t id = 0; id < tokenizer_n_vocab(tok); id++) {
        char buf[8];
        if (tokenizer_is_control(tok, id) || tokenizer_token_text(tok, id, buf, sizeof buf) != 1)
            continue;
        for (int i = 0; i < 3; i++)
            if (buf[0] == closers[i] && wv.closers[i] < 0)
                wv.closers[i] = id;
        if (wv.bytes[(unsigned char)buf[0]] < 0)
            wv.bytes[(unsigned char)buf[0]] = id;
    }
    return wv;
}

typedef struct walk_result {
    char *text; /* malloc'd, NUL-terminated */
    size_t len;
    int steps;
    bool finished;     /* ended with an END token */
    double *mask_us;   /* per step fill_mask wall time (caller frees) */
    double *mask_cpu_us; /* the same steps in this thread's CPU time (caller frees) */
    int n_masks;
    int mask_mismatch; /* steps where an allowed token was refused by accept_token */
} walk_result;

static double walk_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* CPU time of this thread: on a loaded machine, what the work itself cost. */
static double walk_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int walk_bit(const uint32_t *m, int t)
{
    return (m[t >> 5] >> (t & 31)) & 1;
}

/* The k-th allowed token of the mask. */
static int walk_pick(const uint32_t *mask, size_t words, int k)
{
    for (size_t i = 0; i < words; i++) {
        int c = __builtin_popcount(mask[i]);
        if (k < c) {
            uint32_t w = mask[i];
            while (k--)
                w &= w - 1;
            return (int)(i * 32) + __builtin_ctz(w);
        }
        k -= c;
    }
    return -1;
}

static walk_result grammar_walk(const walk_vocab *wv, const grammar *g, el_rng *rng, int soft_steps, int max_steps)
{
    walk_result r = {0};
    size_t words = grammar_mask_words(wv->v), cap = 256;
    uint32_t *mask = malloc(words * sizeof *mask);
    r.text = malloc(cap);
    r.mask_us = malloc((size_t)max_steps * sizeof *r.mask_us);
    r.mask_cpu_us = malloc((size_t)max_steps * sizeof *r.mask_cpu_us);
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    if (!mask || !r.text || !r.mask_us || !r.mask_cpu_us || !m)
        goto done;
    for (r.steps = 0; r.steps < max_steps; r.steps++) {
        double t0 = walk_now_us(), c0 = walk_cpu_us();
        int n = grammar_matcher_fill_mask(m, mask);
        r.mask_cpu_us[r.n_masks] = walk_cpu_us() - c0;
        r.mask_us[r.n_masks++] = walk_now_us() - t0;
        if (n <= 0)
            break;
        int tok = -1;
        if (r.steps >= soft_steps) {
            for (int i = 0; i < 2 && tok < 0; i++)
                if (wv->ends[i] >= 0 && walk_bit(mask, wv->ends[i]))
                    tok = wv->ends[i];
            for (int i = 0; i < 3 && tok < 0; i++) {
                int c = wv->closers[(i + (int)(el_rng_next(rng) % 3)) % 3];
                if (c >= 0 && walk_bit(mask, c))
                    tok = c;
            }
            int n_short = 0, shorts[256]; /* then single bytes: they make progress */
            for (int b = 0; b < 256 && tok < 0; b++)
                if (wv->bytes[b] >= 0 && walk_bit(mask, wv->bytes[b]))
                    shorts[n_short++] = wv->bytes[b];
            if (tok < 0 && n_short)
                tok = shorts[el_rng_next(rng) % (uint64_t)n_short];
        }
        if (tok < 0)
            tok = walk_pick(mask, words, (int)(el_rng_next(rng) % (uint64_t)n));
        if (grammar_matcher_accept_token(m, tok) < 0) {
            r.mask_mismatch++;
            break;
        }
        if (grammar_matcher_finished(m)) {
            r.finished = true;
            break;
        }
        char piece[TOKENIZER_MAX_PIECE * 4];
        size_t len = tokenizer_token_text(wv->tok, tok, piece, sizeof piece);
        if (r.len + len + 1 > cap) {
            cap = 2 * (r.len + len + 1);
            char *t = realloc(r.text, cap);
            if (!t)
                break;
            r.text = t;
        }
        memcpy(r.text + r.len, piece, len);
        r.len += len;
    }
done:
    if (r.text)
        r.text[r.len] = 0;
    grammar_matcher_free(m);
    free(mask);
    return r;
}

#endif

/* Shared by the grammar fuzz targets: a small vocabulary (every byte, a few multi-byte
 * tokens, an END and a control token) and the checks run on every grammar that
 * compiles: along a path chosen by the input, each mask equals the reference mask,
 * every allowed token is accepted, END is allowed exactly where the grammar may end. */
#ifndef ELLIOTT_FUZZ_GRAMMAR_COMMON_H
#define ELLIOTT_FUZZ_GRAMMAR_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

static const char *const fuzz_multi[] = {"{\"", "\":", "\",", "\"}", "ab", "true", "null", "12", "\xc3\xa9",
                                         "\xe2\x82\xac", "a\xc3", " {", "\n ", "},", "[\"", "\"]", "-1", "0."};
enum {
    FUZZ_N_MULTI = sizeof fuzz_multi / sizeof fuzz_multi[0],
    FUZZ_END = 256 + FUZZ_N_MULTI,
    FUZZ_NEVER,
    FUZZ_N
};

static void fuzz_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz grammar: %s\n", what);
        abort();
    }
}

static grammar_vocab *fuzz_vocab(void)
{
    static grammar_vocab *v;
    if (v)
        return v;
    static char bytes[256];
    const char *texts[FUZZ_N];
    size_t lens[FUZZ_N];
    enum grammar_token_kind kinds[FUZZ_N];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        texts[i] = &bytes[i];
        lens[i] = 1;
        kinds[i] = GRAMMAR_TOKEN_TEXT;
    }
    for (int i = 0; i < FUZZ_N_MULTI; i++) {
        texts[256 + i] = fuzz_multi[i];
        lens[256 + i] = strlen(fuzz_multi[i]);
        kinds[256 + i] = GRAMMAR_TOKEN_TEXT;
    }
    texts[FUZZ_END] = texts[FUZZ_NEVER] = "";
    lens[FUZZ_END] = lens[FUZZ_NEVER] = 0;
    kinds[FUZZ_END] = GRAMMAR_TOKEN_END;
    kinds[FUZZ_NEVER] = GRAMMAR_TOKEN_NEVER;
    el_err err;
    v = grammar_vocab_new(FUZZ_N, texts, lens, kinds, &err);
    fuzz_check(v != NULL, err.msg);
    return v;
}

static int fuzz_bit(const uint32_t *m, int t)
{
    return (m[t / 32] >> (t % 32)) & 1;
}

/* Walks up to `steps` tokens chosen by `choice`; returns the text when the walk ended
 * with END (malloc'd), else NULL. */
static char *fuzz_walk(const grammar *g, const uint8_t *choice, size_t n_choice, int steps, size_t *len)
{
    grammar_vocab *v = fuzz_vocab();
    size_t words = grammar_mask_words(v);
    uint32_t mask[(FUZZ_N + 31) / 32], ref[(FUZZ_N + 31) / 32];
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    fuzz_check(m != NULL, "matcher");
    char *text = malloc(4 * (size_t)steps + 1);
    size_t n = 0;
    bool ended = false;
    for (int step = 0; step < steps; step++) {
        int allowed = grammar_matcher_fill_mask(m, mask);
        int allowed_ref = grammar_matcher_fill_mask_reference(m, ref);
        fuzz_check(allowed == allowed_ref && !memcmp(mask, ref, words * 4), "mask differs from the reference");
        fuzz_check(fuzz_bit(mask, FUZZ_END) == grammar_matcher_can_end(m), "END allowed where the grammar cannot end");
        fuzz_check(!fuzz_bit(mask, FUZZ_NEVER), "a control token allowed");
        if (grammar_matcher_must_end(m))
            fuzz_check(allowed == 1 && fuzz_bit(mask, FUZZ_END), "must end but something else is allowed");
        if (!allowed)
            break;
        int k = (int)(n_choice ? choice[step % n_choice] : 0) % allowed, t = -1;
        for (int i = 0; i < FUZZ_N; i++)
            if (fuzz_bit(mask, i) && k-- == 0) {
                t = i;
                break;
            }
        fuzz_check(grammar_matcher_accept_token(m, t) == 0, "an allowed token was refused");
        if (t == FUZZ_END) {
            ended = true;
            break;
        }
        size_t tl = t < 256 ? 1 : strlen(fuzz_multi[t - 256]);
        memcpy(text + n, t < 256 ? (const char[]){(char)t} : fuzz_multi[t - 256], tl);
        n += tl;
    }
    fuzz_check(!grammar_matcher_finished(m) || ended, "finished without END");
    grammar_matcher_free(m);
    if (!ended) {
        free(text);
        return NULL;
    }
    text[n] = 0;
    *len = n;
    return text;
}

#endif

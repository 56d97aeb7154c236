/* Helpers for the grammar tests: a small vocabulary (every single byte as a
 * byte-fallback token, some multi-byte tokens, an END and a NEVER token), and
 * matching whole strings byte-wise and token-wise. */
#ifndef ELLIOTT_GRAMMAR_TEST_UTIL_H
#define ELLIOTT_GRAMMAR_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "test.h"

static const char *const util_multi[] = {
    "{\"", "\":", "\",", "\"}", "ab", "abc", "true", "null", "12", "\xc3\xa9", "\xe2\x82\xac",
    "a\xc3", "\xa9z", " {", "\n ", "\"a\"", "},", "[\"", "\"]", "-1", "0.", "e+", "Z\"",
};
enum {
    UTIL_N_MULTI = sizeof util_multi / sizeof util_multi[0],
    UTIL_END = 256 + UTIL_N_MULTI,
    UTIL_NEVER = UTIL_END + 1,
    UTIL_N = UTIL_NEVER + 1
};

static grammar_vocab *util_vocab(void)
{
    static char bytes[256];
    const char *texts[UTIL_N];
    size_t lens[UTIL_N];
    enum grammar_token_kind kinds[UTIL_N];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        texts[i] = &bytes[i];
        lens[i] = 1;
        kinds[i] = GRAMMAR_TOKEN_TEXT;
    }
    for (int i = 0; i < UTIL_N_MULTI; i++) {
        texts[256 + i] = util_multi[i];
        lens[256 + i] = strlen(util_multi[i]);
        kinds[256 + i] = GRAMMAR_TOKEN_TEXT;
    }
    texts[UTIL_END] = "<eos>";
    lens[UTIL_END] = 5;
    kinds[UTIL_END] = GRAMMAR_TOKEN_END;
    texts[UTIL_NEVER] = "<bos>";
    lens[UTIL_NEVER] = 5;
    kinds[UTIL_NEVER] = GRAMMAR_TOKEN_NEVER;
    el_err err;
    grammar_vocab *v = grammar_vocab_new(UTIL_N, texts, lens, kinds, &err);
    if (!v)
        fprintf(stderr, "vocabulary: %s\n", err.msg);
    return v;
}

/* Does the grammar accept exactly `s` (byte by byte, then an end)? */
static int util_match_bytes(const grammar *g, const char *s, size_t n)
{
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    if (!m)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++)
        ok = grammar_matcher_accept_bytes(m, s + i, 1) == 0;
    ok = ok && grammar_matcher_can_end(m);
    grammar_matcher_free(m);
    return ok;
}

/* The bit of token t in a mask. */
static int util_bit(const uint32_t *mask, int t)
{
    return (mask[t / 32] >> (t % 32)) & 1;
}

/* Greedy longest-token segmentation of s, checking at each step that the mask allows
 * the token, that the mask equals the reference mask, and at the end that END is
 * allowed. Returns 1 when s is accepted this way. */
static int util_match_tokens(const grammar_vocab *v, const grammar *g, const char *s, size_t n)
{
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    size_t words = grammar_mask_words(v);
    uint32_t *mask = calloc(words, 4), *ref = calloc(words, 4);
    int ok = m && mask && ref;
    size_t i = 0;
    while (ok) {
        int n_allowed = grammar_matcher_fill_mask(m, mask);
        int n_ref = grammar_matcher_fill_mask_reference(m, ref);
        CHECK_EQ_INT(n_allowed, n_ref);
        CHECK(!memcmp(mask, ref, words * 4));
        CHECK(!util_bit(mask, UTIL_NEVER));
        if (i == n) {
            ok = util_bit(mask, UTIL_END) && grammar_matcher_accept_token(m, UTIL_END) == 0 &&
                 grammar_matcher_finished(m);
            break;
        }
        int best = -1;
        size_t best_len = 0;
        for (int t = 0; t < 256 + UTIL_N_MULTI; t++) {
            size_t len = t < 256 ? 1 : strlen(util_multi[t - 256]);
            const char *text = t < 256 ? (const char[]){(char)t} : util_multi[t - 256];
            if (len > best_len && len <= n - i && !memcmp(text, s + i, len) && util_bit(mask, t)) {
                best = t;
                best_len = len;
            }
        }
        if (best < 0) {
            ok = 0;
            break;
        }
        CHECK_EQ_INT(grammar_matcher_accept_token(m, best), 0);
        i += best_len;
    }
    free(mask);
    free(ref);
    grammar_matcher_free(m);
    return ok;
}

#endif

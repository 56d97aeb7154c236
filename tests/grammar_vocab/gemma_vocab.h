/* A grammar vocabulary from a GGUF tokenizer, built the way the engine does: each
 * token's text as tokenizer_token_text gives it ("▁" as a space, "<0x0A>" as its
 * byte), EOS and end-of-turn as END, control tokens and tokens without text NEVER. */
#ifndef ELLIOTT_TESTS_GEMMA_VOCAB_H
#define ELLIOTT_TESTS_GEMMA_VOCAB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

static grammar_vocab *gemma_vocab_from_tokenizer(const tokenizer *tok, el_err *err)
{
    int n = tokenizer_n_vocab(tok);
    char **texts = calloc((size_t)n, sizeof *texts);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    enum grammar_token_kind *kinds = calloc((size_t)n, sizeof *kinds);
    grammar_vocab *v = NULL;
    if (!texts || !lens || !kinds) {
        el_fail(err, "out of memory");
        goto done;
    }
    for (int32_t id = 0; id < n; id++) {
        char buf[TOKENIZER_MAX_PIECE * 4];
        if (id == tokenizer_eos(tok) || id == tokenizer_eot(tok)) {
            kinds[id] = GRAMMAR_TOKEN_END;
            continue;
        }
        size_t len = tokenizer_is_control(tok, id) ? 0 : tokenizer_token_text(tok, id, buf, sizeof buf);
        if (!len || len > sizeof buf) {
            kinds[id] = GRAMMAR_TOKEN_NEVER;
            continue;
        }
        texts[id] = malloc(len);
        if (!texts[id]) {
            el_fail(err, "out of memory");
            goto done;
        }
        memcpy(texts[id], buf, len);
        lens[id] = len;
        kinds[id] = GRAMMAR_TOKEN_TEXT;
    }
    v = grammar_vocab_new(n, (const char *const *)texts, lens, kinds, err);
done:
    for (int i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(kinds);
    return v;
}

/* Loads path's tokenizer and its grammar vocabulary; NULL (message printed) on failure. */
static grammar_vocab *gemma_vocab_load(const char *path, tokenizer **tok_out)
{
    el_err err;
    gguf_file *f = gguf_open(path, &err);
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return NULL;
    }
    tokenizer *tok = tokenizer_load(f, &err);
    gguf_close(f);
    if (!tok) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return NULL;
    }
    grammar_vocab *v = gemma_vocab_from_tokenizer(tok, &err);
    if (!v) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        tokenizer_free(tok);
        return NULL;
    }
    if (tok_out)
        *tok_out = tok;
    else
        tokenizer_free(tok);
    return v;
}

#endif

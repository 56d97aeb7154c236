/* The vocabulary as byte strings and as a byte trie in pre-order (a node's subtree is
 * the nodes up to its `next`), so that a walk skips every token sharing a rejected
 * prefix in one step. */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"

enum { MAX_TOKEN_BYTES = 4096 };

void grammar_vocab_free(grammar_vocab *v)
{
    if (!v)
        return;
    free(v->kinds);
    free(v->tok_off);
    free(v->text);
    free(v->text_mask);
    free(v->end_mask);
    free(v->trie);
    free(v->trie_tokens);
    free(v);
}

int grammar_vocab_n_tokens(const grammar_vocab *v)
{
    return v->n_tokens;
}

size_t grammar_mask_words(const grammar_vocab *v)
{
    return v->mask_words;
}

/* Tokens sort by their bytes; the first eight, packed big-endian, decide most
 * comparisons without touching the text. */
typedef struct sort_item {
    uint64_t key;
    int32_t id;
    uint32_t len;
} sort_item;

static int cmp_tokens(const void *a, const void *b, void *ctx)
{
    const sort_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    const grammar_vocab *v = ctx;
    size_t lx = x->len, ly = y->len, n = lx < ly ? lx : ly;
    int c = n > 8 ? memcmp(v->text + v->tok_off[x->id] + 8, v->text + v->tok_off[y->id] + 8, n - 8) : 0;
    if (c)
        return c;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int build_trie(grammar_vocab *v, el_err *err)
{
    size_t n_text = 0, total = 0;
    for (int t = 0; t < v->n_tokens; t++)
        if (v->kinds[t] == GRAMMAR_TOKEN_TEXT) {
            n_text++;
            total += v->tok_off[t + 1] - v->tok_off[t];
        }
    sort_item *order = malloc((n_text ? n_text : 1) * sizeof *order);
    v->trie = malloc((total + 1) * sizeof *v->trie);
    v->trie_tokens = malloc((n_text ? n_text : 1) * sizeof *v->trie_tokens);
    if (!order || !v->trie || !v->trie_tokens) {
        free(order);
        return el_fail(err, "grammar: out of memory for the vocabulary");
    }
    size_t k = 0;
    for (int t = 0; t < v->n_tokens; t++)
        if (v->kinds[t] == GRAMMAR_TOKEN_TEXT) {
            uint32_t len = v->tok_off[t + 1] - v->tok_off[t];
            uint64_t key = 0;
            for (uint32_t i = 0; i < 8; i++)
                key = key << 8 | (i < len ? v->text[v->tok_off[t] + i] : 0);
            order[k++] = (sort_item){key, t, len};
        }
    qsort_r(order, n_text, sizeof *order, cmp_tokens, v);

    size_t n = 1, n_tok = 0;
    v->trie[0] = (trie_node){0, 0, 0, 0, 0};
    uint32_t path[MAX_TOKEN_BYTES + 1];
    size_t depth = 0;
    path[0] = 0;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (size_t i = 0; i < n_text; i++) {
        int32_t t = order[i].id;
        const uint8_t *s = v->text + v->tok_off[t];
        size_t len = v->tok_off[t + 1] - v->tok_off[t], l = 0;
        while (prev && l < len && l < prev_len && s[l] == prev[l])
            l++;
        for (; depth > l; depth--)
            v->trie[path[depth]].next = (uint32_t)n;
        for (size_t d = l + 1; d <= len; d++) {
            v->trie[n] = (trie_node){0, 0, 0, (uint16_t)d, s[d - 1]};
            path[d] = (uint32_t)n++;
        }
        depth = len;
        trie_node *node = &v->trie[path[len]];
        if (!node->tok_n)
            node->tok_off = (uint32_t)n_tok;
        if (node->tok_n == UINT16_MAX) {
            free(order);
            return el_fail(err, "grammar: more than %d tokens with the same bytes", UINT16_MAX);
        }
        node->tok_n++;
        v->trie_tokens[n_tok++] = t;
        prev = s;
        prev_len = len;
    }
    for (; depth > 0; depth--)
        v->trie[path[depth]].next = (uint32_t)n;
    v->trie[0].next = (uint32_t)n;
    v->n_trie = n;
    free(order);
    return 0;
}

grammar_vocab *grammar_vocab_new(int n_tokens, const char *const *bytes, const size_t *lens,
                                 const enum grammar_token_kind *kinds, el_err *err)
{
    if (n_tokens <= 0 || n_tokens > (1 << 24) || !bytes || !lens || !kinds) {
        el_fail(err, "grammar: a vocabulary needs between 1 and %d tokens", 1 << 24);
        return NULL;
    }
    grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) {
        el_fail(err, "grammar: out of memory for the vocabulary");
        return NULL;
    }
    v->n_tokens = n_tokens;
    v->mask_words = ((size_t)n_tokens + 31) / 32;
    v->kinds = malloc((size_t)n_tokens);
    v->tok_off = malloc(((size_t)n_tokens + 1) * sizeof *v->tok_off);
    v->text_mask = calloc(v->mask_words, sizeof *v->text_mask);
    v->end_mask = calloc(v->mask_words, sizeof *v->end_mask);
    if (!v->kinds || !v->tok_off || !v->text_mask || !v->end_mask)
        goto oom;
    size_t total = 0;
    for (int t = 0; t < n_tokens; t++) {
        enum grammar_token_kind k = kinds[t];
        if (k != GRAMMAR_TOKEN_TEXT && k != GRAMMAR_TOKEN_END && k != GRAMMAR_TOKEN_NEVER) {
            el_fail(err, "grammar: token %d has an unknown kind %d", t, (int)k);
            goto fail;
        }
        if (k == GRAMMAR_TOKEN_TEXT && (!lens[t] || !bytes[t]))
            k = GRAMMAR_TOKEN_NEVER;
        if (k == GRAMMAR_TOKEN_TEXT && lens[t] > MAX_TOKEN_BYTES) {
            el_fail(err, "grammar: token %d is longer than %d bytes", t, MAX_TOKEN_BYTES);
            goto fail;
        }
        v->kinds[t] = (uint8_t)k;
        if (k == GRAMMAR_TOKEN_TEXT) {
            total += lens[t];
            v->n_text++;
            v->text_mask[t / 32] |= 1u << (t % 32);
            if (lens[t] > v->max_len)
                v->max_len = lens[t];
        } else if (k == GRAMMAR_TOKEN_END) {
            v->end_mask[t / 32] |= 1u << (t % 32);
        }
    }
    if (total > UINT32_MAX / 2) {
        el_fail(err, "grammar: the vocabulary's text is too large");
        goto fail;
    }
    v->text = malloc(total ? total : 1);
    if (!v->text)
        goto oom;
    size_t off = 0;
    for (int t = 0; t < n_tokens; t++) {
        v->tok_off[t] = (uint32_t)off;
        if (v->kinds[t] == GRAMMAR_TOKEN_TEXT) {
            memcpy(v->text + off, bytes[t], lens[t]);
            off += lens[t];
        }
    }
    v->tok_off[n_tokens] = (uint32_t)off;
    if (build_trie(v, err) < 0)
        goto fail;
    return v;
oom:
    el_fail(err, "grammar: out of memory for the vocabulary");
fail:
    grammar_vocab_free(v);
    return NULL;
}

/* libFuzzer target for the tokenizer and the chat template.
 *
 * The first input byte picks a vocabulary (two small ones built in memory, and the
 * real Gemma vocabulary, tests/data/vocab-gemma.gguf, when run from the repository
 * root); the rest is the text. Checked on every input:
 * - encoding never fails and every id is in the vocabulary;
 * - streaming detokenization only ever emits whole, valid UTF-8;
 * - for vocabularies without a dummy-prefix space, valid UTF-8 without U+2581 or
 *   "<0x" comes back unchanged (decode(encode(x)) == x);
 * - as a chat, the text (split into messages at 0x1e bytes) never adds turn
 *   markers: the Gemma prompt has exactly one <start_of_turn> per turn, plus one. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/tokenizer/tiny_vocab.h"
#include "../tests/utf8_check.h"
#include "chat/chat.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_VOCABS = 3, MAX_MESSAGES = 8 };

typedef struct fuzz_vocab {
    gguf_image image; /* kept alive: the in-memory file points into it */
    tokenizer *tok;
    enum chat_format format;
} fuzz_vocab;

static fuzz_vocab vocabs[MAX_VOCABS];
static int n_vocabs;

static const tiny_token tiny_tokens[] = {
    {"\xe2\x96\x81", -1, 1}, {"a", -2, 1}, {"b", -2, 1}, {"ab", -3, 1}, {"ba", -3, 1}, {"aa", -4, 1},
    {"\xe2\x96\x81" "a", -2, 1}, {"<", -5, 1}, {">", -5, 1}, {"\n", -1, 4}, {"<b>", 0, 4},
    {"<start_of_turn>", 0, 3}, {"<end_of_turn>", 0, 3}, {"\xc3\xa9", -6, 1},
};

static void add_tiny(bool space_prefix)
{
    fuzz_vocab *v = &vocabs[n_vocabs];
    image_tiny_vocab(&v->image, tiny_tokens, sizeof tiny_tokens / sizeof tiny_tokens[0], space_prefix, false);
    el_err err;
    gguf_file *f = gguf_open_memory(v->image.bytes, v->image.n, &err);
    v->tok = f ? tokenizer_load(f, &err) : NULL;
    if (!v->tok) {
        fprintf(stderr, "fuzz_tokenizer: tiny vocabulary: %s\n", err.msg);
        abort();
    }
    v->format = chat_detect_format(f, v->tok);
    gguf_close(f);
    n_vocabs++;
}

static void add_gemma(void)
{
    el_err err;
    gguf_file *f = gguf_open("tests/data/vocab-gemma.gguf", &err);
    if (!f)
        return; /* absent: fuzz the built-in vocabularies only */
    fuzz_vocab *v = &vocabs[n_vocabs];
    v->tok = tokenizer_load(f, &err);
    if (v->tok) {
        v->format = chat_detect_format(f, v->tok);
        n_vocabs++;
    }
    gguf_close(f);
}

static void init_once(void)
{
    if (n_vocabs)
        return;
    add_tiny(false);
    add_tiny(true);
    add_gemma();
}

static bool contains(const uint8_t *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(s + i, needle, k))
            return true;
    return false;
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", what);
        abort();
    }
}

static token_vec encode(const tokenizer *t, const uint8_t *text, size_t n, bool special)
{
    token_vec ids = {0};
    el_err err;
    check(tokenizer_encode(t, (const char *)text, n, special, &ids, &err) == 0, "encode failed");
    for (size_t i = 0; i < ids.n; i++)
        check(ids.ids[i] >= 0 && ids.ids[i] < tokenizer_n_vocab(t), "id outside the vocabulary");
    return ids;
}

/* Decodes in 64-byte pushes; returns the text (caller frees). */
static uint8_t *decode(const tokenizer *t, const token_vec *ids, size_t *len)
{
    size_t cap = 64 + ids->n * 8 * TOKENIZER_MAX_PIECE / 16 + 64, n = 0;
    uint8_t *out = malloc(cap + DETOKENIZER_OUT_MAX);
    check(out != NULL, "out of memory");
    detokenizer d;
    detokenizer_init(&d, t);
    char chunk[64];
    for (size_t i = 0; i <= ids->n; i++) {
        size_t k = i < ids->n ? detokenizer_push(&d, ids->ids[i], chunk, sizeof chunk)
                              : detokenizer_finish(&d, chunk, sizeof chunk);
        check(k <= sizeof chunk, "detokenizer overran its buffer");
        check(valid_utf8((const uint8_t *)chunk, k), "detokenizer emitted invalid UTF-8");
        if (n + k > cap) {
            cap = 2 * (n + k);
            uint8_t *bigger = realloc(out, cap);
            check(bigger != NULL, "out of memory");
            out = bigger;
        }
        memcpy(out + n, chunk, k);
        n += k;
    }
    *len = n;
    return out;
}

static void fuzz_chat(const fuzz_vocab *v, const uint8_t *text, size_t n)
{
    chat_message messages[MAX_MESSAGES];
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= n && count < MAX_MESSAGES; i++) {
        if (i < n && text[i] != 0x1e)
            continue;
        /* The byte after each separator picks the role (mod 3). */
        enum chat_role role = count == 0 ? CHAT_ROLE_USER : (enum chat_role)(start < n ? text[start] % 3 : 1);
        messages[count++] = (chat_message){role, (const char *)text + start, i - start};
        start = i + 1;
    }
    int32_t sot = tokenizer_find(v->tok, "<start_of_turn>");
    for (int h = 0; h < 2; h++) {
        token_vec ids = {0};
        el_err err;
        enum chat_history history = h ? CHAT_HISTORY_LAST : CHAT_HISTORY_FULL;
        if (chat_build_prompt(v->tok, v->format, messages, count, history, &ids, &err) < 0) {
            check(ids.n == 0, "a failed prompt left tokens behind");
            continue;
        }
        size_t turns = 0, markers = 0;
        for (size_t i = 0; i < count; i++)
            turns += messages[i].role != CHAT_ROLE_SYSTEM;
        if (history == CHAT_HISTORY_LAST)
            turns = 1;
        for (size_t i = 0; i < ids.n; i++)
            markers += ids.ids[i] == sot;
        if (v->format == CHAT_FORMAT_GEMMA && sot >= 0)
            check(markers == turns + 1, "message text produced a turn marker");
        token_vec_free(&ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size == 0)
        return 0;
    const fuzz_vocab *v = &vocabs[data[0] % n_vocabs];
    const uint8_t *text = data + 1;
    size_t n = size - 1;

    token_vec plain = encode(v->tok, text, n, false);
    token_vec special = encode(v->tok, text, n, true);
    size_t back_len;
    uint8_t *back = decode(v->tok, &plain, &back_len);
    free(decode(v->tok, &special, &(size_t){0}));
    if (!tokenizer_add_space_prefix(v->tok) && valid_utf8(text, n) && !contains(text, n, "\xe2\x96\x81") &&
        !contains(text, n, "<0x"))
        check(back_len == n && !memcmp(back, text, n), "decode(encode(x)) != x");
    free(back);
    token_vec_free(&plain);
    token_vec_free(&special);
    fuzz_chat(v, text, n);
    return 0;
}

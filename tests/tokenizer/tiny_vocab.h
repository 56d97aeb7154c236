/* Builds small vocabulary-only GGUF images in memory, for tests and the fuzzer:
 * exact control over tokens, scores and types, with no file on disk. */
#ifndef ELLIOTT_TESTS_TINY_VOCAB_H
#define ELLIOTT_TESTS_TINY_VOCAB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gguf_image {
    uint8_t *bytes;
    size_t n, cap;
    uint64_t n_kv;
} gguf_image;

static inline void image_put(gguf_image *g, const void *p, size_t len)
{
    if (g->n + len > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < g->n + len)
            cap *= 2;
        uint8_t *bytes = realloc(g->bytes, cap);
        if (!bytes)
            abort(); /* test-only code */
        g->bytes = bytes;
        g->cap = cap;
    }
    memcpy(g->bytes + g->n, p, len);
    g->n += len;
}

static inline void image_u32(gguf_image *g, uint32_t v) { image_put(g, &v, 4); }
static inline void image_u64(gguf_image *g, uint64_t v) { image_put(g, &v, 8); }

static inline void image_str(gguf_image *g, const char *s, size_t len)
{
    image_u64(g, len);
    image_put(g, s, len);
}

static inline void image_key(gguf_image *g, const char *key, uint32_t type)
{
    image_str(g, key, strlen(key));
    image_u32(g, type);
    g->n_kv++;
}

/* Reserves the header; image_finish fills in the key count. */
static inline void image_begin(gguf_image *g)
{
    memset(g, 0, sizeof *g);
    image_put(g, "GGUF", 4);
    image_u32(g, 3);
    image_u64(g, 0); /* tensors */
    image_u64(g, 0); /* key/value pairs, patched later */
}

static inline void image_finish(gguf_image *g) { memcpy(g->bytes + 16, &g->n_kv, 8); }

static inline void image_kv_str(gguf_image *g, const char *key, const char *v)
{
    image_key(g, key, 8);
    image_str(g, v, strlen(v));
}

static inline void image_kv_u32(gguf_image *g, const char *key, uint32_t v)
{
    image_key(g, key, 4);
    image_u32(g, v);
}

static inline void image_kv_bool(gguf_image *g, const char *key, bool v)
{
    uint8_t b = v;
    image_key(g, key, 7);
    image_put(g, &b, 1);
}

/* One vocabulary entry of a tiny test vocabulary. */
typedef struct tiny_token {
    const char *text;
    float score;
    int32_t type; /* 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte */
} tiny_token;

/* A vocabulary: <unk> <s> </s>, then the 256 byte tokens (ids 3..258) unless
 * without_bytes, then the given tokens (ids from 259, or 3 without bytes). */
static inline void image_tiny_vocab(gguf_image *g, const tiny_token *extra, size_t n_extra, bool add_space_prefix,
                                    bool without_bytes)
{
    size_t n_bytes = without_bytes ? 0 : 256;
    size_t n = 3 + n_bytes + n_extra;
    image_begin(g);
    image_kv_str(g, "general.architecture", "llama");
    image_kv_str(g, "tokenizer.ggml.model", "llama");

    static const char *const fixed[] = {"<unk>", "<s>", "</s>"};
    static const int32_t fixed_type[] = {2, 3, 3};
    image_key(g, "tokenizer.ggml.tokens", 9);
    image_u32(g, 8);
    image_u64(g, n);
    for (int i = 0; i < 3; i++)
        image_str(g, fixed[i], strlen(fixed[i]));
    for (size_t b = 0; b < n_bytes; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", (unsigned)b);
        image_str(g, name, 6);
    }
    for (size_t i = 0; i < n_extra; i++)
        image_str(g, extra[i].text, strlen(extra[i].text));

    image_key(g, "tokenizer.ggml.scores", 9);
    image_u32(g, 6);
    image_u64(g, n);
    for (size_t i = 0; i < n; i++) {
        float s = i >= 3 + n_bytes ? extra[i - 3 - n_bytes].score : 0.0f;
        image_put(g, &s, 4);
    }

    image_key(g, "tokenizer.ggml.token_type", 9);
    image_u32(g, 5);
    image_u64(g, n);
    for (size_t i = 0; i < n; i++) {
        int32_t type = i < 3 ? fixed_type[i] : i < 3 + n_bytes ? 6 : extra[i - 3 - n_bytes].type;
        image_put(g, &type, 4);
    }
    image_kv_u32(g, "tokenizer.ggml.bos_token_id", 1);
    image_kv_u32(g, "tokenizer.ggml.eos_token_id", 2);
    image_kv_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    image_kv_bool(g, "tokenizer.ggml.add_space_prefix", add_space_prefix);
    image_finish(g);
}

#endif

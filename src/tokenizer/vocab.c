/* Loading a SentencePiece vocabulary from GGUF metadata and indexing it: a hash
 * table from token text to id, byte-fallback tokens, and a trie of the tokens
 * that are matched whole before BPE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "base/wipebuf.h"

/* Far above any real vocabulary (Gemma 3 has 262144), low enough that every
 * index fits in 32 bits with room to spare. */
enum { MAX_VOCAB = 1 << 22 };

/* Prompt ids spell out what the user wrote: growing moves them (malloc, copy,
 * wipe the old block) instead of realloc, which could leave a copy behind. */
int token_vec_push(token_vec *v, int32_t id, el_err *err)
{
    void *ids = v->ids;
    int grown = wipe_grow_array(&ids, &v->cap, v->n, v->n + 1, sizeof *v->ids);
    v->ids = ids;
    if (grown < 0)
        return el_fail(err, "out of memory for %zu token ids", v->n + 1);
    v->ids[v->n++] = id;
    return 0;
}

void token_vec_free(token_vec *v)
{
    wipe_free(v->ids, v->cap * sizeof *v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

static uint32_t hash_bytes(const char *bytes, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)bytes[i];
        h *= 16777619u;
    }
    return h;
}

int32_t tokenizer_lookup(const tokenizer *t, const char *bytes, size_t len)
{
    if (len > t->max_text_len)
        return -1;
    uint32_t h = hash_bytes(bytes, len);
    for (uint32_t i = h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        const struct token_slot *s = &t->slots[i];
        if (s->id < 0)
            return -1;
        if (s->hash == h && token_text_len(t, s->id) == len && !memcmp(token_text_ptr(t, s->id), bytes, len))
            return s->id;
    }
}

/* A later token with the same text replaces an earlier one, as in llama.cpp. */
static void index_token(tokenizer *t, int32_t id)
{
    const char *bytes = token_text_ptr(t, id);
    uint32_t len = token_text_len(t, id);
    uint32_t h = hash_bytes(bytes, len);
    for (uint32_t i = h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        struct token_slot *s = &t->slots[i];
        if (s->id < 0 || (s->hash == h && token_text_len(t, s->id) == len &&
                          !memcmp(token_text_ptr(t, s->id), bytes, len))) {
            *s = (struct token_slot){h, id};
            return;
        }
    }
}

static int build_hash_index(tokenizer *t, el_err *err)
{
    uint32_t cap = 1024;
    while (cap < 2u * (uint32_t)t->n_vocab)
        cap *= 2;
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots)
        return el_fail(err, "out of memory for the token index");
    for (uint32_t i = 0; i < cap; i++)
        t->slots[i] = (struct token_slot){0, -1};
    t->slot_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++)
        index_token(t, id);
    return 0;
}

static int copy_token_texts(tokenizer *t, const gguf_kv *tokens, el_err *err)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < tokens->arr_len; i++) {
        uint64_t len = tokens->arr_strings[i].len;
        if (len > TOKENIZER_MAX_PIECE)
            return el_fail(err, "token %llu is %llu bytes long (at most %d)", (unsigned long long)i,
                           (unsigned long long)len, TOKENIZER_MAX_PIECE);
        total += len;
    }
    t->text = malloc(total ? total : 1);
    t->text_off = malloc((tokens->arr_len + 1) * sizeof *t->text_off);
    if (!t->text || !t->text_off)
        return el_fail(err, "out of memory for %llu bytes of token text", (unsigned long long)total);
    uint32_t off = 0;
    for (uint64_t i = 0; i < tokens->arr_len; i++) {
        t->text_off[i] = off;
        if (tokens->arr_strings[i].len > t->max_text_len)
            t->max_text_len = (uint32_t)tokens->arr_strings[i].len;
        memcpy(t->text + off, tokens->arr_strings[i].ptr, tokens->arr_strings[i].len);
        off += (uint32_t)tokens->arr_strings[i].len;
    }
    t->text_off[tokens->arr_len] = off;
    return 0;
}

static int load_scores(tokenizer *t, const gguf_file *f, el_err *err)
{
    t->scores = calloc((size_t)t->n_vocab, sizeof *t->scores);
    if (!t->scores)
        return el_fail(err, "out of memory for token scores");
    const gguf_kv *kv = NULL;
    int rc = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VAL_FLOAT32, &kv, err);
    if (rc < 0)
        return -1;
    if (rc > 0 || !kv)
        return 0; /* no scores: every merge ties, which is still well defined */
    if (kv->arr_len != (uint64_t)t->n_vocab)
        return el_fail(err, "tokenizer.ggml.scores has %llu entries for %d tokens",
                       (unsigned long long)kv->arr_len, t->n_vocab);
    memcpy(t->scores, kv->arr_data, (size_t)t->n_vocab * sizeof(float));
    return 0;
}

static int parse_byte_token(const char *s, uint32_t len, uint8_t *out)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return -1;
        v = v * 16 + d;
    }
    *out = (uint8_t)v;
    return 0;
}

static int load_kinds(tokenizer *t, const gguf_file *f, el_err *err)
{
    t->kinds = malloc((size_t)t->n_vocab);
    t->byte_of = calloc((size_t)t->n_vocab, 1);
    if (!t->kinds || !t->byte_of)
        return el_fail(err, "out of memory for token types");
    memset(t->kinds, TOKEN_KIND_NORMAL, (size_t)t->n_vocab);
    const gguf_kv *kv = NULL;
    int rc = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VAL_INT32, &kv, err);
    if (rc < 0)
        return -1;
    if (rc > 0 || !kv)
        return 0;
    if (kv->arr_len != (uint64_t)t->n_vocab)
        return el_fail(err, "tokenizer.ggml.token_type has %llu entries for %d tokens",
                       (unsigned long long)kv->arr_len, t->n_vocab);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        int32_t kind;
        memcpy(&kind, kv->arr_data + (size_t)id * 4, 4);
        if (kind < TOKEN_KIND_UNDEFINED || kind > TOKEN_KIND_BYTE)
            return el_fail(err, "token %d has unknown type %d", id, kind);
        t->kinds[id] = (uint8_t)kind;
        if (kind == TOKEN_KIND_BYTE &&
            parse_byte_token(token_text_ptr(t, id), token_text_len(t, id), &t->byte_of[id]) < 0)
            return el_fail(err, "byte token %d is not of the form <0xHH>", id);
    }
    return 0;
}

/* Reads a special token id; a missing key keeps the default, and an id outside
 * the vocabulary (stories260K stores 2^32-1 for "none") means none. */
static int load_special_id(const gguf_file *f, const char *key, int n_vocab, int32_t *id, el_err *err)
{
    int64_t v = *id;
    int rc = gguf_get_i64(f, key, &v, err);
    if (rc < 0)
        return -1;
    *id = (v >= 0 && v < n_vocab) ? (int32_t)v : -1;
    return 0;
}

static int load_flag(const gguf_file *f, const char *key, bool *flag, el_err *err)
{
    return gguf_get_bool(f, key, flag, err) < 0 ? -1 : 0;
}

/* A marker named by its GGUF key, else found by the texts code models spell it with
 * (CodeGemma's <|fim_prefix|>, StarCoder's <fim_prefix>, CodeLlama's <PRE>). */
static int load_fim_marker(tokenizer *t, const gguf_file *f, const char *key, const char *const *texts,
                           size_t n_texts, int32_t *id, el_err *err)
{
    *id = -1;
    if (load_special_id(f, key, t->n_vocab, id, err) < 0)
        return -1;
    for (size_t i = 0; i < n_texts && *id < 0; i++)
        *id = tokenizer_lookup(t, texts[i], strlen(texts[i]));
    return 0;
}

static int load_fim(tokenizer *t, const gguf_file *f, el_err *err)
{
    static const char *const pre[] = {"<|fim_prefix|>", "<fim_prefix>", "<fim-prefix>", "<PRE>"};
    static const char *const suf[] = {"<|fim_suffix|>", "<fim_suffix>", "<fim-suffix>", "<SUF>"};
    static const char *const mid[] = {"<|fim_middle|>", "<fim_middle>", "<fim-middle>", "<MID>"};
    static const char *const sep[] = {"<|file_separator|>", "<file_sep>"};
    tokenizer_fim *m = &t->fim;
    if (load_fim_marker(t, f, "tokenizer.ggml.fim_pre_token_id", pre, 4, &m->prefix, err) < 0 ||
        load_fim_marker(t, f, "tokenizer.ggml.fim_suf_token_id", suf, 4, &m->suffix, err) < 0 ||
        load_fim_marker(t, f, "tokenizer.ggml.fim_mid_token_id", mid, 4, &m->middle, err) < 0 ||
        load_fim_marker(t, f, "tokenizer.ggml.fim_sep_token_id", sep, 2, &m->file_separator, err) < 0)
        return -1;
    /* Markers are control tokens whatever the file says (llama.cpp overrides them
     * too): they produce no text, and user text that spells one stays text. */
    int32_t ids[] = {m->prefix, m->suffix, m->middle, m->file_separator};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i] >= 0)
            t->kinds[ids[i]] = TOKEN_KIND_CONTROL;
    return 0;
}

static int load_specials(tokenizer *t, const gguf_file *f, el_err *err)
{
    /* SentencePiece defaults, as llama.cpp assumes for "llama" vocabularies. */
    t->bos = t->n_vocab > 1 ? 1 : -1;
    t->eos = t->n_vocab > 2 ? 2 : -1;
    t->unk = 0;
    t->pad = -1;
    t->eot = -1;
    t->add_bos = true;
    t->add_eos = false;
    t->add_space_prefix = true;
    if (load_special_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err) < 0 ||
        load_special_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err) < 0 ||
        load_special_id(f, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err) < 0 ||
        load_special_id(f, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad, err) < 0 ||
        load_special_id(f, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err) < 0 ||
        load_flag(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err) < 0 ||
        load_flag(f, "tokenizer.ggml.add_eos_token", &t->add_eos, err) < 0 ||
        load_flag(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err) < 0)
        return -1;
    if (t->eot < 0) {
        static const char *const eot_texts[] = {"<end_of_turn>", "<|eot_id|>", "<|im_end|>"};
        for (size_t i = 0; i < sizeof eot_texts / sizeof eot_texts[0] && t->eot < 0; i++)
            t->eot = tokenizer_lookup(t, eot_texts[i], strlen(eot_texts[i]));
    }
    return load_fim(t, f, err);
}

static void map_bytes(tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = tokenizer_lookup(t, name, 6);
        if (id < 0) {
            char raw = (char)b;
            id = tokenizer_lookup(t, &raw, 1);
        }
        t->byte_token[b] = id;
    }
}

static bool is_special_kind(uint8_t kind)
{
    return kind == TOKEN_KIND_CONTROL || kind == TOKEN_KIND_UNKNOWN || kind == TOKEN_KIND_USER_DEFINED;
}

static int32_t trie_child(const tokenizer *t, int32_t node, uint8_t byte)
{
    for (int32_t c = t->trie[node].first_child; c >= 0; c = t->trie[c].next_sibling)
        if (t->trie[c].byte == byte)
            return c;
    return -1;
}

static void trie_insert(tokenizer *t, int32_t id)
{
    const uint8_t *s = (const uint8_t *)token_text_ptr(t, id);
    uint32_t len = token_text_len(t, id);
    int32_t node = 0;
    for (uint32_t i = 0; i < len; i++) {
        int32_t c = trie_child(t, node, s[i]);
        if (c < 0) {
            c = t->n_trie++;
            t->trie[c] = (special_trie_node){.first_child = -1,
                                             .next_sibling = t->trie[node].first_child,
                                             .token = -1,
                                             .byte = s[i]};
            t->trie[node].first_child = c;
        }
        node = c;
    }
    /* Duplicate texts: the later token wins, as in the hash index. */
    t->trie[node].token = id;
}

static int cmp_len_desc(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x < y) - (x > y);
}

static int build_special_trie(tokenizer *t, el_err *err)
{
    size_t nodes = 1;
    bool seen_len[TOKENIZER_MAX_PIECE + 1] = {false};
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_kind(t->kinds[id]))
            nodes += token_text_len(t, id);
    t->trie = malloc(nodes * sizeof *t->trie);
    if (!t->trie)
        return el_fail(err, "out of memory for the special-token index");
    t->trie[0] = (special_trie_node){.first_child = -1, .next_sibling = -1, .token = -1};
    t->n_trie = 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t len = token_text_len(t, id);
        if (!is_special_kind(t->kinds[id]) || len == 0)
            continue;
        trie_insert(t, id);
        t->special_first_byte[(uint8_t)token_text_ptr(t, id)[0]] = 1;
        if (!seen_len[len]) {
            seen_len[len] = true;
            t->special_lengths[t->n_special_lengths++] = (uint16_t)len;
        }
    }
    qsort(t->special_lengths, (size_t)t->n_special_lengths, sizeof t->special_lengths[0], cmp_len_desc);
    return 0;
}

static int check_model(const gguf_file *f, el_err *err)
{
    gguf_str model = {0};
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return el_fail(err, "the file has no tokenizer (tokenizer.ggml.model is missing)");
    if (!gguf_str_eq(model, "llama"))
        return el_fail(err, "tokenizer model '%.*s' is not supported (only SentencePiece 'llama')",
                       (int)(model.len > 40 ? 40 : model.len), model.ptr);
    return 0;
}

static int load_all(tokenizer *t, const gguf_file *f, el_err *err)
{
    if (check_model(f, err) < 0)
        return -1;
    const gguf_kv *tokens = NULL;
    int rc = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VAL_STRING, &tokens, err);
    if (rc < 0)
        return -1;
    if (rc > 0 || !tokens)
        return el_fail(err, "the file has no vocabulary (tokenizer.ggml.tokens is missing)");
    if (tokens->arr_len == 0 || tokens->arr_len > MAX_VOCAB)
        return el_fail(err, "vocabulary of %llu tokens (expected 1 to %d)",
                       (unsigned long long)tokens->arr_len, MAX_VOCAB);
    t->n_vocab = (int)tokens->arr_len;
    if (copy_token_texts(t, tokens, err) < 0 || build_hash_index(t, err) < 0 || load_scores(t, f, err) < 0 ||
        load_kinds(t, f, err) < 0 || load_specials(t, f, err) < 0 || build_special_trie(t, err) < 0)
        return -1;
    map_bytes(t);
    return 0;
}

tokenizer *tokenizer_load(const gguf_file *f, el_err *err)
{
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        el_fail(err, "out of memory for the tokenizer");
        return NULL;
    }
    if (load_all(t, f, err) < 0) {
        el_wrap(err, "tokenizer");
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

void tokenizer_free(tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->text_off);
    free(t->scores);
    free(t->kinds);
    free(t->byte_of);
    free(t->slots);
    free(t->trie);
    free(t);
}

int tokenizer_n_vocab(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const tokenizer *t) { return t->eos; }
int32_t tokenizer_eot(const tokenizer *t) { return t->eot; }

bool tokenizer_fim_markers(const tokenizer *t, tokenizer_fim *out)
{
    *out = t->fim;
    return t->fim.prefix >= 0 && t->fim.suffix >= 0 && t->fim.middle >= 0;
}
bool tokenizer_add_bos(const tokenizer *t) { return t->add_bos; }
bool tokenizer_add_space_prefix(const tokenizer *t) { return t->add_space_prefix; }

int32_t tokenizer_find(const tokenizer *t, const char *piece)
{
    return tokenizer_lookup(t, piece, strlen(piece));
}

const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    *len = token_text_len(t, id);
    return token_text_ptr(t, id);
}

bool tokenizer_is_control(const tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->kinds[id] == TOKEN_KIND_CONTROL;
}

/* What the tokenizer's source files share: the loaded vocabulary and its indexes.
 * Not part of the public interface. */
#ifndef ELLIOTT_TOKENIZER_INTERNAL_H
#define ELLIOTT_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum token_kind {
    TOKEN_KIND_UNDEFINED = 0,
    TOKEN_KIND_NORMAL = 1,
    TOKEN_KIND_UNKNOWN = 2,
    TOKEN_KIND_CONTROL = 3,
    TOKEN_KIND_USER_DEFINED = 4,
    TOKEN_KIND_UNUSED = 5,
    TOKEN_KIND_BYTE = 6
};

/* A byte trie over the texts of the tokens that are matched whole before BPE
 * (control, unknown and user-defined tokens). Children form sibling lists. */
typedef struct special_trie_node {
    int32_t first_child;
    int32_t next_sibling;
    int32_t token; /* token ending exactly here, or -1 */
    uint8_t byte;
} special_trie_node;

struct tokenizer {
    int n_vocab;
    char *text;         /* every token's text, back to back */
    uint32_t *text_off; /* token i is text[text_off[i] .. text_off[i + 1]) */
    uint32_t max_text_len; /* of any token: longer strings need no lookup */
    float *scores;
    uint8_t *kinds;     /* enum token_kind */
    uint8_t *byte_of;   /* the byte a BYTE token stands for */

    struct token_slot {
        uint32_t hash; /* of the token's text, so that most misses need no text compare */
        int32_t id;    /* -1: empty */
    } *slots;          /* open addressing, linear probing */
    uint32_t slot_mask;

    special_trie_node *trie; /* node 0 is the root */
    int32_t n_trie;
    uint16_t special_lengths[TOKENIZER_MAX_PIECE]; /* distinct special-token lengths, longest first */
    int n_special_lengths;
    uint8_t special_first_byte[256];

    int32_t byte_token[256]; /* token for a raw byte (byte fallback), or -1 */

    int32_t bos, eos, eot, unk, pad;
    tokenizer_fim fim; /* fill-in-the-middle markers, -1 where absent */
    bool add_bos, add_eos, add_space_prefix;
};

static inline const char *token_text_ptr(const tokenizer *t, int32_t id)
{
    return t->text + t->text_off[id];
}

static inline uint32_t token_text_len(const tokenizer *t, int32_t id)
{
    return t->text_off[id + 1] - t->text_off[id];
}

/* The id of the token whose text is bytes[0..len), or -1. */
int32_t tokenizer_lookup(const tokenizer *t, const char *bytes, size_t len);

/* Whether a special token of that kind is matched whole in the given mode. */
static inline bool tokenizer_matches_whole(const tokenizer *t, int32_t id, bool parse_special)
{
    uint8_t k = t->kinds[id];
    if (k == TOKEN_KIND_USER_DEFINED)
        return true;
    return parse_special && (k == TOKEN_KIND_CONTROL || k == TOKEN_KIND_UNKNOWN);
}

#endif

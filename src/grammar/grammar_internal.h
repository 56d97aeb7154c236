/* Internals shared by the grammar layer's files.
 *
 * A grammar is compiled to one array of elements over BYTES (UTF-8 classes are
 * expanded to byte sequences, so a partial code point is just a position inside a
 * rule). Rule r's alternatives start at rule_start[r], are separated by EL_ALT and
 * end with EL_END. A parse state is a stack of positions (return addresses below,
 * the current position on top); the top is always a "live" position: a terminal
 * (EL_BYTES) or a rule reference (EL_REF), never the end of an alternative.
 *
 * Consuming a byte b from a stack [..., q] uses q's precomputed items: each item is
 * a byte set and the frames that replace q once b (in the set) is consumed. If the
 * rest of q's alternative can be empty (nullable_rest[q]), q is popped and the byte
 * is tried from the frame below as well. */
#ifndef ELLIOTT_GRAMMAR_INTERNAL_H
#define ELLIOTT_GRAMMAR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grammar/grammar.h"

/* ---- elements ------------------------------------------------------------------------ */

enum { EL_END = 0, EL_ALT = 1, EL_REF = 2, EL_BYTES = 3 };
#define EL_MAKE(type, value) (((uint32_t)(type) << 30) | (uint32_t)(value))
#define EL_TYPE(e) ((e) >> 30)
#define EL_VALUE(e) ((e) & 0x3fffffffu)
#define EL_IS_BOUNDARY(e) (EL_TYPE(e) <= EL_ALT)

typedef struct byteset {
    uint32_t bits[8];
} byteset;

static inline bool byteset_has(const byteset *s, unsigned b)
{
    return (s->bits[b >> 5] >> (b & 31)) & 1u;
}
static inline void byteset_add_range(byteset *s, unsigned lo, unsigned hi)
{
    for (unsigned b = lo; b <= hi; b++)
        s->bits[b >> 5] |= 1u << (b & 31);
}

/* ---- a grammar's source form (before analysis), built by the GBNF parser ------------- */

typedef struct gb_rule {
    char *name;
    uint32_t *elems; /* alternatives separated by EL_ALT, no final EL_END */
    size_t n, cap;
    int line, col;   /* where it is defined, or first referenced */
    bool defined;
    uint32_t chain_k; /* k for the k-th rule of a bounded repetition chain, else 0 */
} gb_rule;

typedef struct gb_repeat { /* a repeated item, checked for being able to match nothing */
    uint32_t *elems;
    size_t n;
    int line, col;
} gb_repeat;

typedef struct gb_builder {
    gb_rule *rules;
    size_t n_rules, cap_rules;
    uint32_t *names; /* hash table of rule index + 1 */
    size_t name_cap;
    byteset *sets;
    size_t n_sets, cap_sets;
    gb_repeat *repeats;
    size_t n_repeats, cap_repeats;
    size_t total_elems;
} gb_builder;

void gb_builder_free(gb_builder *b);
/* Parses GBNF text into b (rules still unchecked). */
int gbnf_parse(gb_builder *b, const char *text, size_t len, el_err *err);

/* ---- vocabulary ----------------------------------------------------------------------- */

typedef struct trie_node {
    uint32_t next;    /* index just past this node's subtree (pre-order) */
    uint32_t tok_off; /* tokens ending here: vocab->trie_tokens[tok_off .. +tok_n) */
    uint16_t tok_n;
    uint16_t depth;   /* root 0 */
    uint8_t byte;
} trie_node;

struct grammar_vocab {
    int n_tokens;
    size_t mask_words;
    uint8_t *kinds;         /* enum grammar_token_kind per token */
    uint32_t *tok_off;      /* bytes of token t: text[tok_off[t] .. tok_off[t+1]) */
    uint8_t *text;
    uint32_t *text_mask;    /* TEXT tokens (non-empty) */
    uint32_t *end_mask;     /* END tokens */
    trie_node *trie;
    size_t n_trie;
    int32_t *trie_tokens;
    size_t max_len;         /* longest TEXT token */
    size_t n_text;          /* TEXT tokens */
};

/* ---- compiled grammar ----------------------------------------------------------------- */

typedef struct gram_item {
    uint32_t set;             /* byteset index */
    uint32_t seq_off, seq_n;  /* frames replacing the top: g->seqs[seq_off .. +seq_n) */
} gram_item;

enum { MASK_PENDING = 0, MASK_ACCEPT_LIST = 1, MASK_REJECT_LIST = 2, MASK_BITMAP = 3 };

typedef struct pos_mask {
    _Atomic int state;        /* MASK_PENDING until computed (then never changes) */
    uint32_t n_list, n_uncertain;
    int32_t *list;            /* accepted (ACCEPT_LIST) or rejected (REJECT_LIST) tokens */
    uint32_t *bitmap;         /* accepted tokens (BITMAP: when both lists would be long) */
    int32_t *uncertain;       /* tokens that depend on the frames below */
    bool borrowed;            /* the lists belong to another position's entry */
} pos_mask;

static inline int popcount32(uint32_t x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return (int)((((x + (x >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24);
}

struct grammar {
    const grammar_vocab *vocab;
    uint32_t *elems;
    size_t n_elems;
    uint32_t n_rules;
    uint32_t *rule_start;     /* first element of each rule */
    uint32_t *rule_of;        /* rule of each position */
    bool *rule_nullable;
    bool *nullable_rest;      /* per position: the rest of its alternative can be empty */
    byteset *sets;
    uint32_t n_sets;
    uint32_t start_pos;       /* the live position of the initial stack */
    uint32_t floor_pos;       /* a terminal matching nothing: stands for frames left out below */
    /* items per live position */
    uint32_t *item_off, *item_n;
    gram_item *items;
    size_t n_items;
    uint32_t *seqs;
    size_t n_seqs;
    /* where each rule may return to (for the stack-independent mask analysis) */
    uint32_t *cont_off, *cont_n;
    uint32_t *conts;
    bool *rule_can_finish;    /* the grammar may end right after this rule */
    uint32_t *rule_chain_k;   /* gb_rule.chain_k, 0 where the chain's item can be empty */
    bool *rule_cont_unknown;  /* too many return sites: treated as unknown */
    /* token masks per live position (computed at compile time, or on first use past
     * the compile budget, under mask_lock) */
    pos_mask *masks;
    pthread_mutex_t mask_lock;
    struct dfa *lazy_dfa;     /* the transitions found by computations on first use */
};

/* Analyses the source rules and builds the automaton (takes nothing from b). */
grammar *grammar_build(const grammar_vocab *v, const gb_builder *b, el_err *err);

/* ---- stack sets ----------------------------------------------------------------------- */

enum {
    GRAMMAR_MAX_STACK = 2048, /* frames in one stack (nesting of the answer) */
    GRAMMAR_MAX_STACKS = 1024 /* stacks alive at once (ambiguity) */
};

typedef struct gstack {
    uint32_t off, len;
    uint32_t bottom_rule; /* analysis: the rule of the bottom frame */
    uint8_t det;          /* analysis: the frames below are known exactly */
} gstack;

typedef struct stackset {
    uint32_t *frames;
    size_t n_frames, cap_frames;
    gstack *stacks;
    size_t n, cap;
    bool wild;       /* analysis: some path went past what is known (anything may follow) */
    bool overflow;   /* a bound was hit: the result is incomplete */
    bool hit_floor;  /* some path reached g->floor_pos (needed the frames left out) */
    uint32_t *slots; /* once many stacks: hash table of stack index + 1, for merging */
    size_t n_slots;
    bool hashed;
} stackset;

void stackset_clear(stackset *s);
void stackset_free(stackset *s);
int stackset_push(stackset *s, const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                  uint32_t bottom_rule, bool det);
int stackset_copy(stackset *dst, const stackset *src);
/* out = the stacks of in after consuming byte b. analysis: stacks that run out of
 * frames continue at their bottom rule's return sites (see grammar.c). */
void stackset_advance(const grammar *g, const stackset *in, unsigned b, stackset *out, bool analysis);
/* Some stack of s can be completed to the end of the grammar with no more bytes. */
bool stackset_can_end(const grammar *g, const stackset *s);
bool stack_can_end(const grammar *g, const uint32_t *frames, size_t len);

/* ---- masks ------------------------------------------------------------------------------ */

/* Computes the mask entry of live position q (analysis walk over the vocabulary trie). */
int grammar_compute_pos_mask(grammar *g, uint32_t q);
void grammar_free_lazy_dfa(grammar *g);
const pos_mask *grammar_pos_mask(const grammar *g, uint32_t q);
/* Precomputes the masks of the positions that can be on top of a stack, until the
 * time budget is spent (the rest are computed on first use). */
int grammar_precompute_masks(grammar *g, double budget_seconds, el_err *err);
/* The mask of the stacks in cur (tmp: mask-sized scratch; a, b: scratch sets). */
int grammar_mask_fill(const grammar *g, const stackset *cur, uint32_t *mask, uint32_t *tmp, stackset *a,
                      stackset *b);
/* The same mask by a trie walk with the real stacks (slow; the reference for tests). */
int grammar_mask_fill_direct(const grammar *g, const stackset *cur, uint32_t *mask);

/* ---- JSON Schema ------------------------------------------------------------------------- */

/* Translates a schema to GBNF text (malloc'd, NUL-terminated) or NULL with err. */
char *json_schema_to_gbnf(const char *schema, size_t len, el_err *err);
char *json_object_gbnf(el_err *err);

#endif

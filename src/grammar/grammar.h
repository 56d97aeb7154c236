/* Constrained decoding: a grammar decides, token by token, which tokens of the
 * vocabulary may come next, so that the model's answer is always a sentence of
 * the grammar (a JSON document matching a schema, a tool call, a GBNF language).
 *
 * Three objects:
 *   grammar_vocab    a tokenizer's tokens as byte strings, indexed once per model
 *                    (a byte trie, so a mask visits shared prefixes once);
 *   grammar          a compiled grammar for one vocabulary: immutable, shareable by
 *                    threads; compiling precomputes, per automaton position, the
 *                    tokens whose acceptance does not depend on the stack;
 *   grammar_matcher  one sequence's position in a grammar (one per generated choice).
 *
 * Every source (GBNF text, a JSON Schema) is outside input: it is validated here,
 * with bounded time and memory, and refused with a message that names the keyword,
 * rule or bound at fault and where it is (a JSON pointer into the schema, a GBNF
 * line and column). */
#ifndef ELLIOTT_GRAMMAR_H
#define ELLIOTT_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct grammar_vocab grammar_vocab;
typedef struct grammar grammar;
typedef struct grammar_matcher grammar_matcher;

/* Bounds on what a source may cost (a hostile schema or GBNF text is refused with
 * an error naming the bound, never compiled for long). */
enum {
    GRAMMAR_MAX_SOURCE_BYTES = 1 << 20, /* GBNF text or schema JSON */
    GRAMMAR_MAX_DEPTH = 64,             /* schema / rule nesting */
    GRAMMAR_MAX_ELEMENTS = 1 << 18      /* compiled grammar elements */
};

/* ---- vocabulary ------------------------------------------------------------------- */

/* How a token may take part in a grammar. */
enum grammar_token_kind {
    GRAMMAR_TOKEN_TEXT,    /* stands for its bytes; allowed where the grammar accepts them */
    GRAMMAR_TOKEN_END,     /* ends the answer (EOS, <end_of_turn>): allowed exactly where
                              the grammar may end */
    GRAMMAR_TOKEN_NEVER    /* control tokens (BOS, turn markers, unused): never allowed */
};

/* bytes[i] (lens[i] bytes, need not be NUL-terminated or valid UTF-8: a byte-fallback
 * token is its one byte) is what token i stands for when it is TEXT; ignored otherwise.
 * A TEXT token with no bytes is treated as NEVER. Copies what it needs. */
grammar_vocab *grammar_vocab_new(int n_tokens, const char *const *bytes, const size_t *lens,
                                 const enum grammar_token_kind *kinds, el_err *err);
void grammar_vocab_free(grammar_vocab *v);
int grammar_vocab_n_tokens(const grammar_vocab *v);
/* uint32_t words in a token mask: bit (t % 32) of word t / 32 is token t. */
size_t grammar_mask_words(const grammar_vocab *v);

/* ---- grammars ---------------------------------------------------------------------- */

/* llama.cpp's GBNF (rules `name ::= ...`, literals, [classes], [^negated], ., groups,
 * | * + ? {m} {m,} {m,n}, comments); `root` is the start rule. */
grammar *grammar_from_gbnf(const grammar_vocab *v, const char *text, size_t len, el_err *err);

/* A JSON Schema document (text): the answer is one JSON value valid against it.
 * The keywords OpenAI's structured outputs accept (see docs/api.md); any other
 * keyword that would constrain the value is refused, naming it. Whitespace between
 * JSON tokens and the digits of unbounded numbers are bounded so that a weak model
 * cannot loop in them. */
grammar *grammar_from_json_schema(const grammar_vocab *v, const char *schema, size_t len, el_err *err);

/* Any one JSON object (response_format json_object). */
grammar *grammar_json_object(const grammar_vocab *v, el_err *err);

void grammar_free(grammar *g);

/* ---- matching ---------------------------------------------------------------------- */

/* At the grammar's start. The grammar must outlive the matcher. A grammar may be used
 * by several threads at once (masks past the compile-time budget are computed on first
 * use under a lock); each matcher belongs to one thread at a time. */
grammar_matcher *grammar_matcher_new(const grammar *g, el_err *err);
void grammar_matcher_free(grammar_matcher *m);

/* Writes the mask of tokens allowed next (grammar_mask_words words): TEXT tokens
 * whose bytes continue a sentence of the grammar (a token may end inside a UTF-8
 * character that can still be completed), END tokens where it may end, never NEVER
 * tokens. Returns the number of tokens allowed (0 once finished). Typically tens of
 * microseconds on Gemma's 262k tokens (bench/grammar_bench.c). */
int grammar_matcher_fill_mask(grammar_matcher *m, uint32_t *mask);

/* The same mask computed the slow, obvious way (every token walked through the trie
 * with the real stacks, no precomputed lists): the reference for tests and benchmarks.
 * Returns the number of tokens allowed, -1 when out of memory. */
int grammar_matcher_fill_mask_reference(grammar_matcher *m, uint32_t *mask);

/* Advances over one token; -1 (matcher unchanged) if it is not allowed. Accepting
 * an END token where the grammar may end makes the matcher finished. */
int grammar_matcher_accept_token(grammar_matcher *m, int32_t token);

/* Advances over bytes that are not one token (a prefix forced by the caller, e.g. the
 * opening of a tool call); -1 (matcher unchanged) if the grammar does not allow them. */
int grammar_matcher_accept_bytes(grammar_matcher *m, const char *bytes, size_t len);

/* The bytes accepted so far form a whole sentence of the grammar. */
bool grammar_matcher_can_end(const grammar_matcher *m);
/* The grammar accepts nothing more but an end (the answer is complete). */
bool grammar_matcher_must_end(const grammar_matcher *m);
/* An END token was accepted. */
bool grammar_matcher_finished(const grammar_matcher *m);

#endif

/* SentencePiece-style BPE tokenizer built from GGUF metadata
 * (tokenizer.ggml.model = "llama": Gemma 1/2/3 and llama).
 *
 * Special tokens are matched only when the caller asks (chat scaffolding); user
 * text that spells "<start_of_turn>" is tokenized as the plain text it is. */
#ifndef ELLIOTT_TOKENIZER_H
#define ELLIOTT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "gguf/gguf.h"

typedef struct tokenizer tokenizer;

/* A growable array of token ids. Zero-initialise; free with token_vec_free.
 * Ids spell out text, so growing and freeing wipe the blocks they leave. */
typedef struct token_vec {
    int32_t *ids;
    size_t n, cap;
} token_vec;

int token_vec_push(token_vec *v, int32_t id, el_err *err);
void token_vec_free(token_vec *v);

/* Copies what it needs: the file may be closed afterwards. */
tokenizer *tokenizer_load(const gguf_file *f, el_err *err);
void tokenizer_free(tokenizer *t);

int tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t);  /* -1 if the model has none */
int32_t tokenizer_eos(const tokenizer *t);
int32_t tokenizer_eot(const tokenizer *t);  /* end of turn, -1 if none */
bool tokenizer_add_bos(const tokenizer *t); /* tokenizer.ggml.add_bos_token */

/* Fill-in-the-middle markers of code models (CodeGemma): a prompt is
 * prefix-marker, the text before the gap, suffix-marker, the text after it,
 * middle-marker, and the model writes the gap, ending it with EOS or the file
 * separator. Each id is -1 where the vocabulary has no such marker. */
typedef struct tokenizer_fim {
    int32_t prefix, suffix, middle, file_separator;
} tokenizer_fim;
/* False unless the vocabulary has all of prefix, suffix and middle. */
bool tokenizer_fim_markers(const tokenizer *t, tokenizer_fim *out);
/* tokenizer.ggml.add_space_prefix (default true): encode puts a space before the
 * text and after each special token, and decoding drops it at the start. */
bool tokenizer_add_space_prefix(const tokenizer *t);
/* The id of the token whose text is exactly `piece` (e.g. "<start_of_turn>"), or -1. */
int32_t tokenizer_find(const tokenizer *t, const char *piece);
/* Control tokens (BOS, EOS, turn markers) produce no text. */
bool tokenizer_is_control(const tokenizer *t, int32_t id);

/* Appends the ids of text[0..len) to out, exactly as llama.cpp's SentencePiece
 * tokenizer does. No BOS is added. With parse_special, the text of control and
 * unknown tokens (<start_of_turn>, <eos>, <unk>) becomes those tokens; without
 * it, that text is plain characters. User-defined tokens (Gemma's "\n", runs of
 * spaces or tabs, HTML tags) are matched whole in both modes, as llama.cpp does:
 * they stand for exactly their text, so this never injects a control token.
 * Invalid UTF-8 is tokenized byte by byte (byte fallback), never rejected. On
 * failure (out of memory) out is left as it was. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool parse_special,
                     token_vec *out, el_err *err);

/* The token's text as the vocabulary spells it ("▁Hello", "<0x0A>", "<bos>"), not
 * NUL-terminated; NULL (len 0) for an id outside the vocabulary. */
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);

/* The bytes a token stands for ("▁" as a space, "<0x0A>" as a newline byte, nothing
 * for a control token). Writes at most cap bytes; returns the full length. */
size_t tokenizer_token_text(const tokenizer *t, int32_t id, char *buf, size_t cap);

/* Streaming detokenization that never emits part of a UTF-8 sequence: bytes of an
 * incomplete sequence are held until it completes. Zero-initialise, then push ids. */
typedef struct detokenizer {
    const tokenizer *tok;
    bool at_start;        /* for the leading-space rule of add_space_prefix models */
    unsigned char held[4];
    int n_held;
} detokenizer;

void detokenizer_init(detokenizer *d, const tokenizer *t);
/* Longest token text a vocabulary may hold, in bytes (Gemma's longest is 93). */
enum { TOKENIZER_MAX_PIECE = 256 };
/* An output buffer this large always holds what one detokenizer_push or
 * detokenizer_finish writes, whatever the vocabulary. */
enum { DETOKENIZER_OUT_MAX = 4 * TOKENIZER_MAX_PIECE };

/* Appends complete UTF-8 text for id to out (capacity cap, at least 64 bytes:
 * enough for every Gemma and llama vocabulary, whose pieces decode to at most 48
 * bytes; DETOKENIZER_OUT_MAX is enough for any; text that does not fit is cut,
 * never overrun); returns the bytes written. detokenizer_init starts with
 * at_start set, so that for add_space_prefix models the leading space of the
 * first piece with text is dropped, as SentencePiece decoding does; set at_start
 * to false after init when decoding a continuation of text already shown. */
size_t detokenizer_push(detokenizer *d, int32_t id, char *out, size_t cap);
/* Ends the stream: held bytes of an incomplete sequence become U+FFFD. */
size_t detokenizer_finish(detokenizer *d, char *out, size_t cap);

#endif

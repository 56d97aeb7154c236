/* Turning a conversation into prompt tokens with the model's chat template. */
#ifndef ELLIOTT_CHAT_H
#define ELLIOTT_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

enum chat_role { CHAT_ROLE_SYSTEM, CHAT_ROLE_USER, CHAT_ROLE_ASSISTANT };

typedef struct chat_message {
    enum chat_role role;
    const char *text; /* UTF-8, not NUL-terminated */
    size_t len;
} chat_message;

enum chat_format {
    CHAT_FORMAT_PLAIN, /* no template in the model: the prompt is the text itself */
    CHAT_FORMAT_GEMMA, /* <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n (Gemma 1-3, 3n) */
    CHAT_FORMAT_GEMMA4 /* <|turn>user\n...<turn|>\n<|turn>model\n, the system text as its own turn */
};

enum chat_history {
    CHAT_HISTORY_FULL, /* the whole conversation */
    CHAT_HISTORY_LAST  /* only the last user message, as the original service did */
};

/* From tokenizer.chat_template and the vocabulary. */
enum chat_format chat_detect_format(const gguf_file *f, const tokenizer *t);
const char *chat_format_name(enum chat_format fmt);

/* Appends the prompt for messages[0..n) to out: exactly one BOS when the model
 * wants one, message text tokenized as plain text (never as special tokens), and
 * the generation prompt for the assistant's turn.
 *
 * GEMMA renders as the official template: per message
 * "<start_of_turn>{user|model}\n{content, trimmed}<end_of_turn>\n", then
 * "<start_of_turn>model\n"; the system text (leading system messages, trimmed,
 * joined by "\n\n") goes in front of the first user message's content as
 * "{system}\n\n{user}". PLAIN: the message texts joined by "\n", no prefix.
 * GEMMA4 renders the same turns between <|turn> and <turn|>, with the system text
 * as a "<|turn>system\n{system}<turn|>\n" turn of its own instead of folded in.
 * CHAT_HISTORY_LAST keeps only the system text and the last user message.
 *
 * Fails (and appends nothing) on an empty conversation, one with no user
 * message, a system message after a user or assistant one, or, with
 * CHAT_HISTORY_FULL, a last message that is not the user's (continuing an
 * assistant's message is not supported). Roles need not alternate. */
int chat_build_prompt(const tokenizer *t, enum chat_format fmt, const chat_message *messages, size_t n,
                      enum chat_history history, token_vec *out, el_err *err);

/* Tokens that end the assistant's turn (EOS, and <end_of_turn> or <turn|> for Gemma). Writes
 * up to cap ids; returns how many there are. */
size_t chat_stop_tokens(const tokenizer *t, enum chat_format fmt, int32_t *ids, size_t cap);

#endif

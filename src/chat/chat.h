/* Turning a conversation into prompt tokens with the model's chat template. */
#ifndef ELLIOTT_CHAT_H
#define ELLIOTT_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

enum chat_role {
    CHAT_ROLE_SYSTEM,
    CHAT_ROLE_USER,
    CHAT_ROLE_ASSISTANT,
    CHAT_ROLE_TOOL /* a function's result, answering an assistant's tool call */
};

/* A function call the assistant made (in a conversation sent back to the model). */
typedef struct chat_tool_call {
    const char *name;      /* UTF-8, not NUL-terminated */
    size_t name_len;
    const char *arguments; /* the arguments as JSON text */
    size_t arguments_len;
} chat_tool_call;

typedef struct chat_message {
    enum chat_role role;
    const char *text; /* UTF-8, not NUL-terminated */
    size_t len;
    const chat_tool_call *tool_calls; /* ASSISTANT: the calls it made (text may be empty) */
    size_t n_tool_calls;
    const char *tool_name;            /* TOOL: the function whose result this is (may be NULL) */
    size_t tool_name_len;
} chat_message;

/* A function the model may call: described to it in the prompt. */
typedef struct chat_tool {
    const char *name;
    size_t name_len;
    const char *description; /* may be NULL */
    size_t description_len;
    const char *parameters;  /* its arguments' JSON Schema as JSON text; NULL: none */
    size_t parameters_len;
} chat_tool;

typedef struct chat_tools {
    const chat_tool *tools;
    size_t n;
    bool parallel; /* the model may answer with a list of calls */
} chat_tools;

/* How a model answers with a call, as the prompt tells it: one JSON object
 * {"name": ..., "parameters": {...}}, or (parallel) a JSON list of them. */
#define CHAT_TOOL_CALL_NAME_KEY "name"
#define CHAT_TOOL_CALL_ARGUMENTS_KEY "parameters"

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

/* chat_build_prompt with function calling, as Google's Gemma function-calling
 * guidance does it (Gemma has no tool tokens): the tools (when tools is not NULL
 * and has any) are described, with how to call them, in the system text in front of
 * the first user turn; an assistant's tool calls render as the JSON it would have
 * written ({"name": ..., "parameters": ...}, a list for several); TOOL messages
 * render in a user turn as "```tool_output\n{content}\n```" blocks (consecutive
 * results share one turn). The conversation may then end with a TOOL message. */
int chat_build_tool_prompt(const tokenizer *t, enum chat_format fmt, const chat_message *messages, size_t n,
                           const chat_tools *tools, enum chat_history history, token_vec *out, el_err *err);

/* Tokens that end the assistant's turn (EOS, and <end_of_turn> or <turn|> for Gemma). Writes
 * up to cap ids; returns how many there are. */
size_t chat_stop_tokens(const tokenizer *t, enum chat_format fmt, int32_t *ids, size_t cap);

#endif

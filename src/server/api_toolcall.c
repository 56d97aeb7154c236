/* Finding the function calls in a generated answer, byte by byte as it streams.
 *
 * The prompt asks for {"name": N, "parameters": ARGS} (or a list of them) and the
 * grammar holds the model to it, so the scanner only has to follow JSON's
 * structure: strings (with escapes), nesting, and which member of a call object it
 * is in. It copies the name's characters and the arguments' raw text. Input that
 * strays from the form (possible only without a grammar) never overruns anything:
 * it just yields fewer calls. */
#include <string.h>
#include <sys/random.h>

#include "server/server_internal.h"

void api_call_scanner_init(api_call_scanner *s)
{
    memset(s, 0, sizeof *s);
}

void api_call_scanner_free(api_call_scanner *s)
{
    for (size_t i = 0; i < API_MAX_PARALLEL_CALLS; i++) {
        wipebuf_free(&s->calls[i].name);
        wipebuf_free(&s->calls[i].arguments);
    }
    wipebuf_free(&s->key);
    memset(s, 0, sizeof *s);
}

int api_new_call_id(char out[API_CALL_ID_LEN + 1], el_err *err)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char b[API_CALL_ID_LEN - 5];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0)
            return el_fail(err, "getrandom failed");
        got += (size_t)n;
    }
    memcpy(out, "call_", 5);
    for (size_t i = 0; i < sizeof b; i++)
        out[5 + i] = alphabet[b[i] % 62]; /* 256 % 62 leaves a slight bias: ids need not be uniform */
    out[API_CALL_ID_LEN] = '\0';
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static api_scanned_call *current(api_call_scanner *s)
{
    return &s->calls[s->n_calls - 1];
}

static int append(api_call_scanner *s, wipebuf *b, char c)
{
    if (wipebuf_append(b, &c, 1) < 0) {
        s->failed = true;
        return -1;
    }
    return 0;
}

/* A '{' at the depth where calls begin opens the next call. */
static int begin_call(api_call_scanner *s)
{
    if (s->n_calls == API_MAX_PARALLEL_CALLS) {
        s->failed = true;
        return 0;
    }
    s->n_calls++;
    s->expect_key = true;
    s->member = MEMBER_NONE;
    s->awaiting_value = false;
    return 0;
}

/* The member whose key just ended. */
static void name_member(api_call_scanner *s)
{
    const char *k = s->key.data ? s->key.data : "";
    size_t n = s->key.len;
    if (n == strlen(CHAT_TOOL_CALL_NAME_KEY) && !memcmp(k, CHAT_TOOL_CALL_NAME_KEY, n))
        s->member = MEMBER_NAME;
    else if (n == strlen(CHAT_TOOL_CALL_ARGUMENTS_KEY) && !memcmp(k, CHAT_TOOL_CALL_ARGUMENTS_KEY, n))
        s->member = MEMBER_ARGUMENTS;
    else
        s->member = MEMBER_OTHER;
    wipebuf_free(&s->key);
}

/* A byte inside a string. */
static int string_byte(api_call_scanner *s, char c)
{
    bool closes = !s->escape && c == '"';
    s->escape = !s->escape && c == '\\';
    if (closes)
        s->in_string = false;
    if (s->in_arguments)
        return append(s, &current(s)->arguments, c);
    if (s->in_key) {
        if (closes)
            s->in_key = false;
        return closes ? 0 : append(s, &s->key, c);
    }
    if (s->in_name) {
        if (closes) {
            s->in_name = false;
            current(s)->name_done = true;
            return 0;
        }
        return append(s, &current(s)->name, c);
    }
    return 0;
}

/* A structural byte directly inside a call object (depth == call_depth). */
static int member_byte(api_call_scanner *s, char c)
{
    if (c == '"') {
        s->in_string = true;
        if (s->expect_key) {
            s->in_key = true;
            s->expect_key = false;
        } else if (s->awaiting_value && s->member == MEMBER_NAME) {
            s->in_name = true;
            s->awaiting_value = false;
        } else if (s->awaiting_value && s->member == MEMBER_ARGUMENTS) {
            s->in_arguments = true;
            s->awaiting_value = false;
            return append(s, &current(s)->arguments, c);
        }
        return 0;
    }
    if (c == ':') {
        name_member(s);
        s->awaiting_value = true;
        return 0;
    }
    if (c == ',') {
        s->in_arguments = s->arguments_scalar = false;
        s->expect_key = true;
        s->awaiting_value = false;
        return 0;
    }
    if (c == '}') {
        s->depth--;
        s->in_arguments = s->arguments_scalar = false;
        current(s)->complete = true;
        return 0;
    }
    if (c == '{' || c == '[') {
        s->depth++;
        if (s->awaiting_value && s->member == MEMBER_ARGUMENTS) {
            s->in_arguments = true;
            s->awaiting_value = false;
            return append(s, &current(s)->arguments, c);
        }
        s->awaiting_value = false;
        return 0;
    }
    if (is_blank(c))
        return 0;
    /* a scalar value: number, true, false, null */
    if (s->awaiting_value && s->member == MEMBER_ARGUMENTS) {
        s->in_arguments = s->arguments_scalar = true;
        s->awaiting_value = false;
    }
    return s->in_arguments && s->arguments_scalar ? append(s, &current(s)->arguments, c) : 0;
}

/* A structural byte nested deeper than the call object (inside a member's value). */
static int nested_byte(api_call_scanner *s, char c)
{
    if (c == '"')
        s->in_string = true;
    else if (c == '{' || c == '[')
        s->depth++;
    else if (c == '}' || c == ']')
        s->depth--;
    if (!s->in_arguments)
        return 0;
    if (s->depth == s->call_depth)
        s->in_arguments = false; /* its closing bracket */
    return append(s, &current(s)->arguments, c);
}

/* A structural byte outside every call object: the list around them, or after. */
static int outer_byte(api_call_scanner *s, char c)
{
    if (c == '"')
        s->in_string = true;
    else if (c == '{' || c == '[') {
        s->depth++;
        if (s->depth == s->call_depth)
            return begin_call(s);
    } else if (c == '}' || c == ']')
        s->depth--;
    return 0;
}

static int scan_byte(api_call_scanner *s, char c)
{
    if (s->kind == API_ANSWER_UNDECIDED) {
        if (is_blank(c))
            return 0;
        s->kind = c == '{' || c == '[' ? API_ANSWER_CALLS : API_ANSWER_TEXT;
        s->call_depth = c == '[' ? 2 : 1;
    }
    if (s->kind != API_ANSWER_CALLS || s->failed)
        return 0;
    if (s->in_string)
        return string_byte(s, c);
    if (s->n_calls > 0 && s->depth == s->call_depth && !current(s)->complete)
        return member_byte(s, c);
    if (s->n_calls > 0 && s->depth > s->call_depth && !current(s)->complete)
        return nested_byte(s, c);
    return outer_byte(s, c);
}

int api_call_scanner_feed(api_call_scanner *s, const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (scan_byte(s, text[i]) < 0)
            return -1;
    return 0;
}

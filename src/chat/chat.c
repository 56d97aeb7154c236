/* Conversations to prompt tokens.
 *
 * The template's scaffolding (<start_of_turn>, <end_of_turn>, BOS) is inserted
 * as token ids; everything else, message text included, is tokenized as plain
 * text, so that a user who types "<end_of_turn>" gets those characters and not
 * the token. The text between two scaffolding tokens is tokenized as one piece,
 * which makes the result identical to tokenizing the rendered template with
 * special-token parsing on (when the messages hold no special-token text). */
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"

static const char start_of_turn[] = "<start_of_turn>";
static const char end_of_turn[] = "<end_of_turn>";

/* How a template marks turns. */
typedef struct turn_markers {
    const char *open, *close;
    bool system_turn; /* the system text is a turn of its own (else folded into the first user turn) */
} turn_markers;

static const turn_markers gemma_markers = {start_of_turn, end_of_turn, false};
static const turn_markers gemma4_markers = {"<|turn>", "<turn|>", true};

static const turn_markers *markers_of(enum chat_format fmt)
{
    return fmt == CHAT_FORMAT_GEMMA4 ? &gemma4_markers : &gemma_markers;
}

/* ---- format ------------------------------------------------------------------ */

static bool template_mentions(const gguf_file *f, const char *needle)
{
    gguf_str tmpl = {0};
    if (!f || gguf_get_str(f, "tokenizer.chat_template", &tmpl, NULL) != 0)
        return false;
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= tmpl.len; i++)
        if (!memcmp(tmpl.ptr + i, needle, n))
            return true;
    return false;
}

enum chat_format chat_detect_format(const gguf_file *f, const tokenizer *t)
{
    /* Gemma 4's own markers first: its vocabulary may keep the older ones too */
    if (tokenizer_find(t, gemma4_markers.open) >= 0 && tokenizer_find(t, gemma4_markers.close) >= 0)
        return CHAT_FORMAT_GEMMA4;
    if (tokenizer_find(t, start_of_turn) >= 0 && tokenizer_find(t, end_of_turn) >= 0)
        return CHAT_FORMAT_GEMMA;
    if (template_mentions(f, gemma4_markers.open))
        return CHAT_FORMAT_GEMMA4;
    if (template_mentions(f, "start_of_turn"))
        return CHAT_FORMAT_GEMMA;
    return CHAT_FORMAT_PLAIN;
}

const char *chat_format_name(enum chat_format fmt)
{
    return fmt == CHAT_FORMAT_GEMMA4 ? "gemma4" : fmt == CHAT_FORMAT_GEMMA ? "gemma" : "plain";
}

size_t chat_stop_tokens(const tokenizer *t, enum chat_format fmt, int32_t *ids, size_t cap)
{
    int32_t found[2];
    size_t n = 0;
    if (tokenizer_eos(t) >= 0)
        found[n++] = tokenizer_eos(t);
    if (fmt == CHAT_FORMAT_GEMMA || fmt == CHAT_FORMAT_GEMMA4) {
        int32_t close = tokenizer_find(t, markers_of(fmt)->close);
        int32_t eot = fmt == CHAT_FORMAT_GEMMA && tokenizer_eot(t) >= 0 ? tokenizer_eot(t) : close;
        if (eot >= 0 && (n == 0 || found[0] != eot))
            found[n++] = eot;
    }
    for (size_t i = 0; i < n && i < cap; i++)
        ids[i] = found[i];
    return n;
}

/* ---- text buffer (wiped: it holds message text) ------------------------------ */

typedef struct text_buf {
    char *bytes;
    size_t n, cap;
} text_buf;

static int buf_append(text_buf *b, const char *s, size_t len, el_err *err)
{
    if (len > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < len)
            cap *= 2;
        char *bytes = malloc(cap);
        if (!bytes)
            return el_fail(err, "out of memory for a %zu-byte prompt", cap);
        if (b->n)
            memcpy(bytes, b->bytes, b->n);
        if (b->bytes) {
            explicit_bzero(b->bytes, b->cap);
            free(b->bytes);
        }
        b->bytes = bytes;
        b->cap = cap;
    }
    if (len)
        memcpy(b->bytes + b->n, s, len);
    b->n += len;
    return 0;
}

static int buf_append_str(text_buf *b, const char *s, el_err *err)
{
    return buf_append(b, s, strlen(s), err);
}

static void buf_clear(text_buf *b)
{
    if (b->bytes)
        explicit_bzero(b->bytes, b->n);
    b->n = 0;
}

static void buf_free(text_buf *b)
{
    if (b->bytes) {
        explicit_bzero(b->bytes, b->cap);
        free(b->bytes);
    }
    *b = (text_buf){0};
}

/* ---- trimming, as Jinja's trim filter (Python's str.strip) ------------------- */

/* Bytes of the whitespace character starting at s[0], or 0. */
static size_t space_at(const unsigned char *s, size_t avail)
{
    if (avail >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x20)))
        return 1;
    if (avail >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (avail >= 3) {
        unsigned cp = 0;
        if ((s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80)
            cp = ((unsigned)(s[0] & 0x0f) << 12) | ((unsigned)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
            cp == 0x205f || cp == 0x3000)
            return 3;
    }
    return 0;
}

/* Bytes of the whitespace character ending at s[end - 1], or 0. */
static size_t space_before(const unsigned char *s, size_t end)
{
    for (size_t len = 1; len <= 3 && len <= end; len++)
        if (space_at(s + end - len, len) == len)
            return len;
    return 0;
}

static void trim(const char *text, size_t len, const char **out, size_t *out_len)
{
    if (len == 0) { /* text may be NULL then */
        *out = text;
        *out_len = 0;
        return;
    }
    const unsigned char *s = (const unsigned char *)text;
    size_t start = 0, end = len, k;
    while (start < end && (k = space_at(s + start, end - start)) > 0)
        start += k;
    while (end > start && (k = space_before(s + start, end - start)) > 0)
        end -= k;
    *out = text + start;
    *out_len = end - start;
}

/* ---- validation ----------------------------------------------------------------- */

static int validate(const chat_message *messages, size_t n, enum chat_history history, el_err *err)
{
    if (n == 0)
        return el_fail(err, "the conversation is empty");
    bool seen_other = false, seen_user = false;
    for (size_t i = 0; i < n; i++) {
        const chat_message *m = &messages[i];
        if (m->role != CHAT_ROLE_SYSTEM && m->role != CHAT_ROLE_USER && m->role != CHAT_ROLE_ASSISTANT)
            return el_fail(err, "message %zu has an unknown role", i);
        if (m->len > 0 && !m->text)
            return el_fail(err, "message %zu has no text", i);
        if (m->role == CHAT_ROLE_SYSTEM && seen_other)
            return el_fail(err, "message %zu: a system message may only come before the others", i);
        if (m->role != CHAT_ROLE_SYSTEM)
            seen_other = true;
        if (m->role == CHAT_ROLE_USER)
            seen_user = true;
    }
    if (!seen_user)
        return el_fail(err, "the conversation has no user message");
    if (history == CHAT_HISTORY_FULL && messages[n - 1].role != CHAT_ROLE_USER)
        return el_fail(err, "the last message must be from the user");
    return 0;
}

static size_t last_user_index(const chat_message *messages, size_t n)
{
    size_t i = n;
    while (i > 0 && messages[i - 1].role != CHAT_ROLE_USER)
        i--;
    return i - 1; /* validate() guarantees one */
}

/* The leading system messages, trimmed and joined by blank lines. */
static int collect_system_text(const chat_message *messages, size_t n, text_buf *out, el_err *err)
{
    for (size_t i = 0; i < n && messages[i].role == CHAT_ROLE_SYSTEM; i++) {
        const char *s;
        size_t len;
        trim(messages[i].text, messages[i].len, &s, &len);
        if (len == 0)
            continue;
        if ((out->n && buf_append_str(out, "\n\n", err) < 0) || buf_append(out, s, len, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- building ------------------------------------------------------------------- */

typedef struct prompt_builder {
    const tokenizer *tok;
    token_vec *out;
    text_buf segment; /* text since the last scaffolding token */
    text_buf system;
    text_buf content;
} prompt_builder;

static int flush_segment(prompt_builder *pb, el_err *err)
{
    int rc = tokenizer_encode(pb->tok, pb->segment.bytes, pb->segment.n, false, pb->out, err);
    buf_clear(&pb->segment);
    return rc;
}

/* A template marker: its token when the vocabulary has one, else its text. */
static int add_scaffold(prompt_builder *pb, const char *marker, el_err *err)
{
    int32_t id = tokenizer_find(pb->tok, marker);
    if (id < 0)
        return buf_append_str(&pb->segment, marker, err);
    if (flush_segment(pb, err) < 0)
        return -1;
    return token_vec_push(pb->out, id, err);
}

static int add_bos(prompt_builder *pb, el_err *err)
{
    if (!tokenizer_add_bos(pb->tok) || tokenizer_bos(pb->tok) < 0)
        return 0;
    return token_vec_push(pb->out, tokenizer_bos(pb->tok), err);
}

/* {open}{role}\n{text}{close}\n */
static int add_turn(prompt_builder *pb, const turn_markers *mk, const char *role, const char *text, size_t len,
                    el_err *err)
{
    if (add_scaffold(pb, mk->open, err) < 0 || buf_append_str(&pb->segment, role, err) < 0 ||
        buf_append_str(&pb->segment, "\n", err) < 0 || buf_append(&pb->segment, text, len, err) < 0 ||
        add_scaffold(pb, mk->close, err) < 0 || buf_append_str(&pb->segment, "\n", err) < 0)
        return -1;
    return 0;
}

/* A message's turn, its content trimmed; for Gemma 1-3 the system text is folded in
 * front of the first user turn's content as "{system}\n\n{user | trim}". */
static int add_gemma_turn(prompt_builder *pb, const turn_markers *mk, const chat_message *m, bool fold_system,
                          el_err *err)
{
    buf_clear(&pb->content);
    if (fold_system && pb->system.n &&
        (buf_append(&pb->content, pb->system.bytes, pb->system.n, err) < 0 ||
         buf_append_str(&pb->content, "\n\n", err) < 0))
        return -1;
    const char *body;
    size_t body_len;
    trim(m->text, m->len, &body, &body_len);
    if (buf_append(&pb->content, body, body_len, err) < 0)
        return -1;
    trim(pb->content.bytes, pb->content.n, &body, &body_len); /* "{system}\n\n" with no user text */
    return add_turn(pb, mk, m->role == CHAT_ROLE_ASSISTANT ? "model" : "user", body, body_len, err);
}

static int build_gemma(prompt_builder *pb, const turn_markers *mk, const chat_message *messages, size_t n,
                       enum chat_history history, el_err *err)
{
    if (add_bos(pb, err) < 0 || collect_system_text(messages, n, &pb->system, err) < 0)
        return -1;
    if (mk->system_turn && pb->system.n && add_turn(pb, mk, "system", pb->system.bytes, pb->system.n, err) < 0)
        return -1;
    bool fold_system = !mk->system_turn;
    if (history == CHAT_HISTORY_LAST) {
        if (add_gemma_turn(pb, mk, &messages[last_user_index(messages, n)], fold_system, err) < 0)
            return -1;
    } else {
        bool folded = false;
        for (size_t i = 0; i < n; i++) {
            if (messages[i].role == CHAT_ROLE_SYSTEM)
                continue;
            bool fold = fold_system && !folded && messages[i].role == CHAT_ROLE_USER;
            folded = folded || fold;
            if (add_gemma_turn(pb, mk, &messages[i], fold, err) < 0)
                return -1;
        }
    }
    if (add_scaffold(pb, mk->open, err) < 0 || buf_append_str(&pb->segment, "model\n", err) < 0)
        return -1;
    return flush_segment(pb, err);
}

/* No template: the texts one per line, as the model would read a document. */
static int build_plain(prompt_builder *pb, const chat_message *messages, size_t n, enum chat_history history,
                       el_err *err)
{
    if (add_bos(pb, err) < 0)
        return -1;
    size_t last_user = last_user_index(messages, n);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const chat_message *m = &messages[i];
        if (history == CHAT_HISTORY_LAST && m->role != CHAT_ROLE_SYSTEM && i != last_user)
            continue;
        if ((!first && buf_append_str(&pb->segment, "\n", err) < 0) || buf_append(&pb->segment, m->text, m->len, err) < 0)
            return -1;
        first = false;
    }
    return flush_segment(pb, err);
}

int chat_build_prompt(const tokenizer *t, enum chat_format fmt, const chat_message *messages, size_t n,
                      enum chat_history history, token_vec *out, el_err *err)
{
    if (validate(messages, n, history, err) < 0)
        return -1;
    prompt_builder pb = {.tok = t, .out = out};
    size_t n_before = out->n;
    int rc = fmt == CHAT_FORMAT_PLAIN ? build_plain(&pb, messages, n, history, err)
                                      : build_gemma(&pb, markers_of(fmt), messages, n, history, err);
    buf_free(&pb.segment);
    buf_free(&pb.system);
    buf_free(&pb.content);
    if (rc < 0)
        out->n = n_before;
    return rc;
}

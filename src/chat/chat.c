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
#include "base/wipebuf.h"

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

static size_t add_stop_id(int32_t *found, size_t n, int32_t id)
{
    if (id < 0)
        return n;
    for (size_t i = 0; i < n; i++)
        if (found[i] == id)
            return n;
    found[n] = id;
    return n + 1;
}

size_t chat_stop_tokens(const tokenizer *t, enum chat_format fmt, int32_t *ids, size_t cap)
{
    int32_t found[3];
    size_t n = add_stop_id(found, 0, tokenizer_eos(t));
    if (fmt == CHAT_FORMAT_GEMMA || fmt == CHAT_FORMAT_GEMMA4) {
        int32_t close = tokenizer_find(t, markers_of(fmt)->close);
        n = add_stop_id(found, n, fmt == CHAT_FORMAT_GEMMA && tokenizer_eot(t) >= 0 ? tokenizer_eot(t) : close);
    }
    /* A code model ends a filled-in middle (or a file) with its file separator. */
    tokenizer_fim fim;
    tokenizer_fim_markers(t, &fim);
    n = add_stop_id(found, n, fim.file_separator);
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
    if (wipe_grow(&b->bytes, &b->cap, b->n, b->n + len) < 0)
        return el_fail(err, "out of memory for a prompt of more than %zu bytes", b->n);
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
    wipe_free(b->bytes, b->cap);
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
        if (m->role != CHAT_ROLE_SYSTEM && m->role != CHAT_ROLE_USER && m->role != CHAT_ROLE_ASSISTANT &&
            m->role != CHAT_ROLE_TOOL)
            return el_fail(err, "message %zu has an unknown role", i);
        if (m->n_tool_calls > 0 && (m->role != CHAT_ROLE_ASSISTANT || !m->tool_calls))
            return el_fail(err, "message %zu: only an assistant message carries tool calls", i);
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
    if (history == CHAT_HISTORY_FULL && messages[n - 1].role != CHAT_ROLE_USER &&
        messages[n - 1].role != CHAT_ROLE_TOOL)
        return el_fail(err, "the last message must be from the user (or a tool's result)");
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
    const chat_tools *tools;
    text_buf segment; /* text since the last scaffolding token */
    text_buf system;
    text_buf content;
    text_buf body;    /* one message rendered: its text, calls or results */
} prompt_builder;

/* ---- function calling: what the prompt says, after Google's Gemma guidance -------- */

static const char tools_preamble[] =
    "You have access to functions. If you decide to invoke any of the function(s),\n"
    "you MUST put it in the format of\n"
    "{\"" CHAT_TOOL_CALL_NAME_KEY "\": function name, \"" CHAT_TOOL_CALL_ARGUMENTS_KEY
    "\": dictionary of argument name and its value}\n\n"
    "You SHOULD NOT include any other text in the response if you call a function\n";
static const char tools_parallel_note[] =
    "To call several functions at once, answer with a JSON list of such objects.\n";

/* s as a JSON string literal. */
static int append_json_string(text_buf *b, const char *s, size_t len, el_err *err)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_append_str(b, "\"", err) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 0};
        size_t n = 2;
        if (c == '"' || c == '\\')
            esc[1] = (char)c;
        else if (c == '\n')
            esc[1] = 'n';
        else if (c == '\t')
            esc[1] = 't';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c < 0x20) {
            esc[1] = 'u', esc[2] = '0', esc[3] = '0', esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            n = 6;
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (buf_append(b, esc, n, err) < 0)
            return -1;
    }
    return buf_append_str(b, "\"", err);
}

static int append_tool(text_buf *b, const chat_tool *t, el_err *err)
{
    if (buf_append_str(b, "  {\"name\": ", err) < 0 || append_json_string(b, t->name, t->name_len, err) < 0)
        return -1;
    if (t->description && (buf_append_str(b, ", \"description\": ", err) < 0 ||
                           append_json_string(b, t->description, t->description_len, err) < 0))
        return -1;
    if (t->parameters && (buf_append_str(b, ", \"parameters\": ", err) < 0 ||
                          buf_append(b, t->parameters, t->parameters_len, err) < 0))
        return -1;
    return buf_append_str(b, "}", err);
}

/* The preamble and the functions as a JSON list, appended to the system text. */
static int append_tools_description(text_buf *b, const chat_tools *tools, el_err *err)
{
    if (b->n && buf_append_str(b, "\n\n", err) < 0)
        return -1;
    if (buf_append_str(b, tools_preamble, err) < 0 ||
        (tools->parallel && buf_append_str(b, tools_parallel_note, err) < 0) || buf_append_str(b, "[\n", err) < 0)
        return -1;
    for (size_t i = 0; i < tools->n; i++)
        if (append_tool(b, &tools->tools[i], err) < 0 || buf_append_str(b, i + 1 < tools->n ? ",\n" : "\n", err) < 0)
            return -1;
    return buf_append_str(b, "]", err);
}

/* An assistant's calls as it would have written them. */
static int append_calls(text_buf *b, const chat_message *m, el_err *err)
{
    bool list = m->n_tool_calls > 1;
    if (list && buf_append_str(b, "[", err) < 0)
        return -1;
    for (size_t i = 0; i < m->n_tool_calls; i++) {
        const chat_tool_call *c = &m->tool_calls[i];
        const char *args = c->arguments;
        size_t args_len = c->arguments_len;
        trim(args, args_len, &args, &args_len);
        if (args_len == 0)
            args = "{}", args_len = 2;
        if ((i > 0 && buf_append_str(b, ", ", err) < 0) ||
            buf_append_str(b, "{\"" CHAT_TOOL_CALL_NAME_KEY "\": ", err) < 0 ||
            append_json_string(b, c->name, c->name_len, err) < 0 ||
            buf_append_str(b, ", \"" CHAT_TOOL_CALL_ARGUMENTS_KEY "\": ", err) < 0 ||
            buf_append(b, args, args_len, err) < 0 || buf_append_str(b, "}", err) < 0)
            return -1;
    }
    return list ? buf_append_str(b, "]", err) : 0;
}

static int append_tool_output(text_buf *b, const chat_message *m, el_err *err)
{
    const char *text;
    size_t len;
    trim(m->text, m->len, &text, &len);
    if (b->n && buf_append_str(b, "\n", err) < 0)
        return -1;
    return buf_append_str(b, "```tool_output\n", err) < 0 || buf_append(b, text, len, err) < 0 ||
                   buf_append_str(b, "\n```", err) < 0
               ? -1
               : 0;
}

/* messages[*i] rendered into pb->body (consecutive tool results together); *i
 * moves past what was rendered. */
static int render_message(prompt_builder *pb, const chat_message *messages, size_t n, size_t *i, el_err *err)
{
    buf_clear(&pb->body);
    const chat_message *m = &messages[*i];
    if (m->role == CHAT_ROLE_TOOL) {
        while (*i < n && messages[*i].role == CHAT_ROLE_TOOL)
            if (append_tool_output(&pb->body, &messages[(*i)++], err) < 0)
                return -1;
        return 0;
    }
    (*i)++;
    const char *text;
    size_t len;
    trim(m->text, m->len, &text, &len);
    if (buf_append(&pb->body, text, len, err) < 0)
        return -1;
    if (m->n_tool_calls == 0)
        return 0;
    return (pb->body.n && buf_append_str(&pb->body, "\n", err) < 0) || append_calls(&pb->body, m, err) < 0 ? -1 : 0;
}

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

/* A message's turn (its rendering in pb->body), trimmed; for Gemma 1-3 the system
 * text is folded in front of the first user turn's content as "{system}\n\n{user | trim}". */
static int add_gemma_turn(prompt_builder *pb, const turn_markers *mk, enum chat_role speaker, bool fold_system,
                          el_err *err)
{
    buf_clear(&pb->content);
    if (fold_system && pb->system.n &&
        (buf_append(&pb->content, pb->system.bytes, pb->system.n, err) < 0 ||
         buf_append_str(&pb->content, "\n\n", err) < 0))
        return -1;
    const char *body;
    size_t body_len;
    if (buf_append(&pb->content, pb->body.bytes, pb->body.n, err) < 0)
        return -1;
    trim(pb->content.bytes, pb->content.n, &body, &body_len); /* "{system}\n\n" with no user text */
    /* a tool's result comes back in the user's turn */
    return add_turn(pb, mk, speaker == CHAT_ROLE_ASSISTANT ? "model" : "user", body, body_len, err);
}

static int build_gemma(prompt_builder *pb, const turn_markers *mk, const chat_message *messages, size_t n,
                       enum chat_history history, el_err *err)
{
    if (add_bos(pb, err) < 0 || collect_system_text(messages, n, &pb->system, err) < 0)
        return -1;
    if (pb->tools && pb->tools->n && append_tools_description(&pb->system, pb->tools, err) < 0)
        return -1;
    if (mk->system_turn && pb->system.n && add_turn(pb, mk, "system", pb->system.bytes, pb->system.n, err) < 0)
        return -1;
    bool fold_system = !mk->system_turn;
    if (history == CHAT_HISTORY_LAST) {
        size_t last = last_user_index(messages, n);
        if (render_message(pb, messages, n, &last, err) < 0 ||
            add_gemma_turn(pb, mk, CHAT_ROLE_USER, fold_system, err) < 0)
            return -1;
    } else {
        bool folded = false;
        for (size_t i = 0; i < n;) {
            if (messages[i].role == CHAT_ROLE_SYSTEM) {
                i++;
                continue;
            }
            enum chat_role speaker = messages[i].role;
            bool fold = fold_system && !folded && speaker == CHAT_ROLE_USER;
            folded = folded || fold;
            if (render_message(pb, messages, n, &i, err) < 0 || add_gemma_turn(pb, mk, speaker, fold, err) < 0)
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
    bool first = true;
    if (pb->tools && pb->tools->n) {
        if (append_tools_description(&pb->segment, pb->tools, err) < 0)
            return -1;
        first = false;
    }
    size_t last_user = last_user_index(messages, n);
    for (size_t i = 0; i < n;) {
        const chat_message *m = &messages[i];
        if (history == CHAT_HISTORY_LAST && m->role != CHAT_ROLE_SYSTEM && i != last_user) {
            i++;
            continue;
        }
        const char *text = m->text;
        size_t len = m->len;
        if (m->role == CHAT_ROLE_TOOL || m->n_tool_calls) {
            if (render_message(pb, messages, n, &i, err) < 0)
                return -1;
            text = pb->body.bytes, len = pb->body.n;
        } else {
            i++;
        }
        if ((!first && buf_append_str(&pb->segment, "\n", err) < 0) || buf_append(&pb->segment, text, len, err) < 0)
            return -1;
        first = false;
    }
    return flush_segment(pb, err);
}

int chat_build_prompt(const tokenizer *t, enum chat_format fmt, const chat_message *messages, size_t n,
                      enum chat_history history, token_vec *out, el_err *err)
{
    return chat_build_tool_prompt(t, fmt, messages, n, NULL, history, out, err);
}

int chat_build_tool_prompt(const tokenizer *t, enum chat_format fmt, const chat_message *messages, size_t n,
                           const chat_tools *tools, enum chat_history history, token_vec *out, el_err *err)
{
    if (validate(messages, n, history, err) < 0)
        return -1;
    prompt_builder pb = {.tok = t, .out = out, .tools = tools};
    size_t n_before = out->n;
    int rc = fmt == CHAT_FORMAT_PLAIN ? build_plain(&pb, messages, n, history, err)
                                      : build_gemma(&pb, markers_of(fmt), messages, n, history, err);
    buf_free(&pb.segment);
    buf_free(&pb.system);
    buf_free(&pb.content);
    buf_free(&pb.body);
    if (rc < 0)
        out->n = n_before;
    return rc;
}

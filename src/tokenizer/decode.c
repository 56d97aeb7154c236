/* Token ids back to text, whole UTF-8 sequences at a time. */
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "base/invariant.h"

static const char replacement_char[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Writes the piece with every U+2581 turned into a space; returns the full length. */
static size_t unescape_spaces(const char *s, size_t len, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        char c;
        if (i + 3 <= len && !memcmp(s + i, "\xe2\x96\x81", 3)) {
            c = ' ';
            i += 3;
        } else {
            c = s[i++];
        }
        if (n < cap)
            buf[n] = c;
        n++;
    }
    return n;
}

size_t tokenizer_token_text(const tokenizer *t, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab)
        return 0;
    switch (t->kinds[id]) {
    case TOKEN_KIND_BYTE:
        if (cap > 0)
            buf[0] = (char)t->byte_of[id];
        return 1;
    case TOKEN_KIND_CONTROL:
    case TOKEN_KIND_UNKNOWN:
    case TOKEN_KIND_UNUSED:
        return 0;
    default:
        return unescape_spaces(token_text_ptr(t, id), token_text_len(t, id), buf, cap);
    }
}

/* ---- streaming -------------------------------------------------------------- */

typedef struct text_sink {
    char *out;
    size_t cap, n;
} text_sink;

/* Whole sequences only: one that does not fit is dropped, never split. */
static void sink_write(text_sink *s, const void *bytes, size_t len)
{
    if (s->n + len > s->cap)
        return;
    memcpy(s->out + s->n, bytes, len);
    s->n += len;
}

static int sequence_len_for_lead(uint8_t b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        return 2;
    if (b >= 0xe0 && b <= 0xef)
        return 3;
    if (b >= 0xf0 && b <= 0xf4)
        return 4;
    return 0; /* a continuation byte, an overlong lead or beyond U+10FFFF */
}

/* The second byte's range excludes overlongs, surrogates and code points past U+10FFFF. */
static bool continuation_ok(uint8_t lead, int index, uint8_t b)
{
    if (index == 1) {
        switch (lead) {
        case 0xe0: return b >= 0xa0 && b <= 0xbf;
        case 0xed: return b >= 0x80 && b <= 0x9f;
        case 0xf0: return b >= 0x90 && b <= 0xbf;
        case 0xf4: return b >= 0x80 && b <= 0x8f;
        default: break;
        }
    }
    return b >= 0x80 && b <= 0xbf;
}

static void feed_byte(detokenizer *d, text_sink *s, uint8_t b)
{
    if (d->n_held > 0) {
        int need = sequence_len_for_lead(d->held[0]);
        if (continuation_ok(d->held[0], d->n_held, b)) {
            d->held[d->n_held++] = b;
            if (d->n_held == need) {
                sink_write(s, d->held, (size_t)need);
                d->n_held = 0;
            }
            return;
        }
        /* The incomplete sequence ends here: one replacement for it, then b afresh. */
        sink_write(s, replacement_char, 3);
        d->n_held = 0;
    }
    int need = sequence_len_for_lead(b);
    if (need == 1)
        sink_write(s, &b, 1);
    else if (need == 0)
        sink_write(s, replacement_char, 3);
    else
        d->held[d->n_held++] = b;
}

void detokenizer_init(detokenizer *d, const tokenizer *t)
{
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->at_start = true;
}

size_t detokenizer_push(detokenizer *d, int32_t id, char *out, size_t cap)
{
    char piece[TOKENIZER_MAX_PIECE];
    size_t n = tokenizer_token_text(d->tok, id, piece, sizeof piece);
    if (NEVER(n > sizeof piece)) /* load rejects longer pieces */
        n = sizeof piece;
    if (n == 0)
        return 0;
    size_t start = 0;
    if (d->at_start && d->tok->add_space_prefix && piece[0] == ' ')
        start = 1;
    d->at_start = false;
    text_sink s = {out, cap, 0};
    for (size_t i = start; i < n; i++)
        feed_byte(d, &s, (uint8_t)piece[i]);
    explicit_bzero(piece, n); /* a piece of the reply */
    return s.n;
}

size_t detokenizer_finish(detokenizer *d, char *out, size_t cap)
{
    text_sink s = {out, cap, 0};
    if (d->n_held > 0)
        sink_write(&s, replacement_char, 3);
    d->n_held = 0;
    return s.n;
}

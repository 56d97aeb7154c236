/* Stop strings: the filter that holds generated text back while it could still
 * turn into a stop string, so that a stop string is never emitted, even in part. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

bool utf8_valid(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        /* overlong forms, surrogates and values beyond Unicode */
        if (c < min || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
            return false;
        i += n + 1;
    }
    return true;
}

int stop_set_init(stop_set *s, const char *const *strs, size_t n, el_err *err)
{
    memset(s, 0, sizeof *s);
    if (n == 0)
        return 0;
    if (!strs)
        return el_fail(err, "stop: no strings given");
    if (n > GEN_MAX_STOP)
        return el_fail(err, "stop: at most %d stop strings", GEN_MAX_STOP);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strs[i])
            return el_fail(err, "stop: string %zu is missing", i);
        size_t len = strnlen(strs[i], GEN_MAX_STOP_BYTES + 1);
        if (len == 0)
            return el_fail(err, "stop: string %zu is empty", i);
        if (len > GEN_MAX_STOP_BYTES)
            return el_fail(err, "stop: string %zu is longer than %d bytes", i, GEN_MAX_STOP_BYTES);
        if (!utf8_valid(strs[i], len))
            return el_fail(err, "stop: string %zu is not valid UTF-8", i);
        total += len;
    }
    s->text = malloc(total);
    if (!s->text)
        return el_fail(err, "stop: out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(strs[i]);
        memcpy(s->text + at, strs[i], len);
        s->off[i] = at;
        s->len[i] = len;
        if (len > s->max_len)
            s->max_len = len;
        at += len;
    }
    s->n = n;
    return 0;
}

void stop_set_free(stop_set *s)
{
    if (s->text) {
        size_t total = 0;
        for (size_t i = 0; i < s->n; i++)
            total += s->len[i];
        explicit_bzero(s->text, total);
        free(s->text);
    }
    memset(s, 0, sizeof *s);
}

/* Whether the tail text[start..len) is the beginning of some stop string longer than it. */
static bool tail_may_grow_into_stop(const stop_set *s, const char *text, size_t start, size_t len)
{
    size_t tail = len - start;
    for (size_t i = 0; i < s->n; i++) {
        const char *stop = s->text + s->off[i];
        if (s->len[i] > tail && stop[0] == text[start] && !memcmp(stop, text + start, tail))
            return true;
    }
    return false;
}

bool stop_scan(const stop_set *s, const char *text, size_t len, size_t *cut)
{
    size_t earliest = len;
    bool found = false;
    for (size_t i = 0; i < s->n; i++) {
        const char *hit = memmem(text, len, s->text + s->off[i], s->len[i]);
        if (hit && (size_t)(hit - text) < earliest) {
            earliest = (size_t)(hit - text);
            found = true;
        }
    }
    if (found) {
        *cut = earliest;
        return true;
    }
    /* The longest tail that could still become a stop string is held back. */
    size_t longest = s->max_len ? s->max_len - 1 : 0;
    size_t first = len > longest ? len - longest : 0;
    for (size_t start = first; start < len; start++) {
        if (tail_may_grow_into_stop(s, text, start, len)) {
            *cut = start;
            return false;
        }
    }
    *cut = len;
    return false;
}

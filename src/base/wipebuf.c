#include "base/wipebuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { WIPE_MIN_CAP = 256 };

void wipe_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    free(p);
}

void wipe_free_string(char *s)
{
    if (s)
        wipe_free(s, strlen(s));
}

int wipe_grow(char **buf, size_t *cap, size_t used, size_t need)
{
    if (need <= *cap)
        return 0;
    if (need > SIZE_MAX / 2)
        return -1;
    size_t bigger_cap = *cap ? *cap : WIPE_MIN_CAP;
    while (bigger_cap < need)
        bigger_cap *= 2;
    char *bigger = malloc(bigger_cap);
    if (!bigger)
        return -1;
    if (*buf) {
        memcpy(bigger, *buf, used);
        wipe_free(*buf, *cap);
    }
    *buf = bigger;
    *cap = bigger_cap;
    return 0;
}

int wipebuf_append(wipebuf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return -1;
    if (wipe_grow(&b->data, &b->cap, b->len, b->len + n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

char *wipebuf_take(wipebuf *b, size_t *len)
{
    char *data = b->data;
    *len = b->len;
    memset(b, 0, sizeof *b);
    return data;
}

void wipebuf_free(wipebuf *b)
{
    wipe_free(b->data, b->cap);
    memset(b, 0, sizeof *b);
}

__attribute__((noinline)) void wipe_stack_below(void)
{
    volatile char area[WIPE_STACK_BYTES];
    explicit_bzero((char *)area, sizeof area);
}

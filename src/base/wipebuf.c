#include "base/wipebuf.h"

#include <errno.h>
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

/* The one place where a wiped buffer's size is computed: every overflow check is here. */
int wipe_grow_array(void **buf, size_t *cap, size_t used, size_t need, size_t item_size)
{
    if (need < used) /* used + n wrapped around */
        return -1;
    if (need <= *cap)
        return 0;
    if (item_size == 0 || used > *cap || need > SIZE_MAX / 2 / item_size)
        return -1;
    size_t bigger_cap = *cap ? *cap : (WIPE_MIN_CAP + item_size - 1) / item_size;
    while (bigger_cap < need)
        bigger_cap *= 2;
    void *bigger = malloc(bigger_cap * item_size);
    if (!bigger)
        return -1;
    if (*buf) {
        memcpy(bigger, *buf, used * item_size);
        wipe_free(*buf, *cap * item_size);
    }
    *buf = bigger;
    *cap = bigger_cap;
    return 0;
}

int wipe_grow(char **buf, size_t *cap, size_t used, size_t need)
{
    void *p = *buf;
    int rc = wipe_grow_array(&p, cap, used, need, 1);
    *buf = p;
    return rc;
}

ssize_t wipe_getline(char **line, size_t *cap, FILE *fp)
{
    size_t n = 0;
    int c;
    while ((c = getc(fp)) != EOF) {
        if (wipe_grow(line, cap, n, n + 2) < 0) {
            errno = ENOMEM;
            return -1;
        }
        (*line)[n++] = (char)c;
        if (c == '\n')
            break;
    }
    if (n == 0)
        return -1;
    (*line)[n] = '\0';
    return (ssize_t)n;
}

int wipebuf_append(wipebuf *b, const char *s, size_t n)
{
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

#include "base/wipebuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int wipebuf_append(wipebuf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *bigger = malloc(cap);
        if (!bigger)
            return -1;
        if (b->data) {
            memcpy(bigger, b->data, b->len);
            explicit_bzero(b->data, b->cap);
            free(b->data);
        }
        b->data = bigger;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

void wipebuf_free(wipebuf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    free(b->data);
    memset(b, 0, sizeof *b);
}

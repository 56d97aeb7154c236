/* A growable byte buffer for text that must not outlive its use (message and
 * generated text; docs/api.md, Privacy): growing copies the bytes to a new block and wipes
 * the old one, and wipebuf_free wipes before freeing. Zero-initialise to start. */
#ifndef ELLIOTT_BASE_WIPEBUF_H
#define ELLIOTT_BASE_WIPEBUF_H

#include <stddef.h>

typedef struct wipebuf {
    char *data; /* not NUL-terminated; NULL until the first append */
    size_t len, cap;
} wipebuf;

/* Appends n bytes; -1 (buffer unchanged) when out of memory or the size overflows. */
int wipebuf_append(wipebuf *b, const char *s, size_t n);
/* Wipes, frees and zeroes the buffer. */
void wipebuf_free(wipebuf *b);

#endif

/* Memory for text that must not outlive its use (message and generated text,
 * keys; docs/api.md, Privacy), in one place: every block that held such bytes is
 * wiped before it is freed, and growing never uses realloc (which may leave a
 * copy of the old block behind) but copies to a new block and wipes the old.
 *
 * wipebuf is a growable byte buffer built on these; zero-initialise to start. */
#ifndef ELLIOTT_BASE_WIPEBUF_H
#define ELLIOTT_BASE_WIPEBUF_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Wipes the n bytes at p, then frees p. NULL is fine. */
void wipe_free(void *p, size_t n);
/* Wipes a NUL-terminated string, then frees it. NULL is fine. */
void wipe_free_string(char *s);
/* Wipes WIPE_STACK_BYTES of this thread's stack below the caller's frame: the frames of
 * calls that have returned (a parser's, a handler's) keep their locals, message text
 * among them, until something overwrites them. */
enum { WIPE_STACK_BYTES = 64 * 1024 };
void wipe_stack_below(void);
/* Makes room for need bytes in *buf, of which used are in use and *cap are
 * allocated: a new block (doubling from 256 bytes), the used bytes copied, the
 * old block wiped and freed. Nothing to do when need <= *cap. -1, with *buf and
 * *cap unchanged, when out of memory or the size overflows (need < used: the
 * caller's used + n wrapped around, so callers need no check of their own). */
int wipe_grow(char **buf, size_t *cap, size_t used, size_t need);
/* wipe_grow for an array of item_size-byte items (token ids, records): *cap, used
 * and need count items; the new block holds at least 256 bytes. */
int wipe_grow_array(void **buf, size_t *cap, size_t used, size_t need, size_t item_size);

/* getline(3), growing with wipe_grow (getline's realloc may leave copies of what was
 * read, a typed message or a key, in freed memory): the line with its newline and a
 * NUL; -1 at the end of input or when out of memory (errno ENOMEM). */
ssize_t wipe_getline(char **line, size_t *cap, FILE *fp);

typedef struct wipebuf {
    char *data; /* not NUL-terminated; NULL until the first append */
    size_t len, cap;
} wipebuf;

/* Appends n bytes; -1 (buffer unchanged) when out of memory or the size overflows. */
int wipebuf_append(wipebuf *b, const char *s, size_t n);
/* Hands the bytes over (NULL when nothing was appended) and leaves b empty.
 * Bytes past *len never held data (growth copies only what is in use), so
 * the new owner wipes *len bytes: wipe_free(p, *len). */
char *wipebuf_take(wipebuf *b, size_t *len);
/* Wipes, frees and zeroes the buffer. */
void wipebuf_free(wipebuf *b);

#endif

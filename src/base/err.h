/* Error reporting shared by every layer.
 *
 * A function that can fail takes an `el_err *` as its last argument and returns
 * a negative value (or NULL) on failure after filling in a human-readable message.
 * Callers may pass NULL when they do not care about the message. */
#ifndef ELLIOTT_BASE_ERR_H
#define ELLIOTT_BASE_ERR_H

#include <stddef.h>

typedef struct el_err {
    char msg[320];
} el_err;

/* Formats the message into `err` (if not NULL) and returns -1, so that
 * `return el_fail(err, "...")` reads naturally. */
int el_fail(el_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message with more context: "context: old message". */
int el_wrap(el_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

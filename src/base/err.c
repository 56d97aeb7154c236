#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int el_fail(el_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int el_wrap(el_err *err, const char *fmt, ...)
{
    if (err) {
        char prefix[sizeof err->msg];
        char old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        char joined[2 * sizeof err->msg + 2];
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = '\0';
        snprintf(joined, sizeof joined, "%s: %s", prefix, old);
        memcpy(err->msg, joined, sizeof err->msg - 1);
        err->msg[sizeof err->msg - 1] = '\0';
    }
    return -1;
}

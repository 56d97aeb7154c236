#include "cli/cli_input.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/wipebuf.h"

/* Doubles buf; NULL (buf wiped and freed) when out of memory. */
static char *grow(char *buf, size_t used, size_t *cap)
{
    if (wipe_grow(&buf, cap, used, *cap * 2) < 0) {
        wipe_free(buf, *cap);
        return NULL;
    }
    return buf;
}

/* Reads fp to its end into a buffer of at most limit bytes (plus the NUL).
 * Returns NULL and sets *too_long or errno on failure. */
static char *read_all(FILE *fp, size_t limit, size_t *len, int *too_long)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap > limit) {
                *too_long = 1;
                wipe_free(buf, cap);
                return NULL;
            }
            buf = grow(buf, n, &cap);
            continue;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got > 0)
            continue;
        if (ferror(fp)) {
            int saved = errno ? errno : EIO;
            wipe_free(buf, cap);
            errno = saved;
            return NULL;
        }
        if (n > limit) {
            *too_long = 1;
            wipe_free(buf, cap);
            return NULL;
        }
        if (n == cap && !(buf = grow(buf, n, &cap)))
            break;
        buf[n] = '\0';
        *len = n;
        return buf;
    }
    errno = ENOMEM;
    return NULL;
}

char *cli_read_input(const char *cmd, const char *path, size_t limit, size_t *len)
{
    const char *name = path ? path : "standard input";
    FILE *fp = path ? fopen(path, "rb") : stdin;
    if (!fp) {
        fprintf(stderr, "elliott %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "elliott %s: %s is a directory, not a text file\n", cmd, name);
        if (path)
            fclose(fp);
        return NULL;
    }
    int too_long = 0;
    errno = 0;
    char *text = read_all(fp, limit, len, &too_long);
    int saved = errno;
    if (path)
        fclose(fp);
    if (!text && too_long)
        fprintf(stderr, "elliott %s: %s is longer than %zu bytes\n", cmd, name, limit);
    else if (!text)
        fprintf(stderr, "elliott %s: cannot read %s: %s\n", cmd, name, strerror(saved));
    return text;
}

void cli_input_free(char *text, size_t len)
{
    wipe_free(text, len + 1);
}

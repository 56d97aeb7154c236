/* An independent UTF-8 validator (RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF) for tests and fuzz targets to check the project's own UTF-8
 * handling against. Header-only: each user gets a private copy. */
#ifndef ELLIOTT_TESTS_UTF8_CHECK_H
#define ELLIOTT_TESTS_UTF8_CHECK_H

#include <stdbool.h>
#include <stddef.h>

static inline bool valid_utf8(const void *text, size_t n)
{
    const unsigned char *s = text;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3
                               : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        if (len == 0 || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) || (c == 0xf0 && s[i + 1] < 0x90) ||
            (c == 0xf4 && s[i + 1] > 0x8f))
            return false;
        i += len;
    }
    return true;
}

#endif

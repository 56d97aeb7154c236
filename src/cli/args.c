#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad_value(const char *cmd, const char *option, const char *text, const char *why)
{
    fprintf(stderr, "elliott %s: %s: '%s' %s\n", cmd, option, text, why);
    return -1;
}

int args_int(const char *cmd, const char *option, const char *text, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end)
        return bad_value(cmd, option, text, "is not an integer");
    if (v < min || v > max) {
        char why[96];
        snprintf(why, sizeof why, "is out of range [%ld, %ld]", min, max);
        return bad_value(cmd, option, text, why);
    }
    *out = (int)v;
    return 0;
}

int args_u64(const char *cmd, const char *option, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)text[0])) /* strtoull would skip spaces and accept "-5" as 2^64-5 */
        return bad_value(cmd, option, text, "is not a non-negative number");
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end)
        return bad_value(cmd, option, text, "is not a non-negative integer");
    *out = v;
    return 0;
}

int args_float(const char *cmd, const char *option, const char *text, double min, double max, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v))
        return bad_value(cmd, option, text, "is not a finite number");
    if (v < min || v > max) {
        char why[96];
        snprintf(why, sizeof why, "is out of range [%g, %g]", min, max);
        return bad_value(cmd, option, text, why);
    }
    *out = (float)v;
    return 0;
}

int args_size(const char *cmd, const char *option, const char *text, size_t min, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)text[0])) /* strtoull would skip spaces and accept "-5" as 2^64-5 */
        return bad_value(cmd, option, text, "is not a non-negative number");
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text)
        return bad_value(cmd, option, text, "is not a size");
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end)
        return bad_value(cmd, option, text, "is not a size (bytes, or with a K, M or G suffix)");
    if (v > (unsigned long long)(SIZE_MAX >> shift))
        return bad_value(cmd, option, text, "is too large");
    v <<= shift;
    if (v < min || v > max) {
        char why[96];
        snprintf(why, sizeof why, "is out of range [%zu, %zu] bytes", min, max);
        return bad_value(cmd, option, text, why);
    }
    *out = (size_t)v;
    return 0;
}

int args_cache_type(const char *cmd, const char *option, const char *text, bool *q8_0)
{
    if (strcmp(text, "f16") != 0 && strcmp(text, "q8_0") != 0)
        return bad_value(cmd, option, text, "is not a KV cache type (f16 or q8_0)");
    *q8_0 = strcmp(text, "q8_0") == 0;
    return 0;
}

int args_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "elliott %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'elliott %s --help'.\n", cmd);
    return 2;
}

int args_option_error(const char *cmd, int c, char *const argv[])
{
    const char *arg = argv[optind - 1];
    bool is_long = arg && arg[0] == '-' && arg[1] == '-';
    /* A short option may sit inside a group ("-sx"): name the letter, not the group. */
    char short_name[3] = {'-', (char)optopt, '\0'};
    int name_len = is_long ? (int)strcspn(arg, "=") : 2;
    const char *name = is_long ? arg : short_name;
    if (c == ':')
        return args_usage_error(cmd, "%.*s needs a value", name_len, name);
    if (is_long && optopt) /* a known long option: it was given a value it does not take */
        return args_usage_error(cmd, "%.*s takes no value", name_len, name);
    return args_usage_error(cmd, "unknown option '%.*s'", name_len, name);
}

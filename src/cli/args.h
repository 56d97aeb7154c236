/* Validating conversions for command-line values. Each prints
 * "elliott CMD: OPTION: why" to stderr and returns -1 on a bad value. */
#ifndef ELLIOTT_CLI_ARGS_H
#define ELLIOTT_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int args_int(const char *cmd, const char *option, const char *text, long min, long max, int *out);
int args_u64(const char *cmd, const char *option, const char *text, uint64_t *out);
int args_float(const char *cmd, const char *option, const char *text, double min, double max, float *out);
/* A byte count with an optional K, M or G suffix (powers of 1024). */
int args_size(const char *cmd, const char *option, const char *text, size_t min, size_t max, size_t *out);
/* --cache-type's value, the KV cache's storage: "f16" (*q8_0 = false) or "q8_0" (true). */
int args_cache_type(const char *cmd, const char *option, const char *text, bool *q8_0);
/* Reports an error about the command line and returns 2 (the exit status for usage errors). */
int args_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports what getopt_long returned ':' (a missing value) or '?' (an unknown
 * option, or a value given to an option that takes none) for, and returns 2.
 * The short options string must start with ':' and opterr be 0, so that getopt
 * prints nothing itself. */
int args_option_error(const char *cmd, int c, char *const argv[]);

#endif

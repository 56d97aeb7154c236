/* What `elliott serve` reads from files that must stay private: API keys and
 * a TLS certificate with its key. Errors are printed as "elliott serve: ...". */
#ifndef ELLIOTT_CLI_SERVE_SECRETS_H
#define ELLIOTT_CLI_SERVE_SECRETS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct keyset {
    char **keys;
    size_t n;
} keyset;

/* A key: 1 to 512 printable ASCII characters without spaces. */
bool key_is_valid(const char *key);

/* Reads an API key file: one key per line; blank lines and lines starting
 * with '#' are skipped, spaces around a key ignored. At least one key. Warns
 * when the file is readable by other users. -1 after printing why. */
int keyset_read(const char *path, keyset *out);
/* Wipes and frees. */
void keyset_free(keyset *k);

/* Reads a PEM file (what: "certificate" or "key") whole, NUL-terminated;
 * NULL after printing why. Free with pem_free. */
char *pem_read(const char *path, const char *what);
void pem_free(char *pem);

#endif

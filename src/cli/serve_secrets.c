#include "cli/serve_secrets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/wipebuf.h"

enum { KEY_MAX = 512, PEM_MAX = 1 << 20 };

bool key_is_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > KEY_MAX)
        return false;
    for (const char *k = key; *k; k++)
        if ((unsigned char)*k <= 0x20 || (unsigned char)*k >= 0x7f)
            return false;
    return true;
}

/* -1 (after saying so) unless fd is a regular file; warns when other users
 * may read or write a key. */
static int check_secret_file(const char *path, int fd, const char *option, const char *what)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "elliott serve: %s: '%s' is not a regular file\n", option, path);
        return -1;
    }
    if ((st.st_mode & 077) && strstr(what, "key"))
        fprintf(stderr, "elliott serve: warning: the %s file %s is readable or writable by other users (chmod 600)\n",
                what, path);
    return 0;
}

void keyset_free(keyset *k)
{
    for (size_t i = 0; i < k->n; i++)
        wipe_free_string(k->keys[i]);
    free(k->keys);
    k->keys = NULL;
    k->n = 0;
}

static int keyset_add(keyset *k, const char *key)
{
    char **grown = realloc(k->keys, (k->n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    k->keys = grown;
    k->keys[k->n] = strdup(key);
    if (!k->keys[k->n])
        return -1;
    k->n++;
    return 0;
}

/* The key on a line (trimmed in place), or NULL for a blank or comment line. */
static char *key_of_line(char *line)
{
    line[strcspn(line, "\r\n")] = '\0';
    char *start = line;
    while (*start == ' ' || *start == '\t')
        start++;
    char *end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    return *start && *start != '#' ? start : NULL;
}

int keyset_read(const char *path, keyset *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "elliott serve: --api-key-file: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    if (check_secret_file(path, fileno(f), "--api-key-file", "API key") < 0) {
        fclose(f);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, line_no = 0;
    while (wipe_getline(&line, &cap, f) >= 0) {
        line_no++;
        char *key = key_of_line(line);
        if (!key)
            continue;
        if (!key_is_valid(key)) {
            fprintf(stderr,
                    "elliott serve: --api-key-file: %s line %d: a key must be 1 to 512 printable characters without "
                    "spaces\n",
                    path, line_no);
            rc = -1;
            break;
        }
        if (keyset_add(out, key) < 0) {
            fprintf(stderr, "elliott serve: --api-key-file: out of memory\n");
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "elliott serve: --api-key-file: cannot read '%s': %s\n", path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && out->n == 0) {
        fprintf(stderr, "elliott serve: --api-key-file: '%s' holds no key\n", path);
        rc = -1;
    }
    wipe_free(line, cap);
    fclose(f);
    if (rc < 0)
        keyset_free(out);
    return rc;
}

void pem_free(char *pem)
{
    wipe_free_string(pem);
}

char *pem_read(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "elliott serve: --tls-%s: cannot open '%s': %s\n", what, path, strerror(errno));
        return NULL;
    }
    bool is_key = !strcmp(what, "key");
    const char *option = is_key ? "--tls-key" : "--tls-cert";
    if (check_secret_file(path, fileno(f), option, is_key ? "TLS key" : "TLS certificate") < 0) {
        fclose(f);
        return NULL;
    }
    char *pem = malloc(PEM_MAX + 1);
    size_t n = pem ? fread(pem, 1, PEM_MAX + 1, f) : 0;
    bool failed = !pem || ferror(f);
    fclose(f);
    const char *why = NULL;
    if (failed)
        why = pem ? "cannot read it" : "out of memory";
    else if (n > PEM_MAX)
        why = "it is larger than 1 MiB";
    else if (n == 0)
        why = "it is empty";
    if (!why) {
        pem[n] = '\0';
        if (strlen(pem) != n || !strstr(pem, "-----BEGIN "))
            why = "it is not a PEM file (no -----BEGIN line)";
    }
    if (why) {
        fprintf(stderr, "elliott serve: --tls-%s: '%s': %s\n", what, path, why);
        wipe_free(pem, n);
        return NULL;
    }
    return pem;
}

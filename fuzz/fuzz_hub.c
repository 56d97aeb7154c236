/* libFuzzer target for the hub's parsers: response headers (the input split into
 * lines), the tree listing JSON, the default-file choice, name checks, URL
 * escaping and SHA-256. Checked on every input:
 * - header fields stay NUL-terminated inside their buffers, and the promised
 *   SHA-256 is either absent or 64 hex digits;
 * - every listed file is a .gguf, not a split part, and passes hub_check_file;
 *   the list is sorted after hub_file_list_sort; the default choice is one of the
 *   listed files, or a refusal with a message;
 * - accepted repository names have one '/' and no "..", accepted file names are
 *   relative and have no empty, '.' or '..' component;
 * - URL escaping emits only unreserved characters and %XX, decodes back to the
 *   input, and refuses (with a message) instead of overrunning a small buffer;
 * - SHA-256 of the input in two pieces equals SHA-256 in one. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hub/hub_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_hub: %s\n", what);
        abort();
    }
}

static bool terminated(const char *buf, size_t size)
{
    return memchr(buf, '\0', size) != NULL;
}

static void fuzz_headers(const uint8_t *data, size_t size)
{
    hub_headers h;
    hub_headers_init(&h);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        /* libcurl hands over each line with its line ending. */
        hub_headers_feed(&h, (const char *)data + start, i - start + (i < size));
        start = i + 1;
    }
    check(terminated(h.etag, sizeof h.etag) && terminated(h.linked_etag, sizeof h.linked_etag) &&
              terminated(h.next_link, sizeof h.next_link),
          "a header field is not terminated");
    check(h.status >= 0 && h.status <= 999, "status out of range");
    const char *sha = hub_headers_sha256(&h);
    check(!sha || (strlen(sha) == 64 && hub_is_sha256_hex(sha)), "promised SHA-256 is not 64 hex digits");
}

static void fuzz_listing(const uint8_t *data, size_t size)
{
    hub_file_list list = {0};
    el_err err = {{0}};
    if (hub_parse_listing((const char *)data, size, &list, &err) < 0) {
        check(err.msg[0] != '\0', "a listing refusal without a message");
    }
    for (size_t i = 0; i < list.count; i++) {
        const char *path = list.files[i].path;
        size_t n = strlen(path);
        check(n > 5 && !strcasecmp(path + n - 5, ".gguf"), "a listed file is not a .gguf");
        check(!hub_is_split_part(path), "a split part was listed");
        check(hub_check_file(path, NULL) == 0, "a listed file fails the file name check");
    }
    hub_file_list_sort(&list);
    for (size_t i = 1; i < list.count; i++)
        check(strcmp(list.files[i - 1].path, list.files[i].path) <= 0, "the listing is not sorted");
    el_err choose_err = {{0}};
    const hub_file *chosen = hub_choose_default(&list, &choose_err);
    if (chosen)
        check(chosen >= list.files && chosen < list.files + list.count, "the default is not a listed file");
    else
        check(choose_err.msg[0] != '\0', "no default and no message");
    hub_file_list_free(&list);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void fuzz_escape(const char *s, bool keep_slash, size_t out_size)
{
    char *out = malloc(out_size ? out_size : 1);
    check(out != NULL, "out of memory");
    el_err err = {{0}};
    if (hub_url_escape(s, keep_slash, out, out_size, &err) < 0) {
        check(err.msg[0] != '\0', "an escape refusal without a message");
        free(out);
        return;
    }
    check(terminated(out, out_size), "escaped URL is not terminated");
    const char *p = s;
    for (size_t i = 0; out[i]; p++) {
        char c = out[i];
        if (c == '%') {
            int hi = hex_value(out[i + 1]), lo = hex_value(hi < 0 ? '\0' : out[i + 2]);
            check(hi >= 0 && lo >= 0, "a bad percent escape");
            check((unsigned char)*p == (unsigned)(hi * 16 + lo), "an escape does not decode to the input");
            i += 3;
        } else {
            check(isalnum((unsigned char)c) || strchr("-_.~", c) || (keep_slash && c == '/'),
                  "a reserved character left unescaped");
            check(*p == c, "the escaped URL does not decode to the input");
            i++;
        }
    }
    check(*p == '\0', "the escaped URL is shorter than the input");
    free(out);
}

static void fuzz_names(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    check(s != NULL, "out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    if (hub_check_repo(s, NULL) == 0) {
        const char *slash = strchr(s, '/');
        check(slash && slash != s && slash[1] && !strchr(slash + 1, '/'), "accepted a repository without OWNER/NAME");
        check(!strstr(s, ".."), "accepted a repository with '..'");
    }
    if (hub_check_file(s, NULL) == 0) {
        check(s[0] != '/' && !strstr(s, "//") && s[strlen(s) - 1] != '/', "accepted an absolute or empty component");
        check(strcmp(s, "..") && strncmp(s, "../", 3) && !strstr(s, "/../") && !strstr(s, "/./"),
              "accepted a '.' or '..' component");
    }
    el_err err = {{0}};
    if (hub_check_revision(s, &err) < 0)
        check(err.msg[0] != '\0', "a revision refusal without a message");
    (void)hub_is_split_part(s);
    size_t small = size ? data[0] % 16 : 0;
    fuzz_escape(s, true, small);
    fuzz_escape(s, false, 3 * strlen(s) + 1);
    free(s);
}

static void fuzz_sha256(const uint8_t *data, size_t size)
{
    uint8_t whole[32], pieces[32];
    hub_sha256 ctx;
    hub_sha256_init(&ctx);
    hub_sha256_update(&ctx, data, size);
    hub_sha256_final(&ctx, whole);
    size_t cut = size ? data[0] % (size + 1) : 0;
    hub_sha256_init(&ctx);
    hub_sha256_update(&ctx, data, cut);
    hub_sha256_update(&ctx, data + cut, size - cut);
    hub_sha256_final(&ctx, pieces);
    check(!memcmp(whole, pieces, sizeof whole), "SHA-256 depends on how the input is split");
    char hex[65];
    hub_sha256_hex(whole, hex);
    check(hub_is_sha256_hex(hex), "SHA-256 hex is not 64 hex digits");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_headers(data, size);
    fuzz_listing(data, size);
    fuzz_names(data, size);
    fuzz_sha256(data, size);
    return 0;
}

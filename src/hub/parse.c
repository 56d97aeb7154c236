/* The parts of the hub layer that do not touch the network: response headers,
 * the tree listing, choosing a default file and checking names. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hub/hub_internal.h"

/* ---- headers --------------------------------------------------------------------- */

void hub_headers_init(hub_headers *h)
{
    memset(h, 0, sizeof *h);
}

static void start_response(hub_headers *h, long status)
{
    char linked[HUB_ETAG_MAX];
    memcpy(linked, h->linked_etag, sizeof linked);
    hub_headers_init(h);
    memcpy(h->linked_etag, linked, sizeof linked);
    h->status = status;
}

static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Copies an entity tag without W/ and quotes; too long ones are dropped. */
static void copy_etag(char *dst, const char *v, size_t len)
{
    if (len >= 2 && (v[0] == 'W' || v[0] == 'w') && v[1] == '/') {
        v += 2;
        len -= 2;
    }
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    if (len >= HUB_ETAG_MAX)
        return;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static void parse_content_range(hub_headers *h, const char *v, size_t len)
{
    if (len < 6 || strncasecmp(v, "bytes ", 6) != 0)
        return;
    v += 6;
    len -= 6;
    const char *slash = memchr(v, '/', len);
    if (!slash)
        return;
    size_t range_len = (size_t)(slash - v), total_len = len - range_len - 1;
    h->has_content_range = true;
    if (!(total_len == 1 && slash[1] == '*'))
        h->range_total_known = parse_u64(slash + 1, total_len, &h->range_total);
    const char *dash = memchr(v, '-', range_len);
    if (dash)
        h->range_has_start = parse_u64(v, (size_t)(dash - v), &h->range_start);
}

/* Link: <url1>; rel="prev", <url2>; rel="next" */
static void parse_link(hub_headers *h, const char *v, size_t len)
{
    const char *end = v + len;
    while (v < end) {
        const char *open = memchr(v, '<', (size_t)(end - v));
        if (!open)
            return;
        const char *close = memchr(open, '>', (size_t)(end - open));
        if (!close)
            return;
        const char *next_entry = memchr(close, ',', (size_t)(end - close));
        const char *params_end = next_entry ? next_entry : end;
        size_t plen = (size_t)(params_end - close);
        bool is_next = false;
        for (size_t i = 0; i < plen; i++) {
            size_t rest = plen - i;
            if ((rest >= 10 && strncasecmp(close + i, "rel=\"next\"", 10) == 0) ||
                (rest >= 8 && strncasecmp(close + i, "rel=next", 8) == 0))
                is_next = true;
        }
        size_t ulen = (size_t)(close - open - 1);
        if (is_next && ulen < HUB_LINK_MAX) {
            memcpy(h->next_link, open + 1, ulen);
            h->next_link[ulen] = '\0';
            return;
        }
        v = next_entry ? next_entry + 1 : end;
    }
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

void hub_headers_feed(hub_headers *h, const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);
        uint64_t status = 0;
        if (sp && (size_t)(line + len - sp) >= 4 && parse_u64(sp + 1, 3, &status))
            start_response(h, (long)status);
        return;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (name_is(line, name_len, "etag"))
        copy_etag(h->etag, v, vlen);
    else if (name_is(line, name_len, "x-linked-etag") && !h->linked_etag[0])
        copy_etag(h->linked_etag, v, vlen);
    else if (name_is(line, name_len, "content-length"))
        h->has_content_length = parse_u64(v, vlen, &h->content_length);
    else if (name_is(line, name_len, "content-range"))
        parse_content_range(h, v, vlen);
    else if (name_is(line, name_len, "link"))
        parse_link(h, v, vlen);
}

bool hub_is_sha256_hex(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n]))
            return false;
    return n == 64;
}

const char *hub_headers_sha256(const hub_headers *h)
{
    if (hub_is_sha256_hex(h->linked_etag))
        return h->linked_etag;
    if (hub_is_sha256_hex(h->etag))
        return h->etag;
    return NULL;
}

/* ---- listing -------------------------------------------------------------------------- */

static bool ends_with_gguf(const char *path)
{
    size_t n = strlen(path);
    return n > 5 && strcasecmp(path + n - 5, ".gguf") == 0;
}

bool hub_is_split_part(const char *path)
{
    /* ...-DDDDD-of-DDDDD.gguf */
    size_t n = strlen(path);
    if (n < 5 + 15 || !ends_with_gguf(path))
        return false;
    const char *p = path + n - 5 - 14;
    if (p[-1] != '-' || strncmp(p + 5, "-of-", 4) != 0)
        return false;
    for (int i = 0; i < 5; i++)
        if (!isdigit((unsigned char)p[i]) || !isdigit((unsigned char)p[9 + i]))
            return false;
    return true;
}

static int append_file(hub_file_list *list, const char *path, uint64_t size, el_err *err)
{
    hub_file *grown = realloc(list->files, (list->count + 1) * sizeof *grown);
    if (!grown)
        return el_fail(err, "out of memory listing files");
    list->files = grown;
    char *copy = strdup(path);
    if (!copy)
        return el_fail(err, "out of memory listing files");
    list->files[list->count++] = (hub_file){ copy, size };
    return 0;
}

/* LFS files report their real size under lfs.size; size is the pointer's otherwise. */
static uint64_t entry_size(json_t *entry)
{
    json_t *lfs = json_object_get(entry, "lfs");
    json_t *size = lfs ? json_object_get(lfs, "size") : NULL;
    if (!json_is_integer(size))
        size = json_object_get(entry, "size");
    json_int_t v = json_is_integer(size) ? json_integer_value(size) : 0;
    return v > 0 ? (uint64_t)v : 0;
}

int hub_parse_listing(const char *json, size_t len, hub_file_list *list, el_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return el_fail(err, "the file listing is not valid JSON (%s, line %d)", jerr.text, jerr.line);
    if (!json_is_array(root)) {
        json_decref(root);
        return el_fail(err, "the file listing is not a JSON array");
    }
    size_t i;
    json_t *entry;
    json_array_foreach(root, i, entry) {
        const char *type = json_string_value(json_object_get(entry, "type"));
        const char *path = json_string_value(json_object_get(entry, "path"));
        if (!type || !path || strcmp(type, "file") != 0 || !ends_with_gguf(path) ||
            hub_is_split_part(path) || hub_check_file(path, NULL) < 0)
            continue;
        if (append_file(list, path, entry_size(entry), err) < 0) {
            json_decref(root);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(((const hub_file *)a)->path, ((const hub_file *)b)->path);
}

void hub_file_list_sort(hub_file_list *list)
{
    if (list->count > 1)
        qsort(list->files, list->count, sizeof *list->files, compare_paths);
}

void hub_file_list_free(hub_file_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->files[i].path);
    free(list->files);
    list->files = NULL;
    list->count = 0;
}

/* The name's quantization tag must stand alone: Q4_0 must not match Q4_0_4_4. */
static bool has_quant_tag(const char *path, const char *tag)
{
    size_t n = strlen(tag), len = strlen(path);
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(path + i, tag, n) != 0)
            continue;
        bool left_ok = i == 0 || !isalnum((unsigned char)path[i - 1]);
        char after = path[i + n];
        bool right_ok = after == '.' || after == '-' || after == '\0';
        if (left_ok && right_ok)
            return true;
    }
    return false;
}

static int list_candidates(const hub_file_list *list, const char *why, el_err *err)
{
    char names[200] = "";
    size_t used = 0;
    for (size_t i = 0; i < list->count && used < sizeof names - 1; i++) {
        int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", list->files[i].path);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    if (used >= sizeof names - 1)
        memcpy(names + sizeof names - 5, "...", 4);
    return el_fail(err, "%s; name one of: %s", why, names);
}

static const hub_file *unique_with_tag(const hub_file_list *list, const char *tag, int *matches)
{
    const hub_file *found = NULL;
    *matches = 0;
    for (size_t i = 0; i < list->count; i++)
        if (has_quant_tag(list->files[i].path, tag)) {
            found = &list->files[i];
            (*matches)++;
        }
    return *matches == 1 ? found : NULL;
}

const hub_file *hub_choose_default(const hub_file_list *list, el_err *err)
{
    if (list->count == 0) {
        el_fail(err, "the repository has no .gguf file");
        return NULL;
    }
    if (list->count == 1)
        return &list->files[0];
    static const char *const preferred[] = { "Q4_K_M", "Q4_0" };
    for (size_t p = 0; p < sizeof preferred / sizeof preferred[0]; p++) {
        int matches;
        const hub_file *f = unique_with_tag(list, preferred[p], &matches);
        if (f)
            return f;
        if (matches > 1) {
            char why[64];
            snprintf(why, sizeof why, "%d files are %s", matches, preferred[p]);
            list_candidates(list, why, err);
            return NULL;
        }
    }
    const hub_file *smallest = &list->files[0];
    int ties = 0;
    for (size_t i = 1; i < list->count; i++) {
        if (list->files[i].size < smallest->size) {
            smallest = &list->files[i];
            ties = 0;
        } else if (list->files[i].size == smallest->size) {
            ties++;
        }
    }
    if (ties || smallest->size == 0) {
        list_candidates(list, "no Q4_K_M or Q4_0 file and no single smallest one", err);
        return NULL;
    }
    return smallest;
}

/* ---- names ---------------------------------------------------------------------------- */

static bool repo_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

int hub_check_repo(const char *repo, el_err *err)
{
    const char *slash = repo ? strchr(repo, '/') : NULL;
    if (!slash || slash == repo || !slash[1] || strchr(slash + 1, '/'))
        return el_fail(err, "repository must look like OWNER/NAME (e.g. google/gemma-7b-it-GGUF)");
    if (strlen(repo) > 200)
        return el_fail(err, "repository name is too long");
    for (const char *p = repo; *p; p++)
        if (*p != '/' && !repo_char_ok(*p))
            return el_fail(err, "repository name has a character that is not allowed: '%c'", *p);
    if (strstr(repo, "..") || repo[0] == '.' || slash[1] == '.')
        return el_fail(err, "repository name may not contain '..' or start a part with '.'");
    return 0;
}

static bool has_control_char(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

int hub_check_file(const char *file, el_err *err)
{
    if (!file || !*file)
        return el_fail(err, "file name is empty");
    if (strlen(file) > 1000)
        return el_fail(err, "file name is too long");
    if (file[0] == '/' || strchr(file, '\\') || has_control_char(file))
        return el_fail(err, "file name '%s' is not a relative path inside the repository", file);
    for (const char *p = file; *p;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        /* A trailing '/' leaves an empty last component (and no name to save as). */
        bool empty_last = end && end[1] == '\0';
        if (n == 0 || empty_last || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return el_fail(err, "file name '%s' has an empty, '.' or '..' component", file);
        p += n + (end ? 1 : 0);
    }
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (base[0] == '.')
        return el_fail(err, "file name '%s' is hidden (starts with '.')", file);
    return 0;
}

int hub_check_revision(const char *revision, el_err *err)
{
    if (!revision || !*revision)
        return el_fail(err, "revision is empty");
    if (strlen(revision) > 255 || has_control_char(revision) || strstr(revision, ".."))
        return el_fail(err, "revision '%s' is not a valid branch, tag or commit", revision);
    return 0;
}

int hub_url_escape(const char *in, bool keep_slash, char *out, size_t size, el_err *err)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
                     (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= size)
            return el_fail(err, "URL is too long");
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (size == 0)
        return el_fail(err, "URL is too long");
    out[o] = '\0';
    return 0;
}

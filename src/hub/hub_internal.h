/* Pieces of the hub layer that its tests reach directly: SHA-256, HTTP header
 * parsing, the listing parser and argument checks. Not for other layers. */
#ifndef ELLIOTT_HUB_INTERNAL_H
#define ELLIOTT_HUB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hub/hub.h"

/* ---- SHA-256 (FIPS 180-4) ----------------------------------------------------- */

typedef struct hub_sha256 {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t fill;
} hub_sha256;

void hub_sha256_init(hub_sha256 *ctx);
void hub_sha256_update(hub_sha256 *ctx, const void *data, size_t len);
void hub_sha256_final(hub_sha256 *ctx, uint8_t digest[32]);
void hub_sha256_hex(const uint8_t digest[32], char hex[65]);

/* ---- response headers ------------------------------------------------------------ */

enum { HUB_ETAG_MAX = 128, HUB_LINK_MAX = 2048 };

/* What a download needs from the headers of one redirect chain. A status line
 * starts a new response and clears the per-response fields; X-Linked-Etag is kept
 * across the chain because Hugging Face sends it on the redirect, not on the
 * CDN's final answer. */
typedef struct hub_headers {
    long status;
    char etag[HUB_ETAG_MAX];        /* this response's ETag, quotes and W/ removed */
    char linked_etag[HUB_ETAG_MAX]; /* the chain's first X-Linked-Etag, likewise */
    bool has_content_length;
    uint64_t content_length;
    bool has_content_range;   /* "bytes START-END/TOTAL" or "bytes * /TOTAL" */
    bool range_has_start;
    uint64_t range_start;
    bool range_total_known;
    uint64_t range_total;
    char next_link[HUB_LINK_MAX]; /* Link: <URL>; rel="next", else "" */
} hub_headers;

void hub_headers_init(hub_headers *h);
/* One header line as libcurl delivers it (CRLF optional, not NUL-terminated). */
void hub_headers_feed(hub_headers *h, const char *line, size_t len);
/* The SHA-256 the headers promise (linked ETag first), or NULL when neither is one. */
const char *hub_headers_sha256(const hub_headers *h);
bool hub_is_sha256_hex(const char *s);

/* ---- listing --------------------------------------------------------------------- */

/* Appends the .gguf files of one page of the tree API's JSON array to list. */
int hub_parse_listing(const char *json, size_t len, hub_file_list *list, el_err *err);
/* "name-00001-of-00003.gguf" */
bool hub_is_split_part(const char *path);
void hub_file_list_sort(hub_file_list *list);

/* ---- arguments -------------------------------------------------------------------- */

int hub_check_repo(const char *repo, el_err *err);
int hub_check_file(const char *file, el_err *err);
int hub_check_revision(const char *revision, el_err *err);
/* Percent-encodes everything but unreserved characters and, if keep_slash, '/'. */
int hub_url_escape(const char *in, bool keep_slash, char *out, size_t size, el_err *err);

#endif

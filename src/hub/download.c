/* Talking to the Hugging Face hub over libcurl: listing and downloading. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "hub/hub_internal.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define USER_AGENT "elliott-pull/1"

enum {
    URL_MAX = 4096,
    ENDPOINT_MAX = 1024,
    TOKEN_MAX = 4096,
    LISTING_MAX_BYTES = 64 << 20, /* a listing page is JSON of at most a few MB */
    LISTING_MAX_PAGES = 200,
    CONNECT_TIMEOUT_S = 30,
    STALL_TIMEOUT_S = 60, /* abort when less than a byte a second arrives for this long */
};

/* ---- shared setup ------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;

static void init_curl(void)
{
    curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int start_curl(el_err *err)
{
    pthread_once(&curl_once, init_curl);
    if (curl_init_code != CURLE_OK)
        return el_fail(err, "cannot initialise libcurl: %s", curl_easy_strerror(curl_init_code));
    return 0;
}

/* The endpoint without trailing slashes, checked to be an http(s) URL. */
static int resolve_endpoint(const hub_request *req, char *out, el_err *err)
{
    const char *e = req->endpoint;
    if (!e || !*e)
        e = getenv("HF_ENDPOINT");
    if (!e || !*e)
        e = DEFAULT_ENDPOINT;
    if (strncmp(e, "https://", 8) != 0 && strncmp(e, "http://", 7) != 0)
        return el_fail(err, "HF_ENDPOINT must start with https:// or http:// (got '%.100s')", e);
    size_t n = strlen(e);
    while (n > 0 && e[n - 1] == '/')
        n--;
    if (n >= ENDPOINT_MAX)
        return el_fail(err, "HF_ENDPOINT is too long");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)e[i] <= 0x20 || e[i] == 0x7f)
            return el_fail(err, "HF_ENDPOINT contains a space or control character");
    memcpy(out, e, n);
    out[n] = '\0';
    return 0;
}

/* Request headers, with the bearer token when there is one. The token is copied
 * into the list and wiped from our buffer; it is never printed. */
static int build_headers(const hub_request *req, struct curl_slist **out, bool *has_token, el_err *err)
{
    const char *token = req->token ? req->token : getenv("HF_TOKEN");
    *out = NULL;
    *has_token = token && *token;
    if (!*has_token)
        return 0;
    size_t n = strlen(token);
    if (n > TOKEN_MAX)
        return el_fail(err, "HF_TOKEN is too long");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)token[i] < 0x21 || token[i] == 0x7f)
            return el_fail(err, "HF_TOKEN contains a space or control character");
    char line[TOKEN_MAX + 32];
    snprintf(line, sizeof line, "Authorization: Bearer %s", token);
    *out = curl_slist_append(NULL, line);
    explicit_bzero(line, sizeof line);
    if (!*out)
        return el_fail(err, "out of memory");
    return 0;
}

static CURL *new_handle(const char *url, struct curl_slist *headers, char *errbuf, el_err *err)
{
    CURL *h = curl_easy_init();
    if (!h) {
        el_fail(err, "cannot create a libcurl handle");
        return NULL;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    /* The default, stated because it matters: the Authorization header goes to
     * the endpoint's host only, never to the host a redirect names (the CDN). */
    curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)STALL_TIMEOUT_S);
    if (headers)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    return h;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *user)
{
    hub_headers_feed(user, line, size * nmemb);
    return size * nmemb;
}

static int http_status_error(long status, const char *what, bool has_token, el_err *err)
{
    switch (status) {
    case 401:
        if (has_token)
            return el_fail(err, "401 Unauthorized for %s: the token in HF_TOKEN was refused "
                                "(Hugging Face also answers 401 for a repository that does not exist)",
                           what);
        return el_fail(err, "401 Unauthorized for %s: the repository is private, gated or does not "
                            "exist; set HF_TOKEN to a Hugging Face access token", what);
    case 403:
        return el_fail(err, "403 Forbidden for %s: %s", what,
                       has_token ? "this token has no access (for a gated model, accept its terms "
                                   "on the website with the token's account)"
                                 : "set HF_TOKEN to the token of an account with access");
    case 404:
        return el_fail(err, "404 Not Found: %s does not exist", what);
    case 429:
        return el_fail(err, "429 Too Many Requests for %s: rate-limited; try again later", what);
    default:
        if (status >= 500)
            return el_fail(err, "server error %ld for %s; try again later", status, what);
        return el_fail(err, "unexpected HTTP status %ld for %s", status, what);
    }
}

static int network_error(CURLcode rc, const char *errbuf, const char *url, el_err *err)
{
    return el_fail(err, "network error fetching %s: %s", url,
                   errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* ---- listing ------------------------------------------------------------------------- */

typedef struct body_buffer {
    char *data;
    size_t len, cap;
    bool too_big;
} body_buffer;

static size_t on_listing_body(char *data, size_t size, size_t nmemb, void *user)
{
    body_buffer *b = user;
    size_t n = size * nmemb;
    if (b->len + n > LISTING_MAX_BYTES) {
        b->too_big = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return 0;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return n;
}

/* Fetches one page; stores the next page's URL (or "") in next. */
static int fetch_listing_page(const char *url, struct curl_slist *headers, bool has_token,
                              const char *what, hub_file_list *list, char *next, el_err *err)
{
    char errbuf[CURL_ERROR_SIZE];
    CURL *h = new_handle(url, headers, errbuf, err);
    if (!h)
        return -1;
    body_buffer body = { 0 };
    hub_headers hdr;
    hub_headers_init(&hdr);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_listing_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hdr);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    int result;
    if (body.too_big)
        result = el_fail(err, "the file listing of %s is larger than %d MiB", what, LISTING_MAX_BYTES >> 20);
    else if (rc != CURLE_OK && (status == 0 || status == 200))
        result = network_error(rc, errbuf, url, err);
    else if (status != 200)
        result = http_status_error(status, what, has_token, err);
    else
        result = hub_parse_listing(body.data ? body.data : "", body.len, list, err);
    free(body.data);
    snprintf(next, URL_MAX, "%s", result == 0 ? hdr.next_link : "");
    return result;
}

int hub_list_gguf(const hub_request *req, hub_file_list *out, el_err *err)
{
    out->files = NULL;
    out->count = 0;
    const char *revision = req->revision ? req->revision : "main";
    char endpoint[ENDPOINT_MAX], rev_escaped[URL_MAX], url[URL_MAX], what[512];
    if (hub_check_repo(req->repo, err) < 0 || hub_check_revision(revision, err) < 0 ||
        resolve_endpoint(req, endpoint, err) < 0 || start_curl(err) < 0 ||
        hub_url_escape(revision, false, rev_escaped, sizeof rev_escaped, err) < 0)
        return -1;
    snprintf(what, sizeof what, "repository %s at revision %s", req->repo, revision);
    if ((size_t)snprintf(url, sizeof url, "%s/api/models/%s/tree/%s?recursive=true", endpoint,
                         req->repo, rev_escaped) >= sizeof url)
        return el_fail(err, "URL is too long");
    struct curl_slist *headers;
    bool has_token;
    if (build_headers(req, &headers, &has_token, err) < 0)
        return -1;
    int result = 0;
    for (int page = 0; url[0]; page++) {
        /* A Link to another host would carry the token there: refuse it. */
        if (page == LISTING_MAX_PAGES || strncmp(url, endpoint, strlen(endpoint)) != 0 ||
            (url[strlen(endpoint)] != '/' && url[strlen(endpoint)] != '\0')) {
            result = el_fail(err, "the listing of %s has too many pages or leads off %s", what, endpoint);
            break;
        }
        char next[URL_MAX];
        if ((result = fetch_listing_page(url, headers, has_token, what, out, next, err)) < 0)
            break;
        memcpy(url, next, sizeof url);
    }
    curl_slist_free_all(headers);
    if (result < 0) {
        hub_file_list_free(out);
        return -1;
    }
    hub_file_list_sort(out);
    return 0;
}

/* ---- files and directories ---------------------------------------------------------------- */

static int make_dirs(const char *dir, el_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return el_fail(err, "directory name is too long");
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return el_fail(err, "cannot create directory %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return el_fail(err, "cannot create directory %s: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return el_fail(err, "%s is not a directory", path);
    return 0;
}

int hub_default_dir(char *buf, size_t size, el_err *err)
{
    const char *models = getenv("ELLIOTT_MODELS");
    const char *cache = getenv("XDG_CACHE_HOME");
    int n;
    if (models && *models) {
        n = snprintf(buf, size, "%s", models);
    } else if (cache && cache[0] == '/') { /* the XDG spec ignores a relative path */
        n = snprintf(buf, size, "%s/elliott/models", cache);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home)
            return el_fail(err, "none of ELLIOTT_MODELS, XDG_CACHE_HOME and HOME is set; name a directory with -o");
        n = snprintf(buf, size, "%s/.cache/elliott/models", home);
    }
    if (n < 0 || (size_t)n >= size)
        return el_fail(err, "model directory name is too long");
    return 0;
}

static int write_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Hashes what an earlier attempt left, leaving the offset at its end. */
static int hash_existing(int fd, hub_sha256 *sha, uint64_t *size, el_err *err)
{
    enum { CHUNK = 1 << 20 };
    hub_sha256_init(sha);
    *size = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return el_fail(err, "cannot seek: %s", strerror(errno));
    char *buf = malloc(CHUNK);
    if (!buf)
        return el_fail(err, "out of memory");
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            if (r < 0)
                return el_fail(err, "cannot read the partial download: %s", strerror(errno));
            return 0;
        }
        hub_sha256_update(sha, buf, (size_t)r);
        *size += (uint64_t)r;
    }
}

static int truncate_part(int fd, hub_sha256 *sha, uint64_t *size, el_err *err)
{
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        return el_fail(err, "cannot truncate the partial download: %s", strerror(errno));
    hub_sha256_init(sha);
    *size = 0;
    return 0;
}

/* ---- one transfer -------------------------------------------------------------------------- */

typedef struct transfer {
    int fd;
    const char *dir;
    hub_sha256 sha;
    uint64_t on_disk;       /* bytes in the .part file, all of them hashed */
    uint64_t expected_size; /* of the whole file, 0 while unknown */
    hub_headers hdr;
    bool body_started;
    bool discard_body;      /* an error page */
    int write_errno;
    char fail[sizeof(el_err)]; /* why a callback stopped the transfer */
    hub_progress progress;
    hub_progress_fn progress_fn;
    void *progress_ctx;
} transfer;

static void report(transfer *t, bool finished)
{
    if (!t->progress_fn)
        return;
    t->progress.done = t->on_disk;
    t->progress.total = t->expected_size;
    t->progress.finished = finished;
    t->progress_fn(t->progress_ctx, &t->progress);
}

static int check_space(transfer *t)
{
    struct statvfs vfs;
    if (t->expected_size <= t->on_disk || statvfs(t->dir, &vfs) < 0)
        return 0;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t needed = t->expected_size - t->on_disk;
    if (free_bytes >= needed)
        return 0;
    snprintf(t->fail, sizeof t->fail,
             "not enough disk space in %.120s: %" PRIu64 " MB more needed, %" PRIu64 " MB free",
             t->dir, needed >> 20, free_bytes >> 20);
    return -1;
}

/* The first body bytes of the final response decide what happens to the .part file:
 * 206 continues it, 200 starts it over (the server ignored the range). */
static int begin_body(transfer *t)
{
    long status = t->hdr.status;
    if (status == 206) {
        if (!t->hdr.has_content_range || !t->hdr.range_has_start || t->hdr.range_start != t->on_disk) {
            snprintf(t->fail, sizeof t->fail, "the server sent a different byte range than asked for");
            return -1;
        }
        t->expected_size = t->hdr.range_total_known ? t->hdr.range_total : 0;
    } else if (status == 200) {
        if (t->on_disk > 0) {
            el_err e;
            if (truncate_part(t->fd, &t->sha, &t->on_disk, &e) < 0) {
                snprintf(t->fail, sizeof t->fail, "%s", e.msg);
                return -1;
            }
        }
        t->expected_size = t->hdr.has_content_length ? t->hdr.content_length : 0;
    } else {
        t->discard_body = true;
        return 0;
    }
    t->progress.resumed_from = t->on_disk;
    return check_space(t);
}

static size_t on_file_body(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    if (!t->body_started) {
        t->body_started = true;
        if (begin_body(t) < 0)
            return 0;
    }
    if (t->discard_body)
        return n;
    if (write_all(t->fd, data, n) < 0) {
        t->write_errno = errno;
        return 0;
    }
    hub_sha256_update(&t->sha, data, n);
    t->on_disk += n;
    report(t, false);
    return n;
}

static CURLcode perform_transfer(CURL *h, transfer *t)
{
    char range[32];
    hub_headers_init(&t->hdr);
    t->body_started = t->discard_body = false;
    t->fail[0] = '\0';
    t->write_errno = 0;
    t->progress.resumed_from = t->on_disk;
    if (t->on_disk > 0) {
        snprintf(range, sizeof range, "%" PRIu64 "-", t->on_disk);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    } else {
        curl_easy_setopt(h, CURLOPT_RANGE, NULL);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_file_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t->hdr);
    return curl_easy_perform(h);
}

/* ---- finishing -------------------------------------------------------------------------------- */

static bool is_gguf_file(const char *path, el_err *err)
{
    char magic[4];
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof magic || memcmp(magic, "GGUF", 4) != 0) {
        el_fail(err, "the downloaded file is not GGUF (it does not begin with the GGUF magic)");
        return false;
    }
    gguf_file *g = gguf_open(path, err);
    if (!g) {
        el_wrap(err, "the downloaded file does not open as GGUF");
        return false;
    }
    gguf_close(g);
    return true;
}

/* Checksum, format, then the rename that makes the file visible under its name. */
static int finish_file(transfer *t, const char *part, const char *final_path, const char *file,
                       hub_result *res, el_err *err)
{
    uint8_t digest[32];
    hub_sha256_final(&t->sha, digest);
    hub_sha256_hex(digest, res->sha256);
    res->size = t->on_disk;
    const char *expected = hub_headers_sha256(&t->hdr);
    if (expected && strcasecmp(expected, res->sha256) != 0) {
        unlink(part);
        return el_fail(err, "checksum mismatch for %s: the server published sha256 %s but the "
                            "download has %s; the download was removed",
                       file, expected, res->sha256);
    }
    res->verified = expected != NULL;
    if (fsync(t->fd) < 0)
        return el_fail(err, "cannot write %s: %s", part, strerror(errno));
    if (!is_gguf_file(part, err)) {
        unlink(part);
        return el_wrap(err, "%s", file);
    }
    if (rename(part, final_path) < 0)
        return el_fail(err, "cannot rename %s to %s: %s", part, final_path, strerror(errno));
    return 0;
}

static int write_failure(const transfer *t, const char *part, el_err *err)
{
    if (t->write_errno == ENOSPC || t->write_errno == EDQUOT)
        return el_fail(err, "disk full while writing %s (%" PRIu64 " bytes kept); free some space "
                            "and run the command again to resume", part, t->on_disk);
    return el_fail(err, "cannot write %s: %s", part, strerror(t->write_errno));
}

/* 416: what we have reaches the end of the file already. It is accepted when it
 * matches the published checksum or, without one, the published size. */
static bool part_is_complete(const transfer *t)
{
    const char *expected = hub_headers_sha256(&t->hdr);
    if (expected) {
        hub_sha256 copy = t->sha;
        uint8_t digest[32];
        char hex[65];
        hub_sha256_final(&copy, digest);
        hub_sha256_hex(digest, hex);
        return strcasecmp(expected, hex) == 0;
    }
    return t->hdr.range_total_known && t->hdr.range_total == t->on_disk;
}

typedef struct paths {
    char url[URL_MAX];
    char final_path[4096];
    char part[4096 + 8];
    char what[1400];
} paths;

static int build_paths(const hub_request *req, const char *endpoint, const char *revision,
                       paths *p, el_err *err)
{
    char rev_escaped[URL_MAX], file_escaped[URL_MAX];
    if (hub_url_escape(revision, false, rev_escaped, sizeof rev_escaped, err) < 0 ||
        hub_url_escape(req->file, true, file_escaped, sizeof file_escaped, err) < 0)
        return -1;
    if ((size_t)snprintf(p->url, sizeof p->url, "%s/%s/resolve/%s/%s", endpoint, req->repo,
                         rev_escaped, file_escaped) >= sizeof p->url)
        return el_fail(err, "URL is too long");
    const char *base = strrchr(req->file, '/');
    base = base ? base + 1 : req->file;
    if ((size_t)snprintf(p->final_path, sizeof p->final_path, "%s/%s", req->dest_dir, base) >=
        sizeof p->final_path)
        return el_fail(err, "destination path is too long");
    snprintf(p->part, sizeof p->part, "%s.part", p->final_path);
    snprintf(p->what, sizeof p->what, "file %s in repository %s at revision %s", req->file,
             req->repo, revision);
    return 0;
}

static int open_part(const char *part, el_err *err)
{
    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return el_fail(err, "cannot open %s: %s", part, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return el_fail(err, "another download of %s is running", part);
    }
    return fd;
}

/* Runs the request, once more from zero if a 416 shows the partial file is wrong. */
static int run_download(CURL *h, transfer *t, const paths *p, const char *file, bool has_token,
                        const char *errbuf, hub_result *res, el_err *err)
{
    for (int attempt = 0;; attempt++) {
        CURLcode rc = perform_transfer(h, t);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->http_status);
        long status = res->http_status;
        report(t, true);
        if (t->write_errno)
            return write_failure(t, p->part, err);
        if (t->fail[0])
            return el_fail(err, "%s", t->fail);
        if (rc != CURLE_OK && (status == 0 || status == 200 || status == 206)) {
            res->retryable = true;
            network_error(rc, errbuf, p->url, err);
            return t->on_disk ? el_wrap(err, "%" PRIu64 " bytes kept in %s, run again to resume",
                                        t->on_disk, p->part)
                              : -1;
        }
        if (status == 416 && part_is_complete(t))
            return finish_file(t, p->part, p->final_path, file, res, err);
        if (status == 416 && attempt == 0) {
            if (truncate_part(t->fd, &t->sha, &t->on_disk, err) < 0)
                return -1;
            continue;
        }
        if (status != 200 && status != 206) {
            res->retryable = status >= 500;
            return http_status_error(status, p->what, has_token, err);
        }
        if (t->expected_size && t->on_disk != t->expected_size) {
            res->retryable = true;
            return el_fail(err, "the download of %s ended early: %" PRIu64 " of %" PRIu64
                                " bytes; run again to resume", file, t->on_disk, t->expected_size);
        }
        return finish_file(t, p->part, p->final_path, file, res, err);
    }
}

int hub_download(const hub_request *req, hub_progress_fn progress, void *ctx, hub_result *res,
                 el_err *err)
{
    memset(res, 0, sizeof *res);
    const char *revision = req->revision ? req->revision : "main";
    char endpoint[ENDPOINT_MAX];
    paths *p = calloc(1, sizeof *p);
    if (!p)
        return el_fail(err, "out of memory");
    int result = -1;
    int fd = -1;
    struct curl_slist *headers = NULL;
    bool has_token = false;
    CURL *h = NULL;
    char errbuf[CURL_ERROR_SIZE];
    if (hub_check_repo(req->repo, err) < 0 || hub_check_file(req->file, err) < 0 ||
        hub_check_revision(revision, err) < 0 || resolve_endpoint(req, endpoint, err) < 0)
        goto done;
    if (!req->dest_dir || !*req->dest_dir) {
        el_fail(err, "no destination directory");
        goto done;
    }
    if (build_paths(req, endpoint, revision, p, err) < 0 || make_dirs(req->dest_dir, err) < 0)
        goto done;
    snprintf(res->path, sizeof res->path, "%s", p->final_path);
    if (access(p->final_path, F_OK) == 0) {
        res->already_there = true;
        result = 0;
        goto done;
    }
    if (start_curl(err) < 0 || build_headers(req, &headers, &has_token, err) < 0)
        goto done;
    if ((fd = open_part(p->part, err)) < 0)
        goto done;
    transfer *t = calloc(1, sizeof *t);
    if (!t) {
        el_fail(err, "out of memory");
        goto done;
    }
    t->fd = fd;
    t->dir = req->dest_dir;
    t->progress_fn = progress;
    t->progress_ctx = ctx;
    if (hash_existing(fd, &t->sha, &t->on_disk, err) == 0 &&
        (h = new_handle(p->url, headers, errbuf, err)) != NULL)
        result = run_download(h, t, p, req->file, has_token, errbuf, res, err);
    bool nothing_kept = t->on_disk == 0;
    free(t);
    if (result < 0 && nothing_kept)
        unlink(p->part);
done:
    if (h)
        curl_easy_cleanup(h);
    if (fd >= 0)
        close(fd);
    curl_slist_free_all(headers);
    free(p);
    return result;
}

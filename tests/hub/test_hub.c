#include <stdint.h>
#include <sys/stat.h>

#include "base/rng.h"
#include "hub/hub.h"
#include "hub/hub_internal.h"
#include "test.h"

/* ---- SHA-256 ------------------------------------------------------------------------ */

static void sha_hex_of(const void *data, size_t len, char hex[65])
{
    hub_sha256 ctx;
    uint8_t digest[32];
    hub_sha256_init(&ctx);
    hub_sha256_update(&ctx, data, len);
    hub_sha256_final(&ctx, digest);
    hub_sha256_hex(digest, hex);
}

static void check_sha(const char *msg, const char *expected)
{
    char hex[65];
    sha_hex_of(msg, strlen(msg), hex);
    CHECKF(strcmp(hex, expected) == 0, "sha256(\"%.20s...\") = %s", msg, hex);
}

/* FIPS 180-4 examples (via the NIST example values and the SHA-2 test vectors). */
static void test_sha256_vectors(void)
{
    check_sha("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check_sha("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
              "klmnopqrlmnopqrsmnopqrstnopqrstu",
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* One million 'a', fed in uneven pieces. */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    hub_sha256 ctx;
    uint8_t digest[32];
    char hex[65];
    hub_sha256_init(&ctx);
    for (size_t off = 0, step = 1; off < sizeof a; off += step, step = step * 3 % 9973 + 1)
        hub_sha256_update(&ctx, a + off, off + step <= sizeof a ? step : sizeof a - off);
    hub_sha256_final(&ctx, digest);
    hub_sha256_hex(digest, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

/* Lengths around the padding boundaries (55/56 bytes: the length field fits or not). */
static void test_sha256_padding_boundaries(void)
{
    static const struct { size_t n; const char *hex; } cases[] = {
        { 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
        { 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
        { 57, "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6" },
        { 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
        { 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
        { 65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0" },
        { 119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb" },
        { 120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c" },
    };
    char buf[128], hex[65];
    memset(buf, 'a', sizeof buf);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sha_hex_of(buf, cases[i].n, hex);
        CHECKF(strcmp(hex, cases[i].hex) == 0, "length %zu", cases[i].n);
    }
}

static void test_sha256_incremental_equals_one_shot(void)
{
    enum { N = 10000 };
    static uint8_t data[N];
    el_rng rng;
    el_rng_seed(&rng, 5);
    for (int i = 0; i < N; i++)
        data[i] = (uint8_t)el_rng_next(&rng);
    char whole[65], pieces[65];
    sha_hex_of(data, N, whole);
    static const size_t steps[] = { 1, 7, 63, 64, 65, 128, 1000, 4099 };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        hub_sha256 ctx;
        uint8_t digest[32];
        hub_sha256_init(&ctx);
        for (size_t off = 0; off < N; off += steps[s])
            hub_sha256_update(&ctx, data + off, off + steps[s] <= N ? steps[s] : N - off);
        hub_sha256_final(&ctx, digest);
        hub_sha256_hex(digest, pieces);
        CHECKF(strcmp(whole, pieces) == 0, "pieces of %zu", steps[s]);
    }
    /* A copied context finishes the same as the original (used for the 416 check). */
    hub_sha256 a, b;
    uint8_t da[32], db[32];
    hub_sha256_init(&a);
    hub_sha256_update(&a, data, 100);
    b = a;
    hub_sha256_final(&a, da);
    hub_sha256_final(&b, db);
    CHECK(memcmp(da, db, 32) == 0);
}

/* ---- headers ------------------------------------------------------------------------------ */

static void feed(hub_headers *h, const char *line)
{
    hub_headers_feed(h, line, strlen(line));
}

#define SHA_A "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_headers_redirect_chain(void)
{
    hub_headers h;
    hub_headers_init(&h);
    feed(&h, "HTTP/1.1 302 Found\r\n");
    feed(&h, "X-Linked-Etag: \"" SHA_A "\"\r\n");
    feed(&h, "ETag: W/\"1234abcd\"\r\n");
    feed(&h, "Location: https://cdn.example/x\r\n");
    feed(&h, "\r\n");
    CHECK_EQ_INT(h.status, 302);
    CHECK(strcmp(h.etag, "1234abcd") == 0);
    feed(&h, "HTTP/2 206 \r\n");
    feed(&h, "content-range: bytes 100-199/1000\r\n");
    feed(&h, "CONTENT-LENGTH:   100  \r\n");
    feed(&h, "etag: \"cdn-etag\"\r\n");
    feed(&h, "x-linked-etag: \"ffff\"\r\n"); /* the chain's first one stays */
    CHECK_EQ_INT(h.status, 206);
    CHECK(strcmp(h.etag, "cdn-etag") == 0);
    CHECK(strcmp(h.linked_etag, SHA_A) == 0);
    CHECK(h.has_content_length && h.content_length == 100);
    CHECK(h.has_content_range && h.range_has_start && h.range_start == 100);
    CHECK(h.range_total_known && h.range_total == 1000);
    CHECK(hub_headers_sha256(&h) && strcmp(hub_headers_sha256(&h), SHA_A) == 0);
}

static void test_headers_details(void)
{
    hub_headers h;
    hub_headers_init(&h);
    feed(&h, "HTTP/1.1 416 Range Not Satisfiable");
    feed(&h, "Content-Range: bytes */5000");
    CHECK_EQ_INT(h.status, 416);
    CHECK(h.has_content_range && !h.range_has_start && h.range_total_known && h.range_total == 5000);
    CHECK(hub_headers_sha256(&h) == NULL);

    /* A 64-hex ETag counts when no linked one came. */
    hub_headers_init(&h);
    feed(&h, "HTTP/1.1 200 OK");
    feed(&h, "ETag: \"" SHA_A "\"");
    CHECK(hub_headers_sha256(&h) != NULL);
    /* 40-hex (a git blob id) does not. */
    hub_headers_init(&h);
    feed(&h, "ETag: \"da39a3ee5e6b4b0d3255bfef95601890afd80709\"");
    CHECK(hub_headers_sha256(&h) == NULL);

    hub_headers_init(&h);
    feed(&h, "Content-Length: 12a");
    CHECK(!h.has_content_length);
    feed(&h, "Content-Length: 99999999999999999999999");
    CHECK(!h.has_content_length);
    feed(&h, "Content-Range: items 1-2/3");
    CHECK(!h.has_content_range);
    feed(&h, "Content-Range: bytes 5-9/*");
    CHECK(h.has_content_range && h.range_start == 5 && !h.range_total_known);
    feed(&h, "no colon here");
    feed(&h, "HTTP/1.1 abc");
    char long_etag[400] = "ETag: \"";
    memset(long_etag + 7, 'x', 300);
    feed(&h, long_etag);
    CHECK(h.etag[0] == '\0');

    CHECK(hub_is_sha256_hex(SHA_A));
    CHECK(!hub_is_sha256_hex(SHA_A "0"));
    CHECK(!hub_is_sha256_hex("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK(!hub_is_sha256_hex(""));
}

static void test_headers_link(void)
{
    hub_headers h;
    hub_headers_init(&h);
    feed(&h, "Link: <https://hf.co/api/models/a/b/tree/main?cursor=x1>; rel=\"prev\", "
             "<https://hf.co/api/models/a/b/tree/main?cursor=x2>; rel=\"next\"\r\n");
    CHECK(strcmp(h.next_link, "https://hf.co/api/models/a/b/tree/main?cursor=x2") == 0);
    hub_headers_init(&h);
    feed(&h, "Link: <https://hf.co/x>; rel=\"prev\"");
    CHECK(h.next_link[0] == '\0');
    feed(&h, "Link: <https://hf.co/unterminated; rel=\"next\"");
    CHECK(h.next_link[0] == '\0');
    /* A new response forgets the previous one's link. */
    feed(&h, "Link: <https://hf.co/n>; rel=next");
    CHECK(strcmp(h.next_link, "https://hf.co/n") == 0);
    feed(&h, "HTTP/1.1 200 OK");
    CHECK(h.next_link[0] == '\0');
}

/* ---- listing and choice --------------------------------------------------------------------- */

static const char *LISTING =
    "[{\"type\":\"directory\",\"path\":\"docs\",\"oid\":\"0\",\"size\":0},"
    " {\"type\":\"file\",\"path\":\"README.md\",\"size\":10},"
    " {\"type\":\"file\",\"path\":\"m-Q8_0.gguf\",\"size\":135,\"lfs\":{\"oid\":\"x\",\"size\":8000000000}},"
    " {\"type\":\"file\",\"path\":\"sub/m-Q4_K_M.gguf\",\"size\":135,\"lfs\":{\"size\":4000000000}},"
    " {\"type\":\"file\",\"path\":\"m-Q4_0.GGUF\",\"size\":4500000000},"
    " {\"type\":\"file\",\"path\":\"big-00001-of-00002.gguf\",\"size\":1},"
    " {\"type\":\"file\",\"path\":\"../evil.gguf\",\"size\":1},"
    " {\"type\":\"file\",\"path\":\"noext\",\"size\":1},"
    " {\"type\":\"file\",\"size\":1},"
    " 17]";

static void test_parse_listing(void)
{
    hub_file_list list = { 0 };
    el_err err;
    CHECK(hub_parse_listing(LISTING, strlen(LISTING), &list, &err) == 0);
    CHECK_EQ_INT(list.count, 3);
    hub_file_list_sort(&list);
    if (list.count == 3) {
        CHECK(strcmp(list.files[0].path, "m-Q4_0.GGUF") == 0 && list.files[0].size == 4500000000ull);
        CHECK(strcmp(list.files[1].path, "m-Q8_0.gguf") == 0 && list.files[1].size == 8000000000ull);
        CHECK(strcmp(list.files[2].path, "sub/m-Q4_K_M.gguf") == 0);
    }
    const hub_file *f = hub_choose_default(&list, &err);
    CHECK(f && strcmp(f->path, "sub/m-Q4_K_M.gguf") == 0);
    hub_file_list_free(&list);
    CHECK(list.count == 0 && list.files == NULL);

    CHECK(hub_parse_listing("{\"a\":1}", 7, &list, &err) == -1);
    CHECK(strstr(err.msg, "not a JSON array") != NULL);
    CHECK(hub_parse_listing("[1,", 3, &list, &err) == -1);
    CHECK(strstr(err.msg, "not valid JSON") != NULL);
    CHECK(hub_parse_listing("[]", 2, &list, &err) == 0 && list.count == 0);
}

static void make_list(hub_file_list *list, const char *const *paths, const uint64_t *sizes, size_t n)
{
    list->files = calloc(n, sizeof *list->files);
    list->count = n;
    for (size_t i = 0; i < n; i++)
        list->files[i] = (hub_file){ strdup(paths[i]), sizes[i] };
}

static const char *chosen(const char *const *paths, const uint64_t *sizes, size_t n, char *msg)
{
    static char path[256];
    hub_file_list list;
    el_err err = { { 0 } };
    make_list(&list, paths, sizes, n);
    const hub_file *f = hub_choose_default(&list, &err);
    snprintf(path, sizeof path, "%s", f ? f->path : "");
    snprintf(msg, sizeof err.msg, "%s", err.msg);
    hub_file_list_free(&list);
    return f ? path : NULL;
}

static void test_choose_default(void)
{
    char msg[sizeof(el_err)];
    const char *one[] = { "only-F16.gguf" };
    const uint64_t one_size[] = { 9 };
    CHECK(strcmp(chosen(one, one_size, 1, msg), "only-F16.gguf") == 0);

    const char *q40[] = { "m-Q4_0_4_4.gguf", "m-q4_0.gguf", "m-Q8_0.gguf" };
    const uint64_t q40_sizes[] = { 1, 5, 3 };
    CHECK(strcmp(chosen(q40, q40_sizes, 3, msg), "m-q4_0.gguf") == 0); /* not Q4_0_4_4 */

    const char *mixed[] = { "m-Q4_0.gguf", "m-Q4_K_M.gguf", "m-Q4_K_S.gguf" };
    const uint64_t mixed_sizes[] = { 1, 2, 3 };
    CHECK(strcmp(chosen(mixed, mixed_sizes, 3, msg), "m-Q4_K_M.gguf") == 0);

    const char *none[] = { "m-F16.gguf", "m-Q8_0.gguf", "m-Q6_K.gguf" };
    const uint64_t none_sizes[] = { 16, 8, 6 };
    CHECK(strcmp(chosen(none, none_sizes, 3, msg), "m-Q6_K.gguf") == 0);

    const char *two[] = { "a-Q4_K_M.gguf", "b-Q4_K_M.gguf" };
    const uint64_t two_sizes[] = { 1, 2 };
    CHECK(chosen(two, two_sizes, 2, msg) == NULL);
    CHECK(strstr(msg, "2 files are Q4_K_M") && strstr(msg, "a-Q4_K_M.gguf, b-Q4_K_M.gguf"));

    const uint64_t tie_sizes[] = { 8, 8, 9 };
    CHECK(chosen(none, tie_sizes, 3, msg) == NULL);
    CHECK(strstr(msg, "name one of") != NULL);

    hub_file_list empty = { 0 };
    el_err err;
    CHECK(hub_choose_default(&empty, &err) == NULL);
    CHECK(strstr(err.msg, "no .gguf") != NULL);
}

static void test_split_parts(void)
{
    CHECK(hub_is_split_part("m-00001-of-00003.gguf"));
    CHECK(hub_is_split_part("dir/m-Q4_K_M-00002-of-00002.GGUF"));
    CHECK(!hub_is_split_part("m-00001-of-0003.gguf"));
    CHECK(!hub_is_split_part("m-00001_of-00003.gguf"));
    CHECK(!hub_is_split_part("m-Q4_K_M.gguf"));
    CHECK(!hub_is_split_part("00001-of-00003.gguf"));
}

/* ---- names and URLs ------------------------------------------------------------------------- */

static void test_name_checks(void)
{
    el_err err;
    CHECK(hub_check_repo("google/gemma-7b-it-GGUF", &err) == 0);
    CHECK(hub_check_repo("a.b_c/x-1.2", &err) == 0);
    CHECK(hub_check_repo("noslash", &err) == -1 && strstr(err.msg, "OWNER/NAME"));
    CHECK(hub_check_repo("a/b/c", &err) == -1);
    CHECK(hub_check_repo("/b", &err) == -1);
    CHECK(hub_check_repo("a/", &err) == -1);
    CHECK(hub_check_repo("a/b c", &err) == -1 && strstr(err.msg, "' '"));
    CHECK(hub_check_repo("a/..", &err) == -1);
    CHECK(hub_check_repo("a/b?x", &err) == -1);
    CHECK(hub_check_repo(NULL, &err) == -1);

    CHECK(hub_check_file("gemma-7b-it.gguf", &err) == 0);
    CHECK(hub_check_file("Q4_K_M/model part.gguf", &err) == 0);
    CHECK(hub_check_file("../x.gguf", &err) == -1 && strstr(err.msg, "'..'"));
    CHECK(hub_check_file("a/../x.gguf", &err) == -1);
    CHECK(hub_check_file("a//x.gguf", &err) == -1);
    CHECK(hub_check_file("/etc/passwd", &err) == -1);
    CHECK(hub_check_file("a\\b.gguf", &err) == -1);
    CHECK(hub_check_file("x\n.gguf", &err) == -1);
    CHECK(hub_check_file(".hidden.gguf", &err) == -1);
    CHECK(hub_check_file("", &err) == -1);
    /* A trailing '/' names no file (found by fuzz_hub). */
    CHECK(hub_check_file("sub/dir/", &err) == -1 && strstr(err.msg, "empty"));
    CHECK(hub_check_file("x.gguf/", &err) == -1);

    CHECK(hub_check_revision("main", &err) == 0);
    CHECK(hub_check_revision("refs/pr/1", &err) == 0);
    CHECK(hub_check_revision("a..b", &err) == -1);
    CHECK(hub_check_revision("x\ry", &err) == -1);
    CHECK(hub_check_revision("", &err) == -1);
}

static void test_url_escape(void)
{
    char out[64];
    el_err err;
    CHECK(hub_url_escape("refs/pr/1", false, out, sizeof out, &err) == 0);
    CHECK(strcmp(out, "refs%2Fpr%2F1") == 0);
    CHECK(hub_url_escape("dir/a b+c~.gguf", true, out, sizeof out, &err) == 0);
    CHECK(strcmp(out, "dir/a%20b%2Bc~.gguf") == 0);
    CHECK(hub_url_escape("\xc3\xa9", true, out, sizeof out, &err) == 0);
    CHECK(strcmp(out, "%C3%A9") == 0);
    CHECK(hub_url_escape("abcdef", true, out, 6, &err) == -1);
    CHECK(hub_url_escape("abcde", true, out, 6, &err) == 0);
    CHECK(hub_url_escape(" ", true, out, 3, &err) == -1);
}

/* ---- downloading, without a network -------------------------------------------------------- */

static void test_default_dir(void)
{
    char buf[256];
    el_err err;
    setenv("ELLIOTT_MODELS", "/models/here", 1);
    CHECK(hub_default_dir(buf, sizeof buf, &err) == 0 && strcmp(buf, "/models/here") == 0);
    unsetenv("ELLIOTT_MODELS");
    setenv("XDG_CACHE_HOME", "/var/cache/someone", 1);
    CHECK(hub_default_dir(buf, sizeof buf, &err) == 0 && strcmp(buf, "/var/cache/someone/elliott/models") == 0);
    setenv("XDG_CACHE_HOME", "relative", 1); /* not absolute: ignored, as the XDG spec says */
    setenv("HOME", "/home/someone", 1);
    CHECK(hub_default_dir(buf, sizeof buf, &err) == 0);
    CHECK(strcmp(buf, "/home/someone/.cache/elliott/models") == 0);
    unsetenv("XDG_CACHE_HOME");
    CHECK(hub_default_dir(buf, sizeof buf, &err) == 0);
    CHECK(strcmp(buf, "/home/someone/.cache/elliott/models") == 0);
    CHECK(hub_default_dir(buf, 10, &err) == -1);
    unsetenv("HOME");
    CHECK(hub_default_dir(buf, sizeof buf, &err) == -1 && strstr(err.msg, "-o"));
}

static void test_download_rejects_bad_requests(void)
{
    hub_result res;
    el_err err;
    hub_request req = { .endpoint = "http://127.0.0.1:1", .token = "", .repo = "a/b",
                        .file = "x.gguf", .dest_dir = "/tmp" };
    req.repo = "bad";
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == -1 && strstr(err.msg, "OWNER/NAME"));
    req.repo = "a/b";
    req.file = "../x.gguf";
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == -1);
    req.file = "x.gguf";
    req.endpoint = "file:///etc";
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == -1 && strstr(err.msg, "HF_ENDPOINT"));
    req.endpoint = "http://127.0.0.1:1";
    req.token = "bad token";
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == -1 && strstr(err.msg, "HF_TOKEN"));
    CHECK(strstr(err.msg, "bad token") == NULL); /* never echoed */
    req.token = "";
    req.dest_dir = NULL;
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == -1);
    hub_file_list list;
    req.revision = "..";
    CHECK(hub_list_gguf(&req, &list, &err) == -1 && strstr(err.msg, "revision"));
}

static void test_download_keeps_an_existing_file(void)
{
    char dir[] = "/tmp/elliott-hub-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/have.gguf", dir);
    FILE *f = fopen(path, "w");
    fputs("GGUF", f);
    fclose(f);
    /* The endpoint is a closed port: success proves nothing was fetched. */
    hub_request req = { .endpoint = "http://127.0.0.1:1", .token = "", .repo = "a/b",
                        .file = "sub/have.gguf", .dest_dir = dir };
    hub_result res;
    el_err err;
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == 0);
    CHECK(res.already_there && strcmp(res.path, path) == 0);
    /* Connection refused: a retryable network error, and no .part left behind. */
    req.file = "missing.gguf";
    CHECK(hub_download(&req, NULL, NULL, &res, &err) == -1);
    CHECKF(res.retryable && strstr(err.msg, "network error"), "%s", err.msg);
    char part[160];
    snprintf(part, sizeof part, "%s/missing.gguf.part", dir);
    CHECK(access(part, F_OK) != 0);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    RUN(test_sha256_vectors);
    RUN(test_sha256_padding_boundaries);
    RUN(test_sha256_incremental_equals_one_shot);
    RUN(test_headers_redirect_chain);
    RUN(test_headers_details);
    RUN(test_headers_link);
    RUN(test_parse_listing);
    RUN(test_choose_default);
    RUN(test_split_parts);
    RUN(test_name_checks);
    RUN(test_url_escape);
    RUN(test_default_dir);
    RUN(test_download_rejects_bad_requests);
    RUN(test_download_keeps_an_existing_file);
    return test_summary();
}

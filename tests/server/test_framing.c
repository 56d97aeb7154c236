/* Request framing checks: raw request targets and header sets that a proxy in
 * front could read differently from the server. */
#include <string.h>

#include "server/server_internal.h"
#include "test.h"

static void test_targets(void)
{
    CHECK(framing_check_target("/v1/chat/completions") == NULL);
    CHECK(framing_check_target("/v1/models/elliott-1?x=%2F&y=a%20b") == NULL);
    CHECK(framing_check_target("/health%20") == NULL);
    CHECK(framing_check_target("/v1/chat/completions%00") != NULL);
    CHECK(framing_check_target("/v1%2Fchat/completions") != NULL);
    CHECK(framing_check_target("/v1%2fchat") != NULL);
    CHECK(framing_check_target("/v1%5cchat") != NULL);
    CHECK(framing_check_target("/a?q=%00") != NULL);
    CHECK(framing_check_target("/a%zz") != NULL);
    CHECK(framing_check_target("/a%4") != NULL);
    CHECK(framing_check_target("/a b") != NULL);
    CHECK(framing_check_target("/a\tb") != NULL);
    CHECK(framing_check_target("/caf\xc3\xa9") != NULL);
    CHECK(framing_check_target("*") != NULL);
    CHECK(framing_check_target("http://example.com/") != NULL);
    CHECK(framing_check_target("") != NULL);
}

typedef struct header {
    const char *name, *value;
} header;

/* The verdict on a head made of n headers: 0, 400 or 501. */
static int verdict(const header *h, size_t n, bool http_1_1)
{
    framing_scan f;
    memset(&f, 0, sizeof f);
    for (size_t i = 0; i < n; i++)
        framing_note_header(&f, h[i].name, strlen(h[i].name), h[i].value, strlen(h[i].value));
    framing_verdict(&f, http_1_1);
    if (f.status)
        CHECK(f.why && *f.why);
    return f.status;
}

static void test_headers(void)
{
    header ok[] = {{"Host", "x"}, {"Content-Length", "38"}, {"Content-Type", "application/json"}};
    CHECK_EQ_INT(verdict(ok, 3, true), 0);
    header chunked[] = {{"Host", "x"}, {"Transfer-Encoding", "Chunked"}};
    CHECK_EQ_INT(verdict(chunked, 2, true), 0);
    header two_lengths[] = {{"Host", "x"}, {"Content-Length", "38"}, {"content-length", "10"}};
    CHECK_EQ_INT(verdict(two_lengths, 3, true), 400);
    header same_twice[] = {{"Host", "x"}, {"Content-Length", "38"}, {"Content-Length", "38"}};
    CHECK_EQ_INT(verdict(same_twice, 3, true), 400);
    header both[] = {{"Host", "x"}, {"Content-Length", "38"}, {"Transfer-Encoding", "chunked"}};
    CHECK_EQ_INT(verdict(both, 3, true), 400);
    header gzip[] = {{"Host", "x"}, {"Transfer-Encoding", "gzip"}};
    CHECK_EQ_INT(verdict(gzip, 2, true), 501);
    header gzip_chunked[] = {{"Host", "x"}, {"Transfer-Encoding", "gzip, chunked"}};
    CHECK_EQ_INT(verdict(gzip_chunked, 2, true), 501);
    header two_codings[] = {{"Host", "x"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}};
    CHECK_EQ_INT(verdict(two_codings, 3, true), 400);
    header no_host[] = {{"Accept", "*/*"}};
    CHECK_EQ_INT(verdict(no_host, 1, true), 400);
    CHECK_EQ_INT(verdict(no_host, 1, false), 0);
    header two_hosts[] = {{"Host", "a"}, {"Host", "b"}};
    CHECK_EQ_INT(verdict(two_hosts, 2, false), 400);
    header bare_cr[] = {{"Host", "x"}, {"X-A", "a\rb"}};
    CHECK_EQ_INT(verdict(bare_cr, 2, true), 400);
    header control[] = {{"Host", "x"}, {"X-A", "a\x01"}};
    CHECK_EQ_INT(verdict(control, 2, true), 400);
    header tab_ok[] = {{"Host", "x"}, {"X-A", "a\tb \xc3\xa9"}};
    CHECK_EQ_INT(verdict(tab_ok, 2, true), 0);
    header bad_name[] = {{"Host", "x"}, {"X A", "a"}};
    CHECK_EQ_INT(verdict(bad_name, 2, true), 400);
    header empty_name[] = {{"Host", "x"}, {"", "a"}};
    CHECK_EQ_INT(verdict(empty_name, 2, true), 400);

    /* A value the parser cut at a NUL is seen through its length. */
    framing_scan f;
    memset(&f, 0, sizeof f);
    framing_note_header(&f, "X-A", 3, "a\0b", 3);
    framing_verdict(&f, false);
    CHECK_EQ_INT(f.status, 400);
}

int main(void)
{
    RUN(test_targets);
    RUN(test_headers);
    return test_summary();
}

/* Allocation-failure loop: every allocation the project makes goes through the
 * wrappers below (the binary is linked with -Wl,--wrap=malloc,...; the Makefile's
 * check-alloc), which fail the Nth one. Each operation runs with N = 1, 2, ...
 * until it succeeds without a failure injected: every failure before that must be
 * a clean error return, with no crash (the sanitizer build catches bad accesses)
 * and no block left behind (counted here, so that a plain build checks it too).
 *
 * Allocations inside the C library itself (fopen, pthread_create) are not the
 * project's and are not counted. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "server/server_internal.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void __wrap_free(void *p);

static atomic_long n_allocs;  /* allocations asked for since the countdown was set */
static atomic_long fail_at;   /* the one to fail (1-based); 0: none */
static atomic_long n_failed;  /* failures injected */
static atomic_long live;      /* blocks allocated and not freed */

static bool should_fail(void)
{
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    if (k != atomic_load(&fail_at))
        return false;
    atomic_fetch_add(&n_failed, 1);
    return true;
}

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : counted(__real_malloc(n)); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail() ? NULL : counted(__real_calloc(n, size)); }
void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return should_fail() ? NULL : counted(__real_aligned_alloc(align, n));
}
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : counted(__real_strdup(s)); }
char *__wrap_strndup(const char *s, size_t n) { return should_fail() ? NULL : counted(__real_strndup(s, n)); }

void *__wrap_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    if (!p)
        return counted(__real_realloc(p, n));
    return __real_realloc(p, n); /* the project never reallocates to size 0 */
}

void __wrap_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live, 1);
    __real_free(p);
}

/* ---- the operations ------------------------------------------------------------------ */

/* Each returns 0 on success, -1 on a clean failure. */
typedef int (*operation)(void);

static int open_model(void)
{
    el_err err;
    gguf_file *f = gguf_open("models/stories260K.gguf", &err);
    if (!f)
        return -1;
    int rc = gguf_find_tensor(f, "token_embd.weight") ? 0 : -1;
    gguf_close(f);
    return rc;
}

static const char chat_body[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
    "\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"description\":\"the weather\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
    "\"required\":[\"city\"]}}}],"
    "\"stop\":[\"\\n\\n\",\"END\"],\"max_tokens\":20,\"temperature\":0.5,\"seed\":3,"
    "\"logit_bias\":{\"5\":-100},\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

static const char schema_body[] =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"a person\"}],"
    "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"strict\":true,"
    "\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0}},\"required\":[\"name\",\"age\"],"
    "\"additionalProperties\":false}}}}";

static const char two_tools_body[] =
    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tool_choice\":\"required\","
    "\"parallel_tool_calls\":false,\"tools\":["
    "{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"x\":{\"type\":\"integer\"}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"b\"}}]}";

static int parse_body(const char *body)
{
    gen_params d;
    gen_params_default(&d);
    chat_request r;
    api_error e;
    if (api_parse_chat_request(body, strlen(body), &d, &r, &e) < 0)
        return -1;
    chat_request_free(&r);
    return 0;
}

static int parse_chat_request(void) { return parse_body(chat_body); }
static int parse_schema_request(void) { return parse_body(schema_body); }
static int parse_two_tools_request(void) { return parse_body(two_tools_body); }

/* A vocabulary of the printable ASCII bytes and one end token. */
static int compile_schema(void)
{
    enum { N = 96 };
    char bytes[N][1];
    const char *ptrs[N];
    size_t lens[N];
    enum grammar_token_kind kinds[N];
    for (int i = 0; i < N; i++) {
        bytes[i][0] = (char)(' ' + i);
        ptrs[i] = bytes[i];
        lens[i] = 1;
        kinds[i] = i == N - 1 ? GRAMMAR_TOKEN_END : GRAMMAR_TOKEN_TEXT;
    }
    el_err err;
    grammar_vocab *v = grammar_vocab_new(N, ptrs, lens, kinds, &err);
    if (!v)
        return -1;
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                                 "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]}},"
                                 "\"n\":{\"type\":\"number\"}},\"required\":[\"name\"]}";
    grammar *g = grammar_from_json_schema(v, schema, sizeof schema - 1, &err);
    grammar_matcher *m = g ? grammar_matcher_new(g, &err) : NULL;
    uint32_t *mask = calloc(grammar_mask_words(v), sizeof *mask);
    int rc = -1;
    if (m && mask && grammar_matcher_accept_bytes(m, "{\"name\":\"x", 10) == 0 &&
        grammar_matcher_fill_mask(m, mask) > 0)
        rc = 0;
    free(mask);
    grammar_matcher_free(m);
    grammar_free(g);
    grammar_vocab_free(v);
    return rc;
}

static int generate(void)
{
    engine_config c;
    engine_config_default(&c);
    c.model_path = "models/stories260K.gguf";
    c.n_threads = 1;
    c.n_ctx = 64;
    c.max_batch = 16;
    el_err err;
    engine *e = engine_start(&c, &err);
    if (!e)
        return -1;
    int rc = -1;
    gen_request *r = NULL;
    chat_message msg = {.role = CHAT_ROLE_USER, .text = "Once upon a time", .len = 16};
    gen_params p;
    gen_params_default(&p);
    p.raw = true;
    p.max_tokens = 3;
    p.sampling.temperature = 0;
    if (engine_wait_ready(e, &err) == 0 && engine_submit(e, &msg, 1, &p, &r, &err) == GEN_OK) {
        gen_event ev;
        while (gen_next(r, &ev, -1) == 1 && ev.kind != GEN_EVENT_DONE)
            ;
        if (ev.kind == GEN_EVENT_DONE && (ev.finish == GEN_FINISH_LENGTH || ev.finish == GEN_FINISH_STOP))
            rc = 0;
    }
    gen_release(r);
    engine_free(e);
    return rc;
}

/* ---- the loop ------------------------------------------------------------------------- */

enum { MAX_STEPS = 200000 };

static int failures;

static void run(const char *name, operation op)
{
    long base = atomic_load(&live);
    for (long n = 1; n <= MAX_STEPS; n++) {
        atomic_store(&n_allocs, 0);
        atomic_store(&n_failed, 0);
        atomic_store(&fail_at, n);
        int rc = op();
        atomic_store(&fail_at, 0);
        long leaked = atomic_load(&live) - base;
        if (leaked != 0) {
            fprintf(stderr, "FAIL %s: %ld blocks left behind when allocation %ld failed\n", name, leaked, n);
            failures++;
            return;
        }
        if (atomic_load(&n_failed) == 0) {
            if (rc != 0) {
                fprintf(stderr, "FAIL %s: fails with no allocation failing\n", name);
                failures++;
            } else {
                fprintf(stderr, "  ok   %s: each of its %ld allocations failed in turn\n", name, n - 1);
            }
            return;
        }
    }
    fprintf(stderr, "FAIL %s: still allocating after %d steps\n", name, MAX_STEPS);
    failures++;
}

int main(void)
{
    api_json_init();
    run("gguf_open", open_model);
    run("api_parse_chat_request (tools, stop, logit_bias)", parse_chat_request);
    run("api_parse_chat_request (json_schema)", parse_schema_request);
    run("api_parse_chat_request (two tools, required)", parse_two_tools_request);
    run("grammar_from_json_schema", compile_schema);
    run("engine (load, one short generation)", generate);
    fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}

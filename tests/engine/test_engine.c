/* The engine: generation through the scheduler equals direct decoding, batching
 * does not change results, and every way a request ends (stop token, stop
 * string, length, context, cancel, release, shutdown) behaves as documented. */
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "golden_model.h"
#include "test.h"

#include "chat/chat.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* The bundled model, and the gemma golden models that make-model regenerates. */
static const char *stories_path = "models/stories260K.gguf";
static const char *argv0;

/* Gemma 1, 2 (sliding window 8, soft-capping) and 3 (window 8, two rope bases, 5:1
 * local/global layers). */
static const char *const gemma_models[3] = {"gemma-tiny-q8_0", "gemma2-tiny-q4_0", "gemma3-tiny-deep-q8_0"};
static const char *const gemma_archs[3] = {"gemma", "gemma2", "gemma3"};

/* ---- helpers -------------------------------------------------------------------- */

typedef struct engine_opts {
    int n_slots, n_ctx, max_batch, max_queue, prompt_chunk;
    uint64_t kv_memory;
    bool prefix_cache;
} engine_opts;

static engine *start(const char *path, engine_opts o)
{
    engine_config c;
    engine_config_default(&c);
    c.model_path = path;
    c.n_threads = 2;
    c.n_slots = o.n_slots;
    c.n_ctx = o.n_ctx;
    c.max_batch = o.max_batch;
    c.max_queue = o.max_queue;
    c.prefix_cache = o.prefix_cache;
    c.prompt_chunk = o.prompt_chunk;
    c.kv_memory = o.kv_memory;
    el_err err = {{0}};
    engine *e = engine_start(&c, &err);
    CHECKF(e != NULL, "%s", err.msg);
    if (!e)
        return NULL;
    int rc = engine_wait_ready(e, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc < 0) {
        engine_free(e);
        return NULL;
    }
    return e;
}

typedef struct result {
    char text[8192];
    size_t len;
    gen_event done;
    int n_text_events;
    bool all_utf8;
} result;

static void collect(gen_request *r, result *out)
{
    memset(out, 0, sizeof *out);
    out->all_utf8 = true;
    gen_event ev;
    for (;;) {
        CHECK(gen_next(r, &ev, -1) == 1);
        if (ev.kind == GEN_EVENT_DONE)
            break;
        out->n_text_events++;
        if (!utf8_valid(ev.text, ev.len))
            out->all_utf8 = false;
        size_t room = sizeof out->text - 1 - out->len;
        size_t n = ev.len < room ? ev.len : room;
        memcpy(out->text + out->len, ev.text, n);
        out->len += n;
    }
    out->text[out->len] = '\0';
    out->done = ev;
}

static gen_params greedy(int max_tokens)
{
    gen_params p;
    gen_params_default(&p);
    p.sampling.temperature = 0;
    p.max_tokens = max_tokens;
    return p;
}

static enum gen_status submit_text(engine *e, const char *prompt, const gen_params *p, gen_request **r)
{
    chat_message m = {.role = CHAT_ROLE_USER, .text = prompt, .len = strlen(prompt)};
    el_err err = {{0}};
    enum gen_status s = engine_submit(e, &m, 1, p, r, &err);
    CHECKF(s == GEN_OK, "submit: %d %s", s, err.msg);
    return s;
}

/* Generates one reply to completion. */
static void generate(engine *e, const char *prompt, const gen_params *p, result *out)
{
    gen_request *r = NULL;
    memset(out, 0, sizeof *out);
    if (submit_text(e, prompt, p, &r) != GEN_OK)
        return;
    collect(r, out);
    gen_release(r);
}

/* Greedy decoding done by hand with model_forward, detokenized the way the engine
 * does it: the reference the engine must equal. */
static void direct_greedy(const char *path, const char *prompt, bool raw, int max_tokens, result *out)
{
    memset(out, 0, sizeof *out);
    el_err err = {{0}};
    model *m = model_load(path, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m)
        return;
    tokenizer *t = tokenizer_load(model_gguf(m), &err);
    enum chat_format fmt = chat_detect_format(model_gguf(m), t);
    token_vec ids = {0};
    if (raw) {
        if (tokenizer_add_bos(t) && tokenizer_bos(t) >= 0)
            token_vec_push(&ids, tokenizer_bos(t), &err);
        tokenizer_encode(t, prompt, strlen(prompt), false, &ids, &err);
    } else {
        chat_message msg = {.role = CHAT_ROLE_USER, .text = prompt, .len = strlen(prompt)};
        CHECK(chat_build_prompt(t, fmt, &msg, 1, CHAT_HISTORY_FULL, &ids, &err) == 0);
    }
    int32_t stops[8];
    size_t n_stops = chat_stop_tokens(t, fmt, stops, 8);
    int n_ctx = 256;
    kv_cache *kv = kv_cache_create(m, MODEL_CACHE_F16, 1, n_ctx, &err);
    model_ctx *ctx = model_ctx_create(m, 512, NULL, &err);
    int n_vocab = model_hparams_of(m)->n_vocab;
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int32_t *pos = malloc(ids.n * sizeof *pos);
    int32_t *seq = calloc(ids.n, sizeof *seq);
    for (size_t i = 0; i < ids.n; i++)
        pos[i] = (int32_t)i;
    model_batch b = {.n_tokens = (int)ids.n, .token = ids.ids, .pos = pos, .seq = seq};
    CHECK(model_forward(ctx, kv, &b, logits, &err) == 0);
    detokenizer d;
    detokenizer_init(&d, t);
    d.at_start = false;
    int p = (int)ids.n;
    out->done.finish = GEN_FINISH_LENGTH;
    for (int k = 0; k < max_tokens; k++) {
        int32_t best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (logits[v] > logits[best])
                best = v;
        out->done.completion_tokens++;
        bool stop = false;
        for (size_t s = 0; s < n_stops; s++)
            stop = stop || stops[s] == best;
        if (stop) {
            out->done.finish = GEN_FINISH_STOP;
            break;
        }
        out->len += detokenizer_push(&d, best, out->text + out->len, sizeof out->text - out->len - 1);
        if (k + 1 == max_tokens)
            break;
        int32_t zero = 0;
        model_batch one = {.n_tokens = 1, .token = &best, .pos = &p, .seq = &zero};
        CHECK(model_forward(ctx, kv, &one, logits, &err) == 0);
        p++;
    }
    out->len += detokenizer_finish(&d, out->text + out->len, sizeof out->text - out->len - 1);
    out->text[out->len] = '\0';
    out->done.prompt_tokens = (int)ids.n;
    free(pos);
    free(seq);
    free(logits);
    token_vec_free(&ids);
    model_ctx_free(ctx);
    kv_cache_free(kv);
    tokenizer_free(t);
    model_free(m);
}

static const char *const story_prompts[8] = {
    "Once upon a time",
    "Lily and Tom went to the park",
    "The little dog was sad because",
    "One day, a big bird",
    "Tim had a red ball. He",
    "Mom said to Sue, \"Let us bake a cake",
    "There was a tree",
    "The sun was hot and the cat",
};

/* ---- tests ---------------------------------------------------------------------- */

static void test_stop_filter(void)
{
    stop_set s;
    const char *strs[] = {"Lily", "girl named"};
    CHECK(stop_set_init(&s, strs, 2, NULL) == 0);
    size_t cut;
    CHECK(!stop_scan(&s, "there was a", 11, &cut));
    CHECK_EQ_INT(cut, 11);
    CHECK(!stop_scan(&s, "a little gi", 11, &cut)); /* "gi" may become "girl named" */
    CHECK_EQ_INT(cut, 9);
    CHECK(!stop_scan(&s, "a Li", 4, &cut));
    CHECK_EQ_INT(cut, 2);
    CHECK(stop_scan(&s, "girl named Lily", 15, &cut)); /* earliest wins */
    CHECK_EQ_INT(cut, 0);
    CHECK(stop_scan(&s, "xx Lily girl named", 18, &cut));
    CHECK_EQ_INT(cut, 3);
    stop_set_free(&s);

    const char *empty[] = {""};
    CHECK(stop_set_init(&s, empty, 1, NULL) < 0);
    const char *bad_utf8[] = {"\xC0\xAF"};
    CHECK(stop_set_init(&s, bad_utf8, 1, NULL) < 0);
    char longer[GEN_MAX_STOP_BYTES + 2];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    const char *too_long[] = {longer};
    CHECK(stop_set_init(&s, too_long, 1, NULL) < 0);
    CHECK(utf8_valid("\xE2\x82\xAC", 3));
    CHECK(!utf8_valid("\xE2\x82", 2));
    CHECK(!utf8_valid("\xED\xA0\x80", 3)); /* a surrogate */
}

static void test_greedy_equals_direct(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 256});
    if (!e)
        return;
    for (int raw = 0; raw < 2; raw++) {
        result want, got;
        direct_greedy(stories_path, "Once upon a time", raw, 40, &want);
        gen_params p = greedy(40);
        p.raw = raw;
        generate(e, "Once upon a time", &p, &got);
        CHECKF(!strcmp(want.text, got.text), "raw=%d\nwant: %s\ngot:  %s", raw, want.text, got.text);
        CHECK_EQ_INT(got.done.completion_tokens, want.done.completion_tokens);
        CHECK_EQ_INT(got.done.prompt_tokens, want.done.prompt_tokens);
        CHECK_EQ_INT(got.done.finish, want.done.finish);
    }
    /* The golden reference for this model (from a float64 forward pass). */
    result got;
    gen_params p = greedy(20);
    generate(e, "Once upon a time", &p, &got);
    CHECKF(!strncmp(got.text, ", there was a little girl named Lily.", 37), "%s", got.text);

    engine_info info;
    engine_get_info(e, &info);
    CHECK(!strcmp(info.arch, "llama"));
    CHECK(!strcmp(info.chat_format, "plain"));
    CHECK_EQ_INT(info.n_ctx, 256);
    CHECK_EQ_INT(info.n_slots, 1);
    CHECK(info.n_vocab == 512);
    CHECK(info.weight_bytes > 0);
    engine_free(e);
}

static void test_gemma_chat_equals_direct(void)
{
    for (int k = 0; k < 3; k++) {
        const char *path = golden_model_make(argv0, gemma_models[k]);
        if (!path)
            return;
        engine *e = start(path, (engine_opts){.n_ctx = 128});
        if (!e)
            return;
        /* 15 prompt tokens and 24 generated: well past the sliding window */
        result want, got;
        direct_greedy(path, "Hello, how are you?", false, 24, &want);
        gen_params p = greedy(24);
        generate(e, "Hello, how are you?", &p, &got);
        CHECKF(!strcmp(want.text, got.text), "%s\nwant: %s\ngot:  %s", gemma_models[k], want.text, got.text);
        CHECK_EQ_INT(got.done.completion_tokens, want.done.completion_tokens);
        CHECK(got.all_utf8);
        engine_info info;
        engine_get_info(e, &info);
        CHECK(!strcmp(info.chat_format, "gemma"));
        CHECKF(!strcmp(info.arch, gemma_archs[k]), "%s", info.arch);
        engine_free(e);
    }
}

static void test_batching_equals_alone(void)
{
    enum { N = 8, TOKENS = 24 };
    engine *alone = start(stories_path, (engine_opts){.n_ctx = 128});
    /* a small batch, so prompt chunks and decode tokens of several slots mix */
    engine *many = start(stories_path, (engine_opts){.n_slots = 4, .n_ctx = 128, .max_batch = 8});
    if (!alone || !many)
        goto out;
    static result want[N], got[N];
    gen_params p = greedy(TOKENS);
    for (int i = 0; i < N; i++)
        generate(alone, story_prompts[i], &p, &want[i]);
    gen_request *r[N] = {0};
    for (int i = 0; i < N; i++)
        submit_text(many, story_prompts[i], &p, &r[i]);
    /* Consume in reverse: the later ones pile up text meanwhile (coalescing). */
    for (int i = N - 1; i >= 0; i--) {
        if (!r[i])
            continue;
        collect(r[i], &got[i]);
        gen_release(r[i]);
        CHECKF(!strcmp(want[i].text, got[i].text), "request %d\nwant: %s\ngot:  %s", i, want[i].text,
               got[i].text);
        CHECK_EQ_INT(got[i].done.completion_tokens, want[i].done.completion_tokens);
        CHECK_EQ_INT(got[i].done.finish, want[i].done.finish);
    }
    engine_stats st;
    engine_get_stats(many, &st);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK_EQ_INT(st.active_slots, 0);
    uint64_t prompt_total = 0, completion_total = 0;
    for (int i = 0; i < N; i++) {
        prompt_total += (uint64_t)got[i].done.prompt_tokens;
        completion_total += (uint64_t)got[i].done.completion_tokens;
    }
    CHECK_EQ_INT(st.prompt_tokens_total, prompt_total);
    CHECK_EQ_INT(st.completion_tokens_total, completion_total);
out:
    engine_free(alone);
    engine_free(many);
}

static void gemma_batching_equals_alone(const char *path)
{
    static const char *const prompts[3] = {"Hello!", "What is the capital of France?", "Write a haiku."};
    engine *alone = start(path, (engine_opts){.n_ctx = 96});
    engine *many = start(path, (engine_opts){.n_slots = 3, .n_ctx = 96, .max_batch = 16});
    if (!alone || !many)
        goto out;
    result want[3], got[3];
    gen_params p = greedy(16);
    for (int i = 0; i < 3; i++)
        generate(alone, prompts[i], &p, &want[i]);
    gen_request *r[3] = {0};
    for (int i = 0; i < 3; i++)
        submit_text(many, prompts[i], &p, &r[i]);
    for (int i = 0; i < 3; i++) {
        if (!r[i])
            continue;
        collect(r[i], &got[i]);
        gen_release(r[i]);
        CHECKF(!strcmp(want[i].text, got[i].text), "%s request %d\nwant: %s\ngot:  %s", path, i, want[i].text,
               got[i].text);
        CHECK(got[i].all_utf8);
    }
out:
    engine_free(alone);
    engine_free(many);
}

static void test_gemma_batching_equals_alone(void)
{
    for (int k = 0; k < 2; k++) {
        const char *path = golden_model_make(argv0, gemma_models[k]);
        if (!path)
            return;
        gemma_batching_equals_alone(path);
    }
}

/* A consumer that reads only after generation ended gets all the text at once. */
static void test_slow_consumer_coalesced(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 128});
    if (!e)
        return;
    gen_params p = greedy(30);
    result eager, slow;
    generate(e, "Once upon a time", &p, &eager);
    gen_request *r = NULL;
    if (submit_text(e, "Once upon a time", &p, &r) == GEN_OK) {
        engine_stats st;
        do {
            usleep(2000);
            engine_get_stats(e, &st);
        } while (st.active_slots > 0 || st.queue_depth > 0);
        collect(r, &slow);
        gen_release(r);
        CHECK_EQ_INT(slow.n_text_events, 1);
        CHECK(!strcmp(slow.text, eager.text));
        CHECK_EQ_INT(slow.done.completion_tokens, eager.done.completion_tokens);
    }
    engine_free(e);
}

static void test_max_tokens_and_context(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 16});
    if (!e)
        return;
    result got;
    gen_params p = greedy(7);
    p.raw = true;
    generate(e, "Once upon a time", &p, &got);
    CHECK_EQ_INT(got.done.finish, GEN_FINISH_LENGTH);
    CHECK_EQ_INT(got.done.completion_tokens, 7);
    CHECK_EQ_INT(got.done.prompt_tokens, 5);

    /* 5 prompt tokens in a 16-token context leave room for 11. */
    p.max_tokens = 100;
    generate(e, "Once upon a time", &p, &got);
    CHECK_EQ_INT(got.done.finish, GEN_FINISH_LENGTH);
    CHECK_EQ_INT(got.done.completion_tokens, 11);

    /* Too long for the context: refused, never truncated. */
    gen_request *r = NULL;
    chat_message m = {.role = CHAT_ROLE_USER, .text = "Once upon a time, there was a little girl named Lily. She loved to play",
                      0};
    m.len = strlen(m.text);
    el_err err = {{0}};
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_CONTEXT);
    CHECK(r == NULL);
    CHECK(strstr(err.msg, "context") != NULL);
    engine_free(e);
}

static void test_stop_strings(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 128});
    if (!e)
        return;
    result plain, got;
    gen_params p = greedy(40);
    generate(e, "Once upon a time", &p, &plain);
    /* ", there was a little girl named Lily. She loved to play outside in the park..." */
    CHECKF(strstr(plain.text, "girl named Lily") != NULL, "%s", plain.text);

    const char *one[] = {"Lily"};
    p.stop = one;
    p.n_stop = 1;
    generate(e, "Once upon a time", &p, &got);
    CHECK_EQ_INT(got.done.finish, GEN_FINISH_STOP);
    CHECKF(!strcmp(got.text, ", there was a little girl named "), "'%s'", got.text);

    /* Spans the tokens "girl" and "named": cut in the middle of one. */
    const char *spanning[] = {"irl nam"};
    p.stop = spanning;
    generate(e, "Once upon a time", &p, &got);
    CHECK_EQ_INT(got.done.finish, GEN_FINISH_STOP);
    CHECKF(!strcmp(got.text, ", there was a little g"), "'%s'", got.text);

    /* Starts like the text ("Lily") but never completes: nothing is lost. */
    const char *never[] = {"Lily sang", "zzz"};
    p.stop = never;
    p.n_stop = 2;
    generate(e, "Once upon a time", &p, &got);
    CHECK_EQ_INT(got.done.finish, plain.done.finish);
    CHECKF(!strcmp(got.text, plain.text), "\nwant: %s\ngot:  %s", plain.text, got.text);

    /* Held back when the length runs out mid-match: emitted at the end. */
    gen_params shorter = greedy(9);
    result cut;
    generate(e, "Once upon a time", &shorter, &cut);
    const char *tail[] = {"girl named Lily and"};
    shorter.stop = tail;
    shorter.n_stop = 1;
    generate(e, "Once upon a time", &shorter, &got);
    CHECK_EQ_INT(got.done.finish, GEN_FINISH_LENGTH);
    CHECKF(!strcmp(got.text, cut.text), "\nwant: %s\ngot:  %s", cut.text, got.text);

    /* The earliest of several. */
    const char *several[] = {"park", "play", "little"};
    p.stop = several;
    p.n_stop = 3;
    generate(e, "Once upon a time", &p, &got);
    CHECKF(!strcmp(got.text, ", there was a "), "'%s'", got.text);
    engine_free(e);
}

static void test_cancel(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 512});
    if (!e)
        return;
    /* Uncancelled, this runs to the length limit or the story's end. */
    result full;
    gen_params p = greedy(400);
    generate(e, "Once upon a time", &p, &full);
    CHECK(full.done.completion_tokens > 40);

    gen_request *r = NULL;
    if (submit_text(e, "Once upon a time", &p, &r) == GEN_OK) {
        gen_event ev;
        CHECK(gen_next(r, &ev, -1) == 1);
        CHECK(ev.kind == GEN_EVENT_TEXT);
        gen_cancel(r);
        result rest;
        collect(r, &rest);
        CHECK_EQ_INT(rest.done.finish, GEN_FINISH_CANCELLED);
        CHECK(rest.done.completion_tokens < full.done.completion_tokens);
        /* After DONE, DONE again. */
        CHECK(gen_next(r, &ev, 0) == 1 && ev.kind == GEN_EVENT_DONE);
        gen_release(r);
    }

    /* Released while generating, without reading anything: the engine goes on. */
    if (submit_text(e, "Lily and Tom went to the park", &p, &r) == GEN_OK)
        gen_release(r);
    result after;
    gen_params q = greedy(20);
    generate(e, "Once upon a time", &q, &after);
    CHECK(!strncmp(after.text, full.text, after.len));
    engine_free(e);
}

static void test_queue_full_and_queued_cancel(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 512, .max_queue = 2});
    if (!e)
        return;
    gen_params p = greedy(500);
    gen_request *busy = NULL, *q1 = NULL, *q2 = NULL, *q3 = NULL;
    if (submit_text(e, "Once upon a time", &p, &busy) != GEN_OK)
        goto out;
    gen_event ev;
    CHECK(gen_next(busy, &ev, -1) == 1); /* it holds the only slot now */
    submit_text(e, "There was a tree", &p, &q1);
    submit_text(e, "One day, a big bird", &p, &q2);
    chat_message m = {.role = CHAT_ROLE_USER, .text = "Hi", .len = 2};
    el_err err = {{0}};
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &q3, &err), GEN_ERR_QUEUE_FULL);
    CHECK(q3 == NULL);
    engine_stats st;
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.queue_depth, 2);
    CHECK_EQ_INT(st.active_slots, 1);

    /* A queued request cancelled: DONE at once, nothing generated. */
    if (q1) {
        gen_cancel(q1);
        CHECK(gen_next(q1, &ev, 0) == 1);
        CHECK(ev.kind == GEN_EVENT_DONE && ev.finish == GEN_FINISH_CANCELLED);
        CHECK_EQ_INT(ev.completion_tokens, 0);
        gen_release(q1);
    }
    /* A queued request released. */
    gen_release(q2);
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.queue_depth, 0);
    gen_cancel(busy);
    result rest;
    collect(busy, &rest);
    CHECK_EQ_INT(rest.done.finish, GEN_FINISH_CANCELLED);
    gen_release(busy);
out:
    engine_free(e);
}

static void test_prefix_cache(void)
{
    engine *cached = start(stories_path, (engine_opts){.n_ctx = 256, .prefix_cache = true});
    engine *fresh = start(stories_path, (engine_opts){.n_ctx = 256, .prefix_cache = false});
    if (!cached || !fresh)
        goto out;
    gen_params p = greedy(30);
    p.raw = true;
    const char *first = "Once upon a time, there was a little girl";
    const char *second = "Once upon a time, there was a little girl named Lily. She";
    result a, b, b_fresh, again;
    generate(cached, first, &p, &a);
    CHECK_EQ_INT(a.done.cached_tokens, 0);
    generate(cached, second, &p, &b);
    generate(fresh, second, &p, &b_fresh);
    CHECKF(b.done.cached_tokens > 5 && b.done.cached_tokens < b.done.prompt_tokens, "cached %d of %d",
           b.done.cached_tokens, b.done.prompt_tokens);
    CHECK_EQ_INT(b_fresh.done.cached_tokens, 0);
    CHECKF(!strcmp(b.text, b_fresh.text), "\ncached: %s\nfresh:  %s", b.text, b_fresh.text);
    /* The same prompt again: all but the last token come from the cache. */
    generate(cached, second, &p, &again);
    CHECK_EQ_INT(again.done.cached_tokens, again.done.prompt_tokens - 1);
    CHECK(!strcmp(again.text, b_fresh.text));
    engine_stats st;
    engine_get_stats(cached, &st);
    CHECK_EQ_INT(st.prompt_tokens_cached_total, (uint64_t)(b.done.cached_tokens + again.done.cached_tokens));
    engine_get_stats(fresh, &st);
    CHECK_EQ_INT(st.prompt_tokens_cached_total, 0);

    /* With two slots, a request goes to the slot holding its prefix. */
    engine *two = start(stories_path, (engine_opts){.n_slots = 2, .n_ctx = 256, .prefix_cache = true});
    if (two) {
        result x;
        generate(two, "Lily and Tom went to the park", &p, &x);
        generate(two, first, &p, &x);
        generate(two, "Lily and Tom went to the park and", &p, &x);
        CHECK(x.done.cached_tokens >= 7);
        engine_free(two);
    }
out:
    engine_free(cached);
    engine_free(fresh);
}

static void test_invalid_requests(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 64});
    if (!e)
        return;
    gen_request *r = NULL;
    el_err err = {{0}};
    chat_message m = {.role = CHAT_ROLE_USER, .text = "Hi", .len = 2};
    gen_params p = greedy(4);
    CHECK_EQ_INT(engine_submit(e, &m, 0, &p, &r, &err), GEN_ERR_INVALID);
    p.sampling.temperature = NAN;
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_INVALID);
    p = greedy(-1);
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_INVALID);
    p = greedy(4);
    const char *stops[GEN_MAX_STOP + 1];
    for (int i = 0; i <= GEN_MAX_STOP; i++)
        stops[i] = "x";
    p.stop = stops;
    p.n_stop = GEN_MAX_STOP + 1;
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_INVALID);
    const char *empty[] = {""};
    p.stop = empty;
    p.n_stop = 1;
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_INVALID);
    CHECK(strstr(err.msg, "stop") != NULL);
    chat_message only_assistant = {.role = CHAT_ROLE_ASSISTANT, .text = "Hi", .len = 2};
    p = greedy(4);
    CHECK_EQ_INT(engine_submit(e, &only_assistant, 1, &p, &r, &err), GEN_ERR_INVALID);
    CHECK(r == NULL);
    /* NULL params: the defaults (sampled, seeded from the OS). */
    CHECK_EQ_INT(engine_submit(e, &m, 1, NULL, &r, &err), GEN_OK);
    if (r) {
        result res;
        collect(r, &res);
        CHECK(res.done.finish == GEN_FINISH_STOP || res.done.finish == GEN_FINISH_LENGTH);
        gen_release(r);
    }
    engine_free(e);
}

/* A FIFO with no writer keeps the loader blocked in open(): LOADING, deterministically. */
static void test_not_ready_and_failed(void)
{
    char dir[] = "/tmp/elliott-engine-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/model.gguf", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    engine_config c;
    engine_config_default(&c);
    c.model_path = fifo;
    el_err err = {{0}};
    engine *e = engine_start(&c, &err);
    CHECKF(e != NULL, "%s", err.msg);
    if (e) {
        gen_request *r = NULL;
        chat_message m = {.role = CHAT_ROLE_USER, .text = "Hi", .len = 2};
        CHECK_EQ_INT(engine_submit(e, &m, 1, NULL, &r, &err), GEN_ERR_NOT_READY);
        /* Let the loader through: an empty "file" it must reject. */
        while (engine_state(e, NULL) == ENGINE_LOADING) {
            int fd = open(fifo, O_WRONLY | O_NONBLOCK);
            if (fd >= 0) {
                close(fd);
                break;
            }
            usleep(1000);
        }
        CHECK(engine_wait_ready(e, &err) < 0);
        el_err why = {{0}};
        CHECK_EQ_INT(engine_state(e, &why), ENGINE_FAILED);
        CHECK(why.msg[0] != '\0');
        CHECK_EQ_INT(engine_submit(e, &m, 1, NULL, &r, &err), GEN_ERR_NOT_READY);
        CHECK(strstr(err.msg, "failed to load") != NULL);
        engine_free(e);
    }
    unlink(fifo);
    rmdir(dir);

    c.model_path = "/nonexistent/model.gguf";
    e = engine_start(&c, &err);
    if (e) {
        CHECK(engine_wait_ready(e, &err) < 0);
        CHECKF(strstr(err.msg, "nonexistent") != NULL, "%s", err.msg);
        engine_free(e);
    }

    c.model_path = NULL;
    CHECK(engine_start(&c, &err) == NULL); /* no model at all */
    c.model_path = stories_path;
    c.n_slots = -2; /* -1 is ENGINE_SLOTS_AUTO */
    CHECK(engine_start(&c, &err) == NULL);
    c.n_slots = 1;
    c.prompt_chunk = -1;
    CHECK(engine_start(&c, &err) == NULL);
}

static void test_model_in_memory(void)
{
    FILE *f = fopen(stories_path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size);
    CHECK(fread(data, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    engine_config c;
    engine_config_default(&c);
    c.model_data = data;
    c.model_size = (size_t)size;
    c.n_ctx = 64;
    c.n_threads = 1;
    el_err err = {{0}};
    engine *e = engine_start(&c, &err);
    CHECK(e && engine_wait_ready(e, &err) == 0);
    if (e) {
        result got;
        gen_params p = greedy(12);
        generate(e, "Once upon a time", &p, &got);
        CHECKF(!strncmp(got.text, ", there was a little girl", 25), "%s", got.text);
        engine_free(e);
    }
    free(data);
}

/* Shutdown with requests in flight and in the queue: all end CANCELLED, and the
 * consumer may release them after the engine is gone. */
static void test_free_with_requests_held(void)
{
    engine *e = start(stories_path, (engine_opts){.n_ctx = 512});
    if (!e)
        return;
    gen_params p = greedy(500);
    gen_request *running = NULL, *queued = NULL;
    submit_text(e, "Once upon a time", &p, &running);
    submit_text(e, "There was a tree", &p, &queued);
    gen_event ev;
    if (running)
        CHECK(gen_next(running, &ev, -1) == 1);
    engine_free(e);
    result rest;
    if (running) {
        collect(running, &rest);
        CHECK(rest.done.finish == GEN_FINISH_CANCELLED || rest.done.finish == GEN_FINISH_STOP);
        gen_release(running);
    }
    if (queued) {
        collect(queued, &rest);
        CHECK_EQ_INT(rest.done.finish, GEN_FINISH_CANCELLED);
        gen_release(queued);
    }
}

/* Consumers on their own threads, as the server has them. */
typedef struct consumer {
    engine *e;
    const char *prompt;
    result res;
} consumer;

static void *consume(void *arg)
{
    consumer *c = arg;
    gen_params p = greedy(16);
    gen_request *r = NULL;
    chat_message m = {.role = CHAT_ROLE_USER, .text = c->prompt, .len = strlen(c->prompt)};
    if (engine_submit(c->e, &m, 1, &p, &r, NULL) == GEN_OK) {
        /* short waits: exercises the timeout path */
        gen_event ev;
        memset(&c->res, 0, sizeof c->res);
        for (;;) {
            if (gen_next(r, &ev, 5) == 0)
                continue;
            if (ev.kind == GEN_EVENT_DONE)
                break;
            memcpy(c->res.text + c->res.len, ev.text, ev.len);
            c->res.len += ev.len;
        }
        c->res.done = ev;
        gen_release(r);
    }
    return NULL;
}

static void test_threaded_consumers(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 2, .n_ctx = 128});
    if (!e)
        return;
    enum { N = 4 };
    consumer c[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].e = e;
        c[i].prompt = story_prompts[i];
        pthread_create(&th[i], NULL, consume, &c[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        result alone;
        gen_params p = greedy(16);
        generate(e, story_prompts[i], &p, &alone);
        CHECKF(!strcmp(c[i].res.text, alone.text), "consumer %d\nwant: %s\ngot:  %s", i, alone.text,
               c[i].res.text);
    }
    engine_free(e);
}

/* Fill in the middle: with a suffix the prompt is [BOS] prefix-marker PREFIX
 * suffix-marker SUFFIX middle-marker (the same answer as those ids given as they
 * are), the file separator ends the answer, and a model without the markers says
 * GEN_ERR_SUFFIX. */
static void test_fill_in_middle(void)
{
    char path[] = "/tmp/elliott-test-fim-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    model_random_options o = {.arch = MODEL_ARCH_GEMMA, .shape = "tiny", .type = GGUF_TYPE_Q8_0,
                              .vocab_path = "tests/data/vocab-gemma.gguf", .seed = 3, .code_vocab = true};
    el_err err = {{0}};
    int rc = model_write_random(path, &o, &err);
    CHECKF(rc == 0, "%s", err.msg);
    engine *e = rc == 0 ? start(path, (engine_opts){.n_slots = 1, .n_ctx = 256}) : NULL;
    if (e) {
        tokenizer_fim fim;
        CHECK(tokenizer_fim_markers(e->tok, &fim));
        CHECK(fim.prefix >= 0 && fim.suffix >= 0 && fim.middle >= 0 && fim.file_separator >= 0);
        const char *prefix = "def add(a, b):\n    ", *suffix = "\n    return c\n";
        token_vec ids = {0};
        CHECK(token_vec_push(&ids, tokenizer_bos(e->tok), &err) == 0 && token_vec_push(&ids, fim.prefix, &err) == 0);
        CHECK(tokenizer_encode(e->tok, prefix, strlen(prefix), false, &ids, &err) == 0);
        CHECK(token_vec_push(&ids, fim.suffix, &err) == 0);
        CHECK(tokenizer_encode(e->tok, suffix, strlen(suffix), false, &ids, &err) == 0);
        CHECK(token_vec_push(&ids, fim.middle, &err) == 0);

        gen_params p = greedy(12);
        p.raw = true;
        p.suffix = suffix;
        p.suffix_len = strlen(suffix);
        gen_request *r = NULL;
        result filled, given;
        if (submit_text(e, prefix, &p, &r) == GEN_OK) {
            CHECK_EQ_INT(gen_prompt_tokens(r), (int)ids.n);
            collect(r, &filled);
            gen_release(r);
        }
        gen_params q = greedy(12);
        q.raw = true;
        q.prompt_tokens = ids.ids;
        q.n_prompt_tokens = ids.n;
        generate(e, "", &q, &given);
        CHECKF(!strcmp(filled.text, given.text), "suffix: %s\nids: %s", filled.text, given.text);

        /* the file separator ends the answer (forced by a bias): stop, no text */
        gen_logit_bias force = {.token = fim.file_separator, .bias = 100.0f};
        p.logit_bias = &force;
        p.n_logit_bias = 1;
        generate(e, prefix, &p, &filled);
        CHECK_EQ_INT(filled.done.finish, GEN_FINISH_STOP);
        CHECK_EQ_INT((int)filled.len, 0);
        token_vec_free(&ids);
        engine_free(e);
    }
    unlink(path);

    e = start(stories_path, (engine_opts){.n_slots = 1});
    if (e) {
        gen_params p = greedy(4);
        p.raw = true;
        p.suffix = "x";
        p.suffix_len = 1;
        chat_message m = {.role = CHAT_ROLE_USER, .text = "a", .len = 1};
        gen_request *r = NULL;
        CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_SUFFIX);
        CHECK(strstr(err.msg, "fill-in-the-middle") != NULL);
        engine_free(e);
    }
}

/* logprobs: one record per generated token (not the end token), the greedy token
 * is the best of its alternatives, and the text is unchanged by asking. */
static void test_logprobs_and_bias(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 1, .prefix_cache = true});
    if (!e)
        return;
    gen_params plain = greedy(12);
    result want;
    generate(e, "Once upon a time", &plain, &want);
    gen_params p = greedy(12);
    p.logprobs = true;
    p.top_logprobs = 5;
    gen_request *r = NULL;
    if (submit_text(e, "Once upon a time", &p, &r) == GEN_OK) {
        gen_logprob got[64];
        size_t n = 0, text_len = 0;
        gen_event ev;
        while (gen_next(r, &ev, -1) == 1 && ev.kind == GEN_EVENT_TEXT) {
            text_len += ev.len;
            for (size_t i = 0; i < ev.n_logprobs && n < 64; i++)
                got[n++] = ev.logprobs[i];
        }
        CHECK_EQ_INT(text_len, want.len);
        int ended_by_token = ev.finish == GEN_FINISH_STOP;
        CHECK_EQ_INT((int)n + ended_by_token, ev.completion_tokens);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_INT(got[i].n_top, 5);
            CHECK_EQ_INT(got[i].top_token[0], got[i].token);
            CHECK_NEAR(got[i].top_logprob[0], got[i].logprob, 0);
            CHECK(got[i].logprob <= 0 && got[i].top_logprob[4] <= got[i].top_logprob[0]);
        }
        gen_release(r);
    }
    /* logit_bias -100 on the first greedy token changes the answer */
    if (want.len > 0) {
        p = greedy(12);
        p.logprobs = true;
        gen_request *r2 = NULL;
        if (submit_text(e, "Once upon a time", &p, &r2) == GEN_OK) {
            gen_event ev;
            int32_t first = -1;
            while (gen_next(r2, &ev, -1) == 1 && ev.kind == GEN_EVENT_TEXT)
                if (first < 0 && ev.n_logprobs)
                    first = ev.logprobs[0].token;
            gen_release(r2);
            gen_logit_bias ban = {first, -100.0f};
            p = greedy(12);
            p.logit_bias = &ban;
            p.n_logit_bias = 1;
            result banned;
            generate(e, "Once upon a time", &p, &banned);
            CHECK(banned.len != want.len || memcmp(banned.text, want.text, want.len) != 0);
        }
    }
    /* refused: ids outside the vocabulary, out-of-range biases, bad top_logprobs */
    gen_logit_bias outside = {1 << 20, 1.0f};
    p = greedy(4);
    p.logit_bias = &outside;
    p.n_logit_bias = 1;
    chat_message m = {.role = CHAT_ROLE_USER, .text = "Hi", .len = 2};
    el_err err = {{0}};
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_LOGIT_BIAS);
    outside = (gen_logit_bias){1, 101.0f};
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_LOGIT_BIAS);
    p = greedy(4);
    p.top_logprobs = 21;
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_INVALID);
    engine_free(e);
}

/* n choices from one prompt evaluation: each choice equals a single request with
 * the seed plus its index (the copied prompt cache is exact), every choice ends
 * with its own CHOICE_END, and DONE sums the tokens. */
typedef struct choices_result {
    char text[GEN_MAX_CHOICES][2048];
    size_t len[GEN_MAX_CHOICES];
    int ends[GEN_MAX_CHOICES];
    int tokens[GEN_MAX_CHOICES];
    gen_event done;
} choices_result;

static void collect_choices(gen_request *r, choices_result *out)
{
    memset(out, 0, sizeof *out);
    gen_event ev;
    while (gen_next(r, &ev, -1) == 1 && ev.kind != GEN_EVENT_DONE) {
        CHECK(ev.choice >= 0 && ev.choice < GEN_MAX_CHOICES);
        if (ev.kind == GEN_EVENT_CHOICE_END) {
            CHECK_EQ_INT(out->ends[ev.choice], 0);
            out->ends[ev.choice]++;
            out->tokens[ev.choice] = ev.completion_tokens;
            continue;
        }
        CHECK_EQ_INT(out->ends[ev.choice], 0); /* no text after its end */
        size_t room = sizeof out->text[0] - 1 - out->len[ev.choice];
        size_t n = ev.len < room ? ev.len : room;
        memcpy(out->text[ev.choice] + out->len[ev.choice], ev.text, n);
        out->len[ev.choice] += n;
    }
    out->done = ev;
}

static void test_choices(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 3, .prefix_cache = true});
    if (!e)
        return;
    const char *prompt = "Once upon a time, there was a little dog";
    for (int greedy_run = 0; greedy_run < 2; greedy_run++) {
        gen_params p = greedy(16);
        if (!greedy_run) {
            p.sampling.temperature = 1.0f;
            p.sampling.seed = 1234;
        }
        p.n_choices = 3;
        gen_request *r = NULL;
        if (submit_text(e, prompt, &p, &r) != GEN_OK)
            continue;
        choices_result got;
        collect_choices(r, &got);
        gen_release(r);
        CHECK_EQ_INT(got.done.kind, GEN_EVENT_DONE);
        int sum = 0;
        for (int c = 0; c < 3; c++) {
            CHECK_EQ_INT(got.ends[c], 1);
            sum += got.tokens[c];
            gen_params one = p;
            one.n_choices = 1;
            one.sampling.seed = p.sampling.seed + (uint64_t)c;
            result alone;
            generate(e, prompt, &one, &alone);
            CHECKF(alone.len == got.len[c] && !memcmp(alone.text, got.text[c], alone.len),
                   "choice %d: '%s' vs alone '%s'", c, got.text[c], alone.text);
        }
        CHECK_EQ_INT(got.done.completion_tokens, sum);
        if (!greedy_run)
            CHECK(got.len[0] != got.len[1] || memcmp(got.text[0], got.text[1], got.len[0]) != 0);
    }
    /* more choices than slots: refused */
    gen_params p = greedy(4);
    p.n_choices = 4;
    chat_message m = {.role = CHAT_ROLE_USER, .text = "Hi", .len = 2};
    gen_request *r = NULL;
    el_err err = {{0}};
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &r, &err), GEN_ERR_CHOICES);
    /* cancelled while the first choice reads the prompt: every choice ends */
    p = greedy(200);
    p.n_choices = 2;
    if (submit_text(e, prompt, &p, &r) == GEN_OK) {
        gen_cancel(r);
        choices_result got;
        collect_choices(r, &got);
        CHECK_EQ_INT(got.done.finish, GEN_FINISH_CANCELLED);
        gen_release(r);
    }
    engine_free(e);
}

/* Several prompts in one request: choice g x n + j answers prompt g, and greedy
 * answers equal those of each prompt alone; usage sums the prompts; limits count
 * every choice. */
static void test_prompt_groups(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 4, .prefix_cache = true});
    if (!e)
        return;
    static const int32_t ids[] = {1, 100, 200, 300};
    gen_prompt prompts[2] = {{.text = "Once upon a time", .len = 16}, {.tokens = ids, .n_tokens = 4}};
    gen_params p = greedy(12);
    p.raw = true;
    p.n_choices = 2;
    p.prompts = prompts;
    p.n_prompts = 2;
    gen_request *r = NULL;
    el_err err = {{0}};
    enum gen_status st = engine_submit(e, NULL, 0, &p, &r, &err);
    CHECKF(st == GEN_OK, "%s", err.msg);
    if (st == GEN_OK) {
        choices_result got;
        collect_choices(r, &got);
        gen_release(r);
        result alone[2];
        gen_params one = greedy(12);
        one.raw = true;
        generate(e, "Once upon a time", &one, &alone[0]);
        one.prompt_tokens = ids;
        one.n_prompt_tokens = 4;
        generate(e, "", &one, &alone[1]);
        for (int c = 0; c < 4; c++) {
            const result *want = &alone[c / 2];
            CHECK_EQ_INT(got.ends[c], 1);
            CHECKF(want->len == got.len[c] && !memcmp(want->text, got.text[c], want->len),
                   "choice %d: '%s' vs alone '%s'", c, got.text[c], want->text);
        }
        CHECK_EQ_INT(got.done.prompt_tokens, alone[0].done.prompt_tokens + alone[1].done.prompt_tokens);
        CHECK_EQ_INT(got.done.completion_tokens, 2 * (alone[0].done.completion_tokens +
                                                      alone[1].done.completion_tokens));
    }
    engine_stats stats;
    engine_get_stats(e, &stats);
    CHECK_EQ_INT(stats.kv_tokens_reserved, 0);
    /* 3 prompts x 2 choices: more than the 4 slots; 5 x 2: more than GEN_MAX_CHOICES */
    gen_prompt many[5];
    for (int i = 0; i < 5; i++)
        many[i] = (gen_prompt){.text = "Hi", .len = 2};
    p.prompts = many;
    p.n_prompts = 3;
    CHECK_EQ_INT(engine_submit(e, NULL, 0, &p, &r, &err), GEN_ERR_CHOICES);
    CHECKF(strstr(err.msg, "6 choices") != NULL, "%s", err.msg);
    p.n_prompts = 5;
    CHECK_EQ_INT(engine_submit(e, NULL, 0, &p, &r, &err), GEN_ERR_CHOICES);
    /* several prompts are raw text or token ids, never chat messages */
    p.n_prompts = 2;
    p.raw = false;
    CHECK_EQ_INT(engine_submit(e, NULL, 0, &p, &r, &err), GEN_ERR_INVALID);
    /* cancelled while the prompts are read: every choice ends */
    p = greedy(200);
    p.raw = true;
    p.n_choices = 2;
    p.prompts = prompts;
    p.n_prompts = 2;
    if (engine_submit(e, NULL, 0, &p, &r, &err) == GEN_OK) {
        gen_cancel(r);
        choices_result got;
        collect_choices(r, &got);
        CHECK_EQ_INT(got.done.finish, GEN_FINISH_CANCELLED);
        gen_release(r);
    }
    engine_free(e);
}

/* Constrained decoding through the scheduler: GBNF and JSON Schema answers are
 * sentences of their grammar, end where it is complete, keep stop strings, work
 * for every choice of n, and a grammar that does not compile is refused. */
static gen_params constrained(enum gen_constraint kind, const char *text, float temperature, uint64_t seed)
{
    gen_params p = greedy(64);
    p.sampling.temperature = temperature;
    p.sampling.seed = seed;
    p.constraint = kind;
    p.constraint_text = text;
    p.constraint_len = text ? strlen(text) : 0;
    return p;
}

static void test_constrained(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 2, .prefix_cache = true});
    if (!e)
        return;
    for (uint64_t seed = 0; seed < 6; seed++) {
        gen_params p = constrained(GEN_CONSTRAINT_GBNF, "root ::= (\"yes\" | \"no\") \" \" [0-9]{1,2}", 1.5f, seed);
        result r;
        generate(e, "Once upon a time", &p, &r);
        bool ok = r.len >= 3 && (!strncmp(r.text, "yes ", 4) || !strncmp(r.text, "no ", 3));
        const char *digits = strchr(r.text, ' ');
        ok = ok && digits && strlen(digits + 1) >= 1 && strlen(digits + 1) <= 2 &&
             strspn(digits + 1, "0123456789") == strlen(digits + 1);
        CHECKF(ok, "gbnf answer '%s'", r.text);
        CHECK_EQ_INT(r.done.finish, GEN_FINISH_STOP);

        p = constrained(GEN_CONSTRAINT_JSON_SCHEMA,
                        "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99},"
                        "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"n\",\"ok\"],\"additionalProperties\":false}",
                        1.0f, seed);
        p.max_tokens = 200;
        generate(e, "Once upon a time", &p, &r);
        if (r.done.finish == GEN_FINISH_STOP) {
            json_error_t jerr;
            json_t *v = json_loads(r.text, 0, &jerr);
            CHECKF(v && json_is_integer(json_object_get(v, "n")) && json_is_boolean(json_object_get(v, "ok")) &&
                       json_object_size(v) == 2 && json_integer_value(json_object_get(v, "n")) <= 99,
                   "schema answer '%s'", r.text);
            json_decref(v);
        }
    }
    /* stop strings still apply to a constrained answer */
    gen_params p = constrained(GEN_CONSTRAINT_GBNF, "root ::= \"abcabc\"", 0.0f, 1);
    const char *stop[1] = {"ca"};
    p.stop = stop;
    p.n_stop = 1;
    result r;
    generate(e, "Hi", &p, &r);
    CHECKF(!strcmp(r.text, "ab") && r.done.finish == GEN_FINISH_STOP, "'%s'", r.text);
    /* every choice is held to the grammar */
    p = constrained(GEN_CONSTRAINT_GBNF, "root ::= [a-c]{3}", 1.5f, 9);
    p.n_choices = 2;
    gen_request *req = NULL;
    if (submit_text(e, "Hi", &p, &req) == GEN_OK) {
        choices_result got;
        collect_choices(req, &got);
        gen_release(req);
        for (int c = 0; c < 2; c++)
            CHECKF(got.len[c] == 3 && strspn(got.text[c], "abc") == 3, "choice %d '%s'", c, got.text[c]);
    }
    /* lazy (tool_choice auto): an answer that opens with '{' is the grammar's; others are free */
    int32_t brace = tokenizer_find(e->tok, "{");
    if (brace < 0)
        brace = tokenizer_find(e->tok, "<0x7B>");
    CHECK(brace >= 0);
    int opened = 0, free_text = 0;
    for (uint64_t seed = 0; seed < 12; seed++) {
        p = constrained(GEN_CONSTRAINT_GBNF, "root ::= \"{\\\"a\\\":1}\"", 1.0f, seed);
        p.constraint_lazy = true;
        p.max_tokens = 12;
        gen_logit_bias push = {brace, 100.0f}; /* every other answer is pushed to open a call */
        p.logit_bias = &push;
        p.n_logit_bias = seed % 2;
        generate(e, "Once upon a time", &p, &r);
        size_t lead = strspn(r.text, " \t\n\r");
        if (r.text[lead] == '{' || r.text[lead] == '[') {
            opened++;
            CHECKF(!strcmp(r.text + lead, "{\"a\":1}"), "lazy call '%s'", r.text);
        } else {
            free_text++;
        }
    }
    CHECKF(opened >= 6 && free_text > 0, "opened %d, free %d", opened, free_text);
    /* refusals */
    chat_message m = {.role = CHAT_ROLE_USER, .text = "Hi", .len = 2};
    el_err err = {{0}};
    p = constrained(GEN_CONSTRAINT_GBNF, "root ::= (", 0, 1);
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &req, &err), GEN_ERR_CONSTRAINT);
    CHECK(err.msg[0] != '\0');
    p = constrained(GEN_CONSTRAINT_JSON_SCHEMA, "{\"$ref\":\"#/nowhere\"}", 0, 1);
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &req, &err), GEN_ERR_CONSTRAINT);
    p = constrained(GEN_CONSTRAINT_JSON_SCHEMA, NULL, 0, 1);
    CHECK_EQ_INT(engine_submit(e, &m, 1, &p, &req, &err), GEN_ERR_CONSTRAINT);
    engine_free(e);
}

/* ---- the shared KV pool ------------------------------------------------------------ */

/* -c is the pool all slots share: a request waits until its prompt plus max_tokens
 * fit beside the running ones, one that never can is refused, and max_tokens is cut
 * to what the pool leaves each choice. */
static void test_pool_admission(void)
{
    /* two slots, 160 positions: one request of 5 + 120 at a time */
    engine *e = start(stories_path, (engine_opts){.n_slots = 2, .n_ctx = 160, .prefix_cache = true});
    if (!e)
        return;
    engine_info info;
    engine_get_info(e, &info);
    CHECK_EQ_INT(info.n_ctx_pool, 160);
    CHECK_EQ_INT(info.n_ctx, 160);
    CHECK(info.kv_bytes_per_token > 0);
    gen_params p = greedy(120);
    p.raw = true;
    result alone[2], got[2];
    generate(e, "Once upon a time", &p, &alone[0]);
    generate(e, "One day, a big bird", &p, &alone[1]);
    CHECK_EQ_INT(alone[0].done.completion_tokens, 120);

    double before = engine_now_ms();
    gen_request *r[2] = {0};
    submit_text(e, "Once upon a time", &p, &r[0]);
    submit_text(e, "One day, a big bird", &p, &r[1]);
    double submitted = engine_now_ms() - before;
    for (int i = 0; i < 2; i++) {
        if (!r[i])
            continue;
        collect(r[i], &got[i]);
        gen_release(r[i]);
        CHECKF(!strcmp(got[i].text, alone[i].text), "request %d\nwant: %s\ngot:  %s", i, alone[i].text,
               got[i].text);
    }
    /* a slot was free, but the pool was not: the second started when the first ended */
    double first_end = got[0].done.queue_ms + got[0].done.prompt_ms + got[0].done.generate_ms;
    CHECKF(got[1].done.queue_ms + submitted + 0.01 >= first_end, "queued %.3f ms + %.3f, first ended at %.3f",
           got[1].done.queue_ms, submitted, first_end);
    engine_stats st;
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.kv_tokens_reserved, 0);
    CHECK(st.kv_tokens_cached <= 160);

    /* never fits: refused at once; the pool cuts max_tokens for two choices */
    gen_request *x = NULL;
    el_err err = {{0}};
    static char long_prompt[2048];
    long_prompt[0] = '\0';
    for (int i = 0; i < 15; i++) /* about 90 tokens: two of them do not fit in 160 */
        strcat(long_prompt, "the cat sat. ");
    chat_message m = {.role = CHAT_ROLE_USER, .text = long_prompt, .len = strlen(long_prompt)};
    gen_params two = greedy(500);
    two.raw = true;
    two.n_choices = 2;
    CHECK_EQ_INT(engine_submit(e, &m, 1, &two, &x, &err), GEN_ERR_CONTEXT);
    CHECKF(strstr(err.msg, "pool") != NULL, "%s", err.msg);
    CHECK(x == NULL);
    if (submit_text(e, "Once upon a time", &two, &x) == GEN_OK) {
        choices_result c;
        collect_choices(x, &c);
        gen_release(x);
        CHECK_EQ_INT(c.tokens[0], 160 / 2 - 5);
        CHECK_EQ_INT(c.tokens[1], 160 / 2 - 5);
    }
    engine_free(e);
}

/* Finished conversations keep their caches only while the pool has room: a request
 * that needs it cuts the least recently used first, and what is left still serves. */
static void test_pool_eviction(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 2, .n_ctx = 100, .prefix_cache = true});
    if (!e)
        return;
    gen_params p = greedy(40);
    p.raw = true;
    result a, b, c, again;
    generate(e, "Once upon a time", &p, &a);          /* slot 0 keeps about 44 */
    generate(e, "One day, a big bird", &p, &b);       /* slot 1 (the LRU) keeps about 46 */
    engine_stats st;
    engine_get_stats(e, &st);
    CHECK(st.kv_tokens_cached >= 80 && st.kv_tokens_cached <= 100);
    /* lands in slot 0 (least recently used), and needs 5 + 90: slot 1 gives way */
    gen_params big = greedy(90);
    big.raw = true;
    generate(e, "Tim had a red ball. He", &big, &c);
    CHECK_EQ_INT(c.done.finish, GEN_FINISH_LENGTH);
    engine_get_stats(e, &st);
    CHECKF(st.kv_tokens_cached <= 100, "cached %d", st.kv_tokens_cached);
    /* b's cache was cut: asking again reuses less than all of its prompt, same text */
    generate(e, "One day, a big bird", &p, &again);
    CHECKF(!strcmp(again.text, b.text), "\nwant: %s\ngot:  %s", b.text, again.text);
    CHECKF(again.done.cached_tokens < again.done.prompt_tokens - 1, "cached %d of %d", again.done.cached_tokens,
           again.done.prompt_tokens);
    engine_free(e);
}

/* A prompt whose start another slot holds copies it from there, even when that
 * slot cannot take it (a match of less than half its cache keeps the longer
 * conversation where it is). */
static void test_prefix_copied_across_slots(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 2, .n_ctx = 512, .prefix_cache = true});
    engine *fresh = start(stories_path, (engine_opts){.n_ctx = 512, .prefix_cache = false});
    if (!e || !fresh)
        goto out;
    gen_params p = greedy(100);
    p.raw = true;
    const char *story = "Once upon a time, there was a little girl named Lily. She";
    const char *turn = "Once upon a time, there was a little girl named Lily. She liked red";
    result a, b, want, a_again;
    generate(e, story, &p, &a); /* slot 0: about 115 positions */
    gen_params q = greedy(20);
    q.raw = true;
    generate(e, turn, &q, &b);  /* shares about 15: slot 1, copying them */
    generate(fresh, turn, &q, &want);
    CHECKF(b.done.cached_tokens >= 10, "cached %d of %d", b.done.cached_tokens, b.done.prompt_tokens);
    CHECKF(!strcmp(b.text, want.text), "\ncopied: %s\nfresh:  %s", b.text, want.text);
    /* slot 0 still holds the whole first conversation */
    generate(e, story, &p, &a_again);
    CHECK_EQ_INT(a_again.done.cached_tokens, a_again.done.prompt_tokens - 1);
    CHECK(!strcmp(a_again.text, a.text));
out:
    engine_free(e);
    engine_free(fresh);
}

/* A long prompt is read in chunks between the running slots' decode steps: a
 * stream that has 30 tokens to go ends before a 150-token prompt beside it gets its
 * first token (read whole in one step, it would not), and chunking changes no text. */
static void test_prompt_chunks_interleave(void)
{
    engine *e = start(stories_path, (engine_opts){.n_slots = 2, .n_ctx = 1024, .prompt_chunk = 4});
    engine *alone = start(stories_path, (engine_opts){.n_ctx = 512});
    if (!e || !alone)
        goto out;
    static char long_prompt[4096];
    long_prompt[0] = '\0';
    for (int i = 0; i < 12; i++)
        strcat(long_prompt, "Lily and Tom went to the park. ");
    gen_params g = greedy(31), l = greedy(8);
    g.raw = l.raw = true;
    result want_g, want_l, got_g, got_l;
    generate(alone, "Once upon a time", &g, &want_g);
    generate(alone, long_prompt, &l, &want_l);
    CHECK(want_l.done.prompt_tokens > 4 * 32);
    gen_request *rg = NULL, *rl = NULL;
    if (submit_text(e, "Once upon a time", &g, &rg) != GEN_OK)
        goto out;
    gen_event ev;
    CHECK(gen_next(rg, &ev, -1) == 1 && ev.kind == GEN_EVENT_TEXT); /* generating */
    static char first_l[4096];
    first_l[0] = '\0';
    if (submit_text(e, long_prompt, &l, &rl) == GEN_OK) {
        CHECK(gen_next(rl, &ev, -1) == 1);
        if (ev.kind == GEN_EVENT_TEXT && ev.len < sizeof first_l) {
            memcpy(first_l, ev.text, ev.len);
            first_l[ev.len] = '\0';
        }
        /* the first stream's end was posted before this first token */
        bool g_done = false;
        while (!g_done && gen_next(rg, &ev, 0) == 1)
            g_done = ev.kind == GEN_EVENT_DONE;
        CHECK(g_done);
        collect(rl, &got_l);
        gen_release(rl);
        size_t n = strlen(first_l);
        CHECKF(!strncmp(first_l, want_l.text, n) && !strcmp(got_l.text, want_l.text + n), "\nwant: %s\ngot:  %s%s",
               want_l.text, first_l, got_l.text);
    }
    collect(rg, &got_g);
    gen_release(rg);
    CHECK_EQ_INT(got_g.done.completion_tokens, 31);
out:
    engine_free(e);
    engine_free(alone);
}

/* --parallel auto: as many slots as kv_memory holds at min(training context, 4096)
 * positions each, at most max(4, 2 x threads); little memory: one slot and a pool
 * of what it holds. */
static void test_auto_slots(void)
{
    engine *probe = start(stories_path, (engine_opts){0});
    if (!probe)
        return;
    engine_info pi;
    engine_get_info(probe, &pi);
    engine_free(probe);
    uint64_t bpt = pi.kv_bytes_per_token;
    int per_slot = pi.n_ctx; /* the default: min(training, 4096) */
    engine *e = start(stories_path, (engine_opts){.n_slots = ENGINE_SLOTS_AUTO, .kv_memory = 3 * per_slot * bpt});
    if (e) {
        engine_info info;
        engine_get_info(e, &info);
        CHECK_EQ_INT(info.n_slots, 3);
        CHECK_EQ_INT(info.n_ctx_pool, 3 * per_slot);
        CHECK_EQ_INT(info.n_ctx, per_slot);
        engine_free(e);
    }
    e = start(stories_path, (engine_opts){.n_slots = ENGINE_SLOTS_AUTO, .kv_memory = 100 * per_slot * bpt});
    if (e) {
        engine_info info;
        engine_get_info(e, &info);
        CHECK_EQ_INT(info.n_slots, 4); /* 2 threads */
        engine_free(e);
    }
    e = start(stories_path, (engine_opts){.n_slots = ENGINE_SLOTS_AUTO, .kv_memory = 300 * bpt});
    if (e) {
        engine_info info;
        engine_get_info(e, &info);
        CHECK_EQ_INT(info.n_slots, 1);
        CHECK_EQ_INT(info.n_ctx_pool, 300);
        CHECK_EQ_INT(info.n_ctx, 300);
        engine_free(e);
    }
}

/* Resident bytes of this process (/proc/self/statm). */
static uint64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The pool costs what its sequences hold: a wiping truncate gives the pages back. */
static void test_kv_pages_returned(void)
{
    enum { CTX = 2048, CHUNK = 256 };
    el_err err = {{0}};
    model *m = model_load(stories_path, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (!m)
        return;
    size_t bpt = kv_cache_bytes_per_token(m, MODEL_CACHE_F16);
    kv_cache *kv = kv_cache_create(m, MODEL_CACHE_F16, 2, CTX, &err);
    model_ctx *ctx = model_ctx_create(m, CHUNK, NULL, &err);
    float *logits = malloc((size_t)model_hparams_of(m)->n_vocab * sizeof *logits);
    int32_t tok[CHUNK], pos[CHUNK], seq[CHUNK];
    bool ok = kv && ctx && logits;
    CHECK(ok);
    uint64_t empty = resident_bytes();
    for (int at = 0; ok && at < CTX; at += CHUNK) {
        for (int i = 0; i < CHUNK; i++) {
            tok[i] = 1 + (at + i) % 50;
            pos[i] = at + i;
            seq[i] = 1;
        }
        model_batch b = {.n_tokens = CHUNK, .token = tok, .pos = pos, .seq = seq};
        ok = model_forward(ctx, kv, &b, logits, &err) == 0;
        CHECKF(ok, "%s", err.msg);
    }
    uint64_t full = resident_bytes();
    CHECKF(full >= empty + bpt * CTX * 3 / 4, "resident %llu -> %llu, %zu per position",
           (unsigned long long)empty, (unsigned long long)full, bpt);
    if (ok) {
        kv_cache_truncate(kv, 1, 0, true);
        uint64_t after = resident_bytes();
        CHECKF(full >= after + bpt * CTX * 3 / 4, "resident %llu after truncating from %llu",
               (unsigned long long)after, (unsigned long long)full);
        CHECK_EQ_INT(kv_cache_seq_len(kv, 1), 0);
    }
    free(logits);
    model_ctx_free(ctx);
    kv_cache_free(kv);
    model_free(m);
}

/* Available memory: the system's, or less when a cgroup (v2 at any level up, or
 * v1) limits it; page cache counts as available. */
static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_available_memory(void)
{
    char root[] = "/tmp/elliott-capacity-XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(false);
        return;
    }
    char dir[512];
    const char *dirs[] = {"/proc", "/proc/self", "/sys", "/sys/fs", "/sys/fs/cgroup", "/sys/fs/cgroup/a",
                          "/sys/fs/cgroup/a/b", "/sys/fs/cgroup/memory"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(dir, sizeof dir, "%s%s", root, dirs[i]);
        mkdir(dir, 0700);
    }
    snprintf(dir, sizeof dir, "%s/proc", root);
    write_file(dir, "meminfo", "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n");
    CHECK_EQ_INT(engine_available_memory(root), 8000000ull * 1024);
    snprintf(dir, sizeof dir, "%s/proc/self", root);
    write_file(dir, "cgroup", "0::/a/b\n");
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/a/b", root);
    write_file(dir, "memory.max", "max\n");
    CHECK_EQ_INT(engine_available_memory(root), 8000000ull * 1024);
    /* the parent limits: 4 GiB, 3 GiB used of which 1 GiB page cache */
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/a", root);
    write_file(dir, "memory.max", "4294967296\n");
    write_file(dir, "memory.current", "3221225472\n");
    write_file(dir, "memory.stat", "anon 2147483648\nfile 1073741824\n");
    CHECK_EQ_INT(engine_available_memory(root), 2147483648ull);
    /* v1 beside it, tighter */
    snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/memory", root);
    write_file(dir, "memory.limit_in_bytes", "1073741824\n");
    write_file(dir, "memory.usage_in_bytes", "536870912\n");
    CHECK_EQ_INT(engine_available_memory(root), 536870912ull);
    CHECK_EQ_INT(engine_available_memory("/nonexistent-root"), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    argv0 = argv[0];
    RUN(test_stop_filter);
    RUN(test_greedy_equals_direct);
    RUN(test_gemma_chat_equals_direct);
    RUN(test_batching_equals_alone);
    RUN(test_gemma_batching_equals_alone);
    RUN(test_slow_consumer_coalesced);
    RUN(test_max_tokens_and_context);
    RUN(test_stop_strings);
    RUN(test_cancel);
    RUN(test_queue_full_and_queued_cancel);
    RUN(test_prefix_cache);
    RUN(test_invalid_requests);
    RUN(test_not_ready_and_failed);
    RUN(test_model_in_memory);
    RUN(test_free_with_requests_held);
    RUN(test_threaded_consumers);
    RUN(test_logprobs_and_bias);
    RUN(test_choices);
    RUN(test_prompt_groups);
    RUN(test_constrained);
    RUN(test_fill_in_middle);
    RUN(test_pool_admission);
    RUN(test_pool_eviction);
    RUN(test_prefix_copied_across_slots);
    RUN(test_prompt_chunks_interleave);
    RUN(test_auto_slots);
    RUN(test_kv_pages_returned);
    RUN(test_available_memory);
    return test_summary();
}

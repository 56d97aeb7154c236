/* The model layer on random-weight models it writes itself: tensor lists, hparams
 * defaults, rejection of broken files, write/load round trips, determinism, long
 * runs past the sliding window, and the KV cache's sequence bookkeeping. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "test.h"

static char tmpdir[] = "/tmp/elliott-model-test-XXXXXX";
static threadpool *pool;

static const char *tmp_path(const char *name)
{
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static int write_tiny(const char *path, enum model_arch arch, const char *shape, uint32_t type, uint64_t seed,
                      int window)
{
    model_random_options o = {.arch = arch, .shape = shape, .type = type, .n_vocab = 96, .seed = seed,
                              .sliding_window = window};
    el_err err = {{0}};
    int rc = model_write_random(path, &o, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return rc;
}

/* ---- tensor lists -------------------------------------------------------------------- */

typedef struct tensor_count {
    int total, norms;
    int64_t q_ne0, q_ne1;
    bool q_norm_seen;
} tensor_count;

static int count_tensor(void *p, const model_tensor_desc *d, el_err *err)
{
    tensor_count *c = p;
    c->total++;
    c->norms += d->kind == MODEL_TENSOR_VECTOR;
    if (!strcmp(d->name, "blk.0.attn_q.weight")) {
        c->q_ne0 = d->ne[0];
        c->q_ne1 = d->ne[1];
        CHECK_EQ_INT(d->n_dims, 2);
    }
    if (!strcmp(d->name, "blk.1.attn_q_norm.weight")) {
        c->q_norm_seen = true;
        CHECK_EQ_INT(d->n_dims, 1);
        CHECK(d->kind == MODEL_TENSOR_VECTOR);
    }
    return 0;
}

static void test_for_each_tensor(void)
{
    model_hparams hp = {.n_vocab = 100, .n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 1,
                        .head_dim_k = 16, .head_dim_v = 16, .n_ff = 128, .n_rot = 16};
    model_hparams_uniform_layers(&hp);
    static const struct { enum model_arch arch; int per_layer, norms_per_layer; bool q_norm; } want[] = {
        {MODEL_ARCH_LLAMA, 9, 2, false},
        {MODEL_ARCH_GEMMA, 9, 2, false},
        {MODEL_ARCH_GEMMA2, 11, 4, false},
        {MODEL_ARCH_GEMMA3, 13, 6, true},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        hp.arch = want[i].arch;
        tensor_count c = {0};
        CHECK_EQ_INT(model_for_each_tensor(&hp, count_tensor, &c, NULL), 0);
        CHECK_EQ_INT(c.total, 2 + 2 * want[i].per_layer);
        CHECK_EQ_INT(c.norms, 1 + 2 * want[i].norms_per_layer);
        CHECK_EQ_INT(c.q_ne0, 64);
        CHECK_EQ_INT(c.q_ne1, 4 * 16);
        CHECK_EQ_INT(c.q_norm_seen, want[i].q_norm);
    }
}

/* ---- hparams ------------------------------------------------------------------------- */

typedef struct meta {
    const char *arch;
    bool omit_head_count;
    float rope_factor;
} meta;

/* A file with only the required keys (and token_embd, which gives the vocabulary). */
static gguf_file *minimal_file(const meta *m, el_err *err)
{
    const char *path = tmp_path("minimal.gguf");
    gguf_writer *w = gguf_writer_create(err);
    char key[96];
#define SET_U32(suffix, v) (snprintf(key, sizeof key, "%s.%s", m->arch, suffix), gguf_writer_set_u32(w, key, v, err))
    gguf_writer_set_str(w, "general.architecture", m->arch, err);
    SET_U32("context_length", 4096);
    SET_U32("embedding_length", 64);
    SET_U32("block_count", 2);
    SET_U32("feed_forward_length", 128);
    if (!m->omit_head_count)
        SET_U32("attention.head_count", 8);
    if (!strcmp(m->arch, "gemma3"))
        SET_U32("attention.sliding_window", 16);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", m->arch);
    gguf_writer_set_f32(w, key, 1e-6f, err);
    if (m->rope_factor > 0) {
        snprintf(key, sizeof key, "%s.rope.scaling.factor", m->arch);
        gguf_writer_set_f32(w, key, m->rope_factor, err);
    }
#undef SET_U32
    int64_t ne[2] = {64, 10};
    gguf_writer_add_tensor(w, "token_embd.weight", GGUF_TYPE_F32, 2, ne, err);
    int rc = gguf_writer_write(w, path, NULL, NULL, err);
    gguf_writer_free(w);
    CHECKF(rc == 0, "%s", err->msg);
    return rc == 0 ? gguf_open(path, err) : NULL;
}

static void test_hparams_defaults(void)
{
    el_err err = {{0}};
    model_hparams hp;
    gguf_file *f = minimal_file(&(meta){"gemma2", false, 0}, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (!f)
        return;
    CHECKF(model_hparams_from_gguf(f, &hp, &err) == 0, "%s", err.msg);
    CHECK_EQ_INT(hp.arch, MODEL_ARCH_GEMMA2);
    CHECK_EQ_INT(hp.n_vocab, 10);
    CHECK_EQ_INT(hp.n_head_kv, 8);
    CHECK_EQ_INT(hp.head_dim_k, 8);
    CHECK_EQ_INT(hp.head_dim_v, 8);
    CHECK_EQ_INT(hp.n_rot, 8);
    CHECK_NEAR(hp.rope_base, 10000.0, 0);
    CHECK_NEAR(hp.rope_freq_scale, 1.0, 0);
    CHECK_NEAR(hp.attn_softcap, 50.0, 0);
    CHECK_NEAR(hp.final_softcap, 30.0, 0);
    CHECK_EQ_INT(hp.sliding_window, 4096);
    CHECK(model_layer_is_swa(&hp, 0) && !model_layer_is_swa(&hp, 1));
    CHECK_NEAR(hp.attn_scale, 1.0 / sqrt(8.0), 1e-7);
    gguf_close(f);

    f = minimal_file(&(meta){"gemma3", false, 8.0f}, &err);
    CHECKF(f && model_hparams_from_gguf(f, &hp, &err) == 0, "%s", err.msg);
    CHECK_NEAR(hp.rope_freq_scale, 0.125, 0);
    CHECK_NEAR(hp.rope_freq_scale_swa, 1.0, 0);
    CHECK_NEAR(hp.rope_base_swa, 10000.0, 0);
    CHECK_EQ_INT(hp.sliding_window, 16);
    for (int il = 0; il < 12; il++)
        CHECK_EQ_INT(model_layer_is_swa(&hp, il), il % 6 < 5);
    CHECK_NEAR(hp.attn_softcap, 0.0, 0);
    gguf_close(f);

    f = minimal_file(&(meta){"llama", true, 0}, &err);
    CHECK(f != NULL);
    CHECK_EQ_INT(model_hparams_from_gguf(f, &hp, &err), -1);
    CHECKF(strstr(err.msg, "llama.attention.head_count") != NULL, "%s", err.msg);
    gguf_close(f);

    f = minimal_file(&(meta){"mamba", false, 0}, &err);
    CHECK(f != NULL);
    CHECK_EQ_INT(model_hparams_from_gguf(f, &hp, &err), -1);
    CHECKF(strstr(err.msg, "mamba") != NULL, "%s", err.msg);
    gguf_close(f);
}

/* ---- broken models ------------------------------------------------------------------- */

typedef struct mutation {
    const char *tensor;
    enum { DROP, RESHAPE, RETYPE } what;
    uint32_t type;
} mutation;

typedef struct rewrite_ctx {
    const gguf_file *src;
    const mutation *mut;
} rewrite_ctx;

static int copy_data(void *p, uint64_t index, const char *name, void *buf, uint64_t nbytes, el_err *err)
{
    const rewrite_ctx *r = p;
    const gguf_tensor *t = gguf_find_tensor(r->src, name);
    if (t && t->nbytes == nbytes)
        memcpy(buf, t->data, nbytes);
    return 0;
}

/* Copies src to dst with one tensor dropped, reshaped or retyped. */
static int rewrite(const char *src_path, const char *dst_path, const mutation *mut)
{
    el_err err = {{0}};
    gguf_file *src = gguf_open(src_path, &err);
    gguf_writer *w = gguf_writer_create(&err);
    if (!src || !w)
        return -1;
    for (uint64_t i = 0; i < gguf_kv_count(src); i++)
        gguf_writer_copy_kv(w, gguf_kv_at(src, i), &err);
    for (uint64_t i = 0; i < gguf_tensor_count(src); i++) {
        const gguf_tensor *t = gguf_tensor_at(src, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t type = t->type;
        if (!strcmp(name, mut->tensor)) {
            if (mut->what == DROP)
                continue;
            if (mut->what == RESHAPE)
                ne[t->n_dims > 1 ? 1 : 0] += 1;
            if (mut->what == RETYPE)
                type = mut->type;
        }
        CHECKF(gguf_writer_add_tensor(w, name, type, t->n_dims, ne, &err) == 0, "%s", err.msg);
    }
    rewrite_ctx r = {src, mut};
    int rc = gguf_writer_write(w, dst_path, copy_data, &r, &err);
    CHECKF(rc == 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_close(src);
    return rc;
}

static void expect_rejected(const char *good, const mutation *mut, const char *want1, const char *want2)
{
    const char *bad = tmp_path("broken.gguf");
    if (rewrite(good, bad, mut) < 0)
        return;
    el_err err = {{0}};
    model *m = model_load(bad, NULL, &err);
    CHECKF(m == NULL, "%s accepted", mut->tensor);
    CHECKF(strstr(err.msg, want1) && strstr(err.msg, want2), "message: %s", err.msg);
    model_free(m);
}

static void test_rejects_broken_models(void)
{
    const char *good = tmp_path("good.gguf");
    if (write_tiny(good, MODEL_ARCH_GEMMA3, "tiny", GGUF_TYPE_Q8_0, 1, 0) < 0)
        return;
    expect_rejected(good, &(mutation){"blk.1.ffn_up.weight", DROP, 0}, "blk.1.ffn_up.weight", "missing");
    expect_rejected(good, &(mutation){"blk.0.attn_k_norm.weight", DROP, 0}, "attn_k_norm", "missing");
    expect_rejected(good, &(mutation){"blk.0.attn_v.weight", RESHAPE, 0}, "blk.0.attn_v.weight", "shape");
    expect_rejected(good, &(mutation){"output_norm.weight", RESHAPE, 0}, "output_norm.weight", "shape");
    expect_rejected(good, &(mutation){"blk.1.attn_q.weight", RETYPE, GGUF_TYPE_F64}, "blk.1.attn_q.weight", "F64");
    expect_rejected(good, &(mutation){"blk.0.attn_norm.weight", RETYPE, GGUF_TYPE_F64}, "attn_norm", "F64");
    expect_rejected(good, &(mutation){"token_embd.weight", RETYPE, GGUF_TYPE_I32}, "token_embd", "I32");
}

/* ---- random models -------------------------------------------------------------------- */

static bool same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = false;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void test_round_trip_and_determinism(void)
{
    static const enum model_arch archs[] = {MODEL_ARCH_LLAMA, MODEL_ARCH_GEMMA, MODEL_ARCH_GEMMA2, MODEL_ARCH_GEMMA3};
    static const uint32_t types[] = {GGUF_TYPE_F32, GGUF_TYPE_F16, GGUF_TYPE_Q8_0, GGUF_TYPE_Q4_0};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        const char *a = tmp_path("a.gguf"), *b = tmp_path("b.gguf"), *c = tmp_path("c.gguf");
        uint32_t type = types[i];
        if (write_tiny(a, archs[i], "tiny", type, 42, 0) < 0 || write_tiny(b, archs[i], "tiny", type, 42, 0) < 0 ||
            write_tiny(c, archs[i], "tiny", type, 43, 0) < 0)
            return;
        CHECKF(same_file(a, b), "%s: same seed, different bytes", model_arch_name(archs[i]));
        CHECKF(!same_file(a, c), "%s: different seeds, same bytes", model_arch_name(archs[i]));
        el_err err = {{0}};
        model *m = model_load(a, NULL, &err);
        CHECKF(m != NULL, "%s", err.msg);
        if (!m)
            continue;
        const model_hparams *hp = model_hparams_of(m);
        CHECK_EQ_INT(hp->arch, archs[i]);
        CHECK_EQ_INT(hp->n_embd, 64);
        CHECK_EQ_INT(hp->n_layer, 2);
        CHECK_EQ_INT(hp->n_head, 4);
        CHECK_EQ_INT(hp->n_head_kv, 1);
        CHECK_EQ_INT(hp->head_dim_k, 16);
        CHECK_EQ_INT(hp->n_vocab, 96);
        CHECK(model_weight_bytes(m) > 0);
        model_free(m);
    }
}

typedef struct runner {
    model *m;
    kv_cache *kv;
    model_ctx *ctx;
    int n_vocab;
} runner;

static int runner_open(runner *r, const char *path, int n_seq, int n_ctx, int max_batch)
{
    el_err err = {{0}};
    memset(r, 0, sizeof *r);
    r->m = model_load(path, NULL, &err);
    if (r->m) {
        r->kv = kv_cache_create(r->m, MODEL_CACHE_F16, n_seq, n_ctx, &err);
        r->ctx = model_ctx_create(r->m, max_batch, pool, &err);
        r->n_vocab = model_hparams_of(r->m)->n_vocab;
    }
    CHECKF(r->m && r->kv && r->ctx, "%s", err.msg);
    return r->m && r->kv && r->ctx ? 0 : -1;
}

static void runner_close(runner *r)
{
    model_ctx_free(r->ctx);
    kv_cache_free(r->kv);
    model_free(r->m);
}

/* Appends tokens to sequence seq; logits for every token when all, else the last. */
static int run_seq(runner *r, int seq, const int32_t *tok, int n, bool all, float *logits, el_err *err)
{
    int32_t pos[256], sq[256];
    bool want[256];
    for (int i = 0; i < n; i++) {
        pos[i] = kv_cache_seq_len(r->kv, seq) + i;
        sq[i] = seq;
        want[i] = all || i == n - 1;
    }
    model_batch b = {n, tok, pos, sq, want};
    return model_forward(r->ctx, r->kv, &b, logits, err);
}

static void token_stream(int32_t *tok, int n, uint32_t seed, int n_vocab)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        tok[i] = (int32_t)((seed >> 8) % (uint32_t)n_vocab);
    }
}

/* 2048 positions, far past a window of 8, in batches of 256: every logit finite. */
static void long_run_finite(enum model_arch arch)
{
    const char *path = tmp_path("long.gguf");
    runner r;
    if (write_tiny(path, arch, "tiny", GGUF_TYPE_Q8_0, 5, 8) < 0 || runner_open(&r, path, 1, 2048, 256) < 0)
        return;
    float *logits = malloc((size_t)256 * r.n_vocab * sizeof(float));
    int32_t tok[256];
    int bad = 0;
    el_err err = {{0}};
    for (int start = 0; start < 2048; start += 256) {
        token_stream(tok, 256, (uint32_t)start, r.n_vocab);
        if (run_seq(&r, 0, tok, 256, true, logits, &err) < 0) {
            CHECKF(0, "%s", err.msg);
            break;
        }
        for (int i = 0; i < 256 * r.n_vocab; i++)
            bad += !isfinite(logits[i]);
    }
    CHECKF(bad == 0, "%s: %d non-finite logits", model_arch_name(arch), bad);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 2048);
    free(logits);
    runner_close(&r);
}

static void test_no_nan_over_2048_positions(void)
{
    long_run_finite(MODEL_ARCH_GEMMA2);
    long_run_finite(MODEL_ARCH_GEMMA3);
}

/* Gemma 3 "tiny" has two layers, both local with a window of 4: a token 8 or more
 * positions back cannot reach the output at all, so changing it changes nothing
 * (bit for bit); gemma2's second layer is global, so there it must matter. */
static void window_reach(enum model_arch arch, bool expect_same)
{
    const char *path = tmp_path("window.gguf");
    runner r;
    if (write_tiny(path, arch, "tiny", GGUF_TYPE_F32, 9, 4) < 0 || runner_open(&r, path, 2, 64, 64) < 0)
        return;
    int32_t a[32], b[32];
    token_stream(a, 32, 77, r.n_vocab);
    memcpy(b, a, sizeof a);
    b[0] = (a[0] + 1) % r.n_vocab;
    float *la = malloc((size_t)r.n_vocab * sizeof(float)), *lb = malloc((size_t)r.n_vocab * sizeof(float));
    el_err err = {{0}};
    CHECK_EQ_INT(run_seq(&r, 0, a, 32, false, la, &err), 0);
    CHECK_EQ_INT(run_seq(&r, 1, b, 32, false, lb, &err), 0);
    bool same = memcmp(la, lb, (size_t)r.n_vocab * sizeof(float)) == 0;
    CHECKF(same == expect_same, "%s: logits %s", model_arch_name(arch), same ? "unchanged" : "changed");
    free(la);
    free(lb);
    runner_close(&r);
}

static void test_sliding_window_reach(void)
{
    window_reach(MODEL_ARCH_GEMMA3, true);
    window_reach(MODEL_ARCH_GEMMA2, false);
}

static double max_rel_diff(const float *a, const float *b, int n)
{
    double worst = 0;
    for (int i = 0; i < n; i++)
        worst = fmax(worst, fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i])));
    return worst;
}

static void test_kv_cache_sequences(void)
{
    const char *path = tmp_path("kv.gguf");
    runner r;
    if (write_tiny(path, MODEL_ARCH_GEMMA, "tiny-mha", GGUF_TYPE_F32, 11, 0) < 0 ||
        runner_open(&r, path, 3, 64, 64) < 0)
        return;
    int n_vocab = r.n_vocab;
    int32_t tok[40];
    token_stream(tok, 40, 5, n_vocab);
    float *full = malloc((size_t)n_vocab * sizeof(float)), *again = malloc((size_t)n_vocab * sizeof(float));
    el_err err = {{0}};
    CHECK_EQ_INT(run_seq(&r, 0, tok, 40, false, full, &err), 0);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 40);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 1), 0);

    /* Truncating and re-evaluating the tail reproduces the logits. */
    kv_cache_truncate(r.kv, 0, 25, true);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 25);
    CHECK_EQ_INT(run_seq(&r, 0, tok + 25, 15, false, again, &err), 0);
    CHECKF(max_rel_diff(again, full, n_vocab) < 1e-4, "after truncate: %g", max_rel_diff(again, full, n_vocab));

    /* A prefix evaluated without any logits still fills the cache. */
    kv_cache_truncate(r.kv, 0, 0, true);
    bool none[20] = {false};
    int32_t pos20[20], seq20[20];
    for (int i = 0; i < 20; i++)
        pos20[i] = i, seq20[i] = 0;
    model_batch silent = {20, tok, pos20, seq20, none};
    CHECK_EQ_INT(model_forward(r.ctx, r.kv, &silent, NULL, &err), 0);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 20);
    CHECK_EQ_INT(run_seq(&r, 0, tok + 20, 20, false, again, &err), 0);
    CHECKF(max_rel_diff(again, full, n_vocab) < 1e-4, "after a silent prefix: %g", max_rel_diff(again, full, n_vocab));

    /* Another sequence with other tokens does not disturb sequence 0. */
    int32_t other[10];
    token_stream(other, 10, 99, n_vocab);
    CHECK_EQ_INT(run_seq(&r, 2, other, 10, false, again, &err), 0);
    kv_cache_truncate(r.kv, 0, 39, false);
    CHECK_EQ_INT(run_seq(&r, 0, tok + 39, 1, false, again, &err), 0);
    CHECKF(max_rel_diff(again, full, n_vocab) < 1e-4, "next to another sequence: %g", max_rel_diff(again, full, n_vocab));

    /* Bad batches fail and leave the cache as it was. */
    int32_t pos = 5, seq = 0, bad_tok = n_vocab, good_tok = 1, bad_seq = 3;
    model_batch gap = {1, &good_tok, &pos, &seq, NULL};
    CHECK_EQ_INT(model_forward(r.ctx, r.kv, &gap, again, &err), -1);
    CHECKF(strstr(err.msg, "position") != NULL, "%s", err.msg);
    pos = 40;
    model_batch oob = {1, &bad_tok, &pos, &seq, NULL};
    CHECK_EQ_INT(model_forward(r.ctx, r.kv, &oob, again, &err), -1);
    CHECKF(strstr(err.msg, "out of range") != NULL, "%s", err.msg);
    model_batch bad_s = {1, &good_tok, &pos, &bad_seq, NULL};
    CHECK_EQ_INT(model_forward(r.ctx, r.kv, &bad_s, again, &err), -1);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 40);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 2), 10);

    /* The context is a hard limit. */
    int32_t many[30];
    token_stream(many, 30, 3, n_vocab);
    CHECK_EQ_INT(run_seq(&r, 0, many, 30, false, again, &err), -1);
    CHECKF(strstr(err.msg, "context") != NULL, "%s", err.msg);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 40);

    kv_cache_truncate(r.kv, 0, 0, true);
    CHECK_EQ_INT(kv_cache_seq_len(r.kv, 0), 0);
    free(full);
    free(again);
    runner_close(&r);
}

static void test_bad_sizes(void)
{
    const char *path = tmp_path("sizes.gguf");
    if (write_tiny(path, MODEL_ARCH_LLAMA, "tiny", GGUF_TYPE_F32, 1, 0) < 0)
        return;
    el_err err = {{0}};
    model *m = model_load(path, NULL, &err);
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK(kv_cache_create(m, MODEL_CACHE_F16, 0, 16, &err) == NULL);
    CHECK(kv_cache_create(m, MODEL_CACHE_F16, 1, -1, &err) == NULL);
    CHECK(kv_cache_create(m, MODEL_CACHE_F16, 1 << 20, 1 << 20, &err) == NULL);
    CHECK(model_ctx_create(m, 0, pool, &err) == NULL);
    model_random_options o = {.arch = MODEL_ARCH_GEMMA, .shape = "tiny", .type = GGUF_TYPE_Q4_K, .n_vocab = 10};
    CHECK_EQ_INT(model_write_random(tmp_path("k.gguf"), &o, &err), -1);
    CHECKF(strstr(err.msg, "block") != NULL, "%s", err.msg);
    o.shape = "no-such-shape";
    CHECK_EQ_INT(model_write_random(tmp_path("k.gguf"), &o, &err), -1);
    model_free(m);
}

/* The file at path, read whole into 64-byte aligned memory (NULL where it cannot be). */
static void *read_aligned(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = aligned_alloc(64, ((size_t)n + 63) & ~(size_t)63);
    bool ok = data && fread(data, 1, (size_t)n, f) == (size_t)n;
    CHECK(ok);
    fclose(f);
    if (!ok) {
        free(data);
        return NULL;
    }
    *size = (size_t)n;
    return data;
}

/* The logits of three tokens from a model loaded from memory (never repacked) and from
 * the mapped file of r agree up to the float summation order. */
static void check_same_logits(model *from_memory, runner *r, const int32_t tok[3])
{
    el_err err = {{0}};
    kv_cache *kv = kv_cache_create(from_memory, MODEL_CACHE_F16, 1, 16, &err);
    model_ctx *ctx = model_ctx_create(from_memory, 4, pool, &err);
    float *a = malloc((size_t)r->n_vocab * sizeof(float)), *b = malloc((size_t)r->n_vocab * sizeof(float));
    int32_t toks[3] = {tok[0], tok[1], tok[2]}, pos[3] = {0, 1, 2}, seq[3] = {0, 0, 0};
    model_batch batch = {3, toks, pos, seq, NULL};
    CHECK_EQ_INT(model_forward(ctx, kv, &batch, a, &err), 0);
    CHECK_EQ_INT(run_seq(r, 0, toks, 3, false, b, &err), 0);
    float worst = 0.0f, largest = 0.0f;
    for (int i = 0; i < r->n_vocab; i++) {
        worst = fmaxf(worst, fabsf(a[i] - b[i]));
        largest = fmaxf(largest, fabsf(b[i]));
    }
    CHECKF(largest > 0.0f && worst <= 1e-4f * largest, "logits differ by %g (largest %g)", worst, largest);
    free(a);
    free(b);
    model_ctx_free(ctx);
    kv_cache_free(kv);
}

/* A model held in memory (as the embedded default is) loads and runs like a file: the
 * same logits up to the float summation order (a mapped file's matrices are repacked
 * where the kernels have a faster layout; memory is read only, so its are not). */
static void test_load_from_memory(void)
{
    const char *path = tmp_path("memory.gguf");
    if (write_tiny(path, MODEL_ARCH_LLAMA, "tiny", GGUF_TYPE_Q8_0, 4, 0) < 0)
        return;
    size_t size = 0;
    void *data = read_aligned(path, &size);
    if (!data)
        return;
    el_err err = {{0}};
    model *m = model_load_memory(data, size, &err);
    CHECKF(m != NULL, "%s", err.msg);
    runner r;
    if (m && runner_open(&r, path, 1, 16, 4) == 0) {
        check_same_logits(m, &r, (const int32_t[3]){1, 2, 3});
        runner_close(&r);
    }
    model_free(m);
    free(data);
}

/* Lines of /proc/self/maps that lie within [lo, hi) and name no file: the blocks of a
 * mapped model's matrices that moved to anonymous (huge-page) memory. */
static int anonymous_ranges_within(uintptr_t lo, uintptr_t hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char path[256] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &a, &b, path) < 2)
            continue;
        n += a >= lo && b <= hi && path[0] == '\0';
    }
    fclose(f);
    return n;
}

/* A mapped model whose repacked output matrix (20000 x 256 Q8_0, 5.4 MB, tied to the
 * token table) spans whole 2 MiB blocks: they move to anonymous memory at the same
 * addresses (move_to_huge_pages) and the logits stay those of the same file loaded
 * from memory (not repacked). */
static void test_huge_page_blocks(void)
{
    const char *path = tmp_path("huge.gguf");
    model_random_options o = {.arch = MODEL_ARCH_GEMMA, .shape = "tiny-256", .type = GGUF_TYPE_Q8_0,
                              .n_vocab = 20000, .seed = 11};
    el_err err = {{0}};
    CHECKF(model_write_random(path, &o, &err) == 0, "%s", err.msg);
    size_t size = 0;
    void *data = read_aligned(path, &size);
    if (!data)
        return;
    model *from_memory = model_load_memory(data, size, &err);
    CHECKF(from_memory != NULL, "%s", err.msg);
    runner r;
    if (from_memory && runner_open(&r, path, 1, 16, 4) == 0) {
        const gguf_file *g = model_gguf(r.m);
        uintptr_t lo = (uintptr_t)gguf_base(g), hi = lo + gguf_size(g);
        kernels_matrix out = {.type = GGUF_TYPE_Q8_0, .rows = 20000, .cols = 256,
                              .row_bytes = gguf_row_size(GGUF_TYPE_Q8_0, 256)};
        if (kernels_can_repack(&out))
            CHECKF(anonymous_ranges_within(lo, hi) >= 1, "no block of the mapped file became anonymous memory");
        check_same_logits(from_memory, &r, (const int32_t[3]){19999, 5000, 3});
        runner_close(&r);
    }
    model_free(from_memory);
    free(data);
}

/* A Q8_0 cache: refused where a head is not whole blocks of 32; where it is, it
 * takes 34 bytes per 32 values instead of 64, keeps sequences apart, and its
 * logits stay near the F16 cache's (both only round the keys and values). */
static void test_q8_0_cache(void)
{
    el_err err = {{0}};
    const char *small = tmp_path("q8kv-16.gguf"), *path = tmp_path("q8kv-128.gguf");
    if (write_tiny(small, MODEL_ARCH_GEMMA, "tiny", GGUF_TYPE_F32, 1, 0) < 0 ||
        write_tiny(path, MODEL_ARCH_GEMMA3, "tiny-256", GGUF_TYPE_F32, 2, 0) < 0)
        return;
    model *m = model_load(small, NULL, &err);
    CHECK(m != NULL);
    if (m) {
        CHECK(kv_cache_create(m, MODEL_CACHE_Q8_0, 1, 16, &err) == NULL);
        CHECKF(strstr(err.msg, "multiple") != NULL, "%s", err.msg);
        model_free(m);
    }
    enum model_cache_type t;
    CHECK(model_cache_type_parse("q8_0", &t, &err) == 0 && t == MODEL_CACHE_Q8_0);
    CHECK(model_cache_type_parse("f16", &t, &err) == 0 && t == MODEL_CACHE_F16);
    CHECK(model_cache_type_parse("q4_0", &t, &err) == -1);
    runner f16, q8;
    if (runner_open(&f16, path, 2, 64, 32) < 0)
        return;
    if (runner_open(&q8, path, 2, 64, 32) < 0) {
        runner_close(&f16);
        return;
    }
    kv_cache_free(q8.kv);
    q8.kv = kv_cache_create(q8.m, MODEL_CACHE_Q8_0, 2, 64, &err);
    CHECKF(q8.kv != NULL, "%s", err.msg);
    CHECK(kv_cache_type(q8.kv) == MODEL_CACHE_Q8_0);
    CHECK(kv_cache_bytes_per_token(q8.m, MODEL_CACHE_Q8_0) * 64 ==
          kv_cache_bytes_per_token(q8.m, MODEL_CACHE_F16) * 34);
    int n_vocab = f16.n_vocab;
    float *a = malloc((size_t)40 * n_vocab * sizeof(float)), *b = malloc((size_t)40 * n_vocab * sizeof(float));
    float *c = malloc((size_t)n_vocab * sizeof(float));
    int32_t tok[40];
    token_stream(tok, 40, 7, n_vocab);
    if (q8.kv && a && b && c) {
        /* sequence 1 first, so that sequence 0's answer shows the two stay apart */
        CHECK_EQ_INT(run_seq(&q8, 1, tok + 20, 20, false, c, &err), 0);
        CHECK_EQ_INT(run_seq(&f16, 0, tok, 30, true, a, &err), 0);
        CHECK_EQ_INT(run_seq(&f16, 0, tok + 30, 10, true, a + (size_t)30 * n_vocab, &err), 0);
        CHECK_EQ_INT(run_seq(&q8, 0, tok, 30, true, b, &err), 0);
        CHECK_EQ_INT(run_seq(&q8, 0, tok + 30, 10, true, b + (size_t)30 * n_vocab, &err), 0);
        double worst = 0.0, scale = 0.0;
        for (size_t i = 0; i < (size_t)40 * n_vocab; i++) {
            double d = fabs((double)a[i] - b[i]);
            worst = d > worst ? d : worst;
            scale = fabs((double)a[i]) > scale ? fabs((double)a[i]) : scale;
        }
        /* Q8_0 rounds keys and values to ~0.4% of a block's largest; the logits move
         * by about as much of their range, far less than a wrong position would */
        CHECKF(worst > 0.0 && worst <= 0.03 * scale, "worst %g of %g", worst, scale);
    }
    free(a);
    free(b);
    free(c);
    runner_close(&q8);
    runner_close(&f16);
}

/* ---- gemma4 ------------------------------------------------------------------------- */

/* The layer table llama.cpp derives: the sliding pattern, per-layer head sizes and KV
 * heads, the double-wide MLP and shared KV of the trailing layers, K as V on full
 * layers of the MoE shape; then one batch equals token-by-token decoding. */
static void test_gemma4_layers(void)
{
    const char *dense = tmp_path("g4.gguf"), *moe = tmp_path("g4moe.gguf");
    if (write_tiny(dense, MODEL_ARCH_GEMMA4, "tiny-gemma4", GGUF_TYPE_Q8_0, 5, 0) < 0 ||
        write_tiny(moe, MODEL_ARCH_GEMMA4, "tiny-gemma4-moe", GGUF_TYPE_F32, 5, 0) < 0)
        return;
    el_err err = {{0}};
    model *m = model_load(dense, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) {
        const model_hparams *hp = model_hparams_of(m);
        CHECK_EQ_INT(hp->n_layer, 10);
        CHECK_EQ_INT(hp->n_layer_kv, 5);
        CHECK_EQ_INT(hp->n_embd_per_layer, 16);
        CHECK(hp->rope_freq_factors && hp->v_norm);
        for (int il = 0; il < 10; il++) {
            const model_layer_hparams *l = &hp->layer[il];
            CHECK_EQ_INT(l->swa, (il + 1) % 5 != 0);
            CHECK_EQ_INT(l->head_dim_k, l->swa ? 16 : 32);
            CHECK_EQ_INT(l->n_ff, il < 5 ? 256 : 512);
            CHECK_EQ_INT(l->kv_layer, il < 5 ? il : l->swa ? 3 : 4);
            CHECK(!l->v_from_k && !l->moe);
        }
        model_free(m);
    }
    m = model_load(moe, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) {
        const model_hparams *hp = model_hparams_of(m);
        CHECK_EQ_INT(hp->n_expert, 4);
        CHECK_EQ_INT(hp->n_expert_used, 2);
        for (int il = 0; il < 6; il++) {
            const model_layer_hparams *l = &hp->layer[il];
            CHECK_EQ_INT(l->n_head_kv, l->swa ? 2 : 1);
            CHECK_EQ_INT(l->v_from_k, !l->swa);
            CHECK(l->moe && l->kv_layer == il);
        }
        model_free(m);
    }
    const char *paths[] = {dense, moe};
    for (int i = 0; i < 2; i++) {
        runner r;
        if (runner_open(&r, paths[i], 2, 64, 32) < 0) {
            runner_close(&r);
            continue;
        }
        int32_t tok[20];
        token_stream(tok, 20, 7, r.n_vocab);
        float *batch = malloc(20 * (size_t)r.n_vocab * sizeof(float));
        float *one = malloc((size_t)r.n_vocab * sizeof(float));
        double worst = 0;
        CHECK(run_seq(&r, 0, tok, 20, true, batch, &err) == 0);
        for (int t = 0; t < 20; t++) {
            CHECK(run_seq(&r, 1, &tok[t], 1, false, one, &err) == 0);
            worst = fmax(worst, max_rel_diff(one, batch + (size_t)t * r.n_vocab, r.n_vocab));
        }
        CHECKF(worst < 1e-3, "%s: token by token differs from one batch by %g", paths[i], worst);
        for (int t = 0; t < r.n_vocab; t++)
            CHECK(isfinite(batch[t]));
        free(batch);
        free(one);
        runner_close(&r);
    }
}

static void test_gemma4_rejects_mismatched_shapes(void)
{
    model_random_options o = {.arch = MODEL_ARCH_GEMMA4, .shape = "tiny", .type = GGUF_TYPE_F32, .n_vocab = 10};
    el_err err = {{0}};
    CHECK_EQ_INT(model_write_random(tmp_path("x.gguf"), &o, &err), -1);
    CHECKF(strstr(err.msg, "gemma4") != NULL, "%s", err.msg);
    o.arch = MODEL_ARCH_GEMMA3;
    o.shape = "tiny-gemma4";
    CHECK_EQ_INT(model_write_random(tmp_path("x.gguf"), &o, &err), -1);
    CHECKF(strstr(err.msg, "gemma4 only") != NULL, "%s", err.msg);
}

/* Gemma 3n's table (sliding pattern from the metadata, AltUp and LAuReL sizes, sparse
 * first layers), and one batch equals token-by-token decoding through the streams. */
static void test_gemma3n(void)
{
    const char *path = tmp_path("g3n.gguf");
    if (write_tiny(path, MODEL_ARCH_GEMMA3N, "tiny-gemma3n", GGUF_TYPE_Q8_0, 4, 0) < 0)
        return;
    runner r;
    if (runner_open(&r, path, 2, 64, 32) < 0) {
        runner_close(&r);
        return;
    }
    const model_hparams *hp = model_hparams_of(r.m);
    CHECK(hp->n_altup == 4 && hp->altup_active == 0 && hp->n_laurel == 64 && hp->n_embd_per_layer == 256);
    CHECK(hp->layer[0].swa && !hp->layer[1].swa && hp->n_layer_sparse == 2 && hp->v_norm);
    CHECK_NEAR(hp->attn_scale, 1.0, 0);
    int32_t tok[16];
    token_stream(tok, 16, 5, r.n_vocab);
    float *batch = malloc(16 * (size_t)r.n_vocab * sizeof(float)), *one = malloc((size_t)r.n_vocab * sizeof(float));
    el_err err = {{0}};
    double worst = 0;
    CHECK(run_seq(&r, 0, tok, 16, true, batch, &err) == 0);
    for (int t = 0; t < 16; t++) {
        CHECK(run_seq(&r, 1, &tok[t], 1, false, one, &err) == 0);
        worst = fmax(worst, max_rel_diff(one, batch + (size_t)t * r.n_vocab, r.n_vocab));
    }
    CHECKF(worst < 1e-3, "gemma3n: token by token differs from one batch by %g", worst);
    free(batch);
    free(one);
    runner_close(&r);
}

/* ---- embeddings ------------------------------------------------------------------------ */

/* model_embed on an embedding model (its own mean pooling, unit length when normalized,
 * one sequence alone = the same sequence in a batch of two) and on a generative model
 * (only when a pooling is asked for; CLS of a sequence = the mean of its first token). */
static void test_embed(void)
{
    const char *emb = tmp_path("emb.gguf"), *gen = tmp_path("gen.gguf");
    if (write_tiny(emb, MODEL_ARCH_GEMMA_EMBEDDING, "tiny-gemma-embedding", GGUF_TYPE_F32, 3, 0) < 0 ||
        write_tiny(gen, MODEL_ARCH_GEMMA3, "tiny", GGUF_TYPE_F32, 3, 0) < 0)
        return;
    runner r, g;
    if (runner_open(&r, emb, 2, 64, 64) < 0 || runner_open(&g, gen, 2, 64, 64) < 0)
        return;
    const model_hparams *hp = model_hparams_of(r.m);
    CHECK(!hp->causal && hp->pooling == MODEL_POOLING_MEAN && hp->n_dense == 256);
    int E = model_embedding_size(r.m);
    CHECK_EQ_INT(E, 64);
    int32_t tok[24], pos[24], seq[24];
    token_stream(tok, 24, 9, r.n_vocab);
    for (int i = 0; i < 24; i++) {
        pos[i] = i < 12 ? i : i - 12;
        seq[i] = i < 12 ? 0 : 1;
    }
    float alone[2][64], both[2][64];
    el_err err = {{0}};
    for (int s = 0; s < 2; s++) {
        kv_cache_truncate(r.kv, s, 0, false);
        model_batch b = {12, tok + 12 * s, pos + 12 * s, seq + 12 * s, NULL};
        CHECKF(model_embed(r.ctx, r.kv, &b, MODEL_POOLING_NONE, true, &alone[0][0], &err) == 0, "%s", err.msg);
        kv_cache_truncate(r.kv, s, 0, false);
    }
    model_batch b = {24, tok, pos, seq, NULL};
    CHECKF(model_embed(r.ctx, r.kv, &b, MODEL_POOLING_NONE, true, &both[0][0], &err) == 0, "%s", err.msg);
    double norm = 0;
    for (int i = 0; i < E; i++)
        norm += (double)alone[0][i] * alone[0][i];
    CHECK_NEAR(norm, 1.0, 1e-5);
    CHECKF(max_rel_diff(alone[0], both[0], E) < 1e-4 && max_rel_diff(alone[1], both[1], E) < 1e-4, "%g %g",
           max_rel_diff(alone[0], both[0], E), max_rel_diff(alone[1], both[1], E));
    /* an embedding model has no logits, and takes a sequence whole */
    float *logits = malloc((size_t)r.n_vocab * sizeof *logits);
    model_batch more = {1, tok, pos + 5, seq, NULL};
    CHECK_EQ_INT(model_forward(r.ctx, r.kv, &more, logits, &err), -1);
    CHECK_EQ_INT(model_embed(r.ctx, r.kv, &more, MODEL_POOLING_NONE, true, both[0], &err), -1);
    /* a generative model: only with a pooling asked for */
    kv_cache_truncate(g.kv, 0, 0, false);
    model_batch one = {12, tok, pos, seq, NULL};
    CHECK_EQ_INT(model_embed(g.ctx, g.kv, &one, MODEL_POOLING_NONE, false, both[0], &err), -1);
    CHECKF(strstr(err.msg, "pooling") != NULL, "%s", err.msg);
    CHECKF(model_embed(g.ctx, g.kv, &one, MODEL_POOLING_CLS, false, both[0], &err) == 0, "%s", err.msg);
    kv_cache_truncate(g.kv, 0, 0, false);
    model_batch first = {1, tok, pos, seq, NULL};
    CHECKF(model_embed(g.ctx, g.kv, &first, MODEL_POOLING_MEAN, false, both[1], &err) == 0, "%s", err.msg);
    CHECK(max_rel_diff(both[0], both[1], E) < 1e-6);
    free(logits);
    runner_close(&r);
    runner_close(&g);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    pool = threadpool_create(2, NULL);
    RUN(test_for_each_tensor);
    RUN(test_hparams_defaults);
    RUN(test_rejects_broken_models);
    RUN(test_round_trip_and_determinism);
    RUN(test_no_nan_over_2048_positions);
    RUN(test_sliding_window_reach);
    RUN(test_kv_cache_sequences);
    RUN(test_bad_sizes);
    RUN(test_load_from_memory);
    RUN(test_huge_page_blocks);
    RUN(test_q8_0_cache);
    RUN(test_gemma4_layers);
    RUN(test_gemma4_rejects_mismatched_shapes);
    RUN(test_embed);
    RUN(test_gemma3n);
    threadpool_free(pool);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}

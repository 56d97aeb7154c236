/* The checks of a random-weight golden model against llama.cpp's logits (a
 * NAME.logits.json as scripts/make-goldens.sh writes it), shared by the golden
 * tests. Included by one test program each; everything is static.
 *
 * Tolerance: |ours - ref| <= tol * max(1, |ref|) on each of the reference's top-20
 * logits and on the mean and rms of all logits. Our top-20 order must equal the
 * reference's, except where the id we put at a rank has, in our logits, a value within
 * the tolerance of the reference's logit at that rank (a near-tie that the reference
 * itself could order either way). The same holds for the greedy continuation: a step
 * may pick another token when the reference's is within the tolerance of our best, and
 * the comparison then goes on along the reference's tokens. */
#ifndef ELLIOTT_TESTS_GOLDEN_LOGITS_H
#define ELLIOTT_TESTS_GOLDEN_LOGITS_H

#include <jansson.h>
#include <math.h>

#include "base/threadpool.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "test.h"

enum { TOP = 20, N_CTX = 512, MAX_BATCH = 128 };

typedef struct golden_run {
    model *m;
    kv_cache *kv;
    model_ctx *ctx;
    int n_vocab;
    double tol;
    const char *name;
    double worst; /* largest |ours - ref| / max(1, |ref|) over the reference's top logits */
} golden_run;

static bool close_enough(double a, double b, double tol)
{
    return fabs(a - b) <= tol * fmax(1.0, fabs(b));
}

static void track_error(golden_run *g, double ours, double ref)
{
    g->worst = fmax(g->worst, fabs(ours - ref) / fmax(1.0, fabs(ref)));
}

static int argmax(const float *logits, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* Evaluates ids[0..n) as one batch of sequence seq (after clearing it), logits for all
 * positions when all is true, else only the last. */
static int eval_batch(golden_run *g, int seq, const int32_t *ids, int n, bool all, float *logits)
{
    int32_t pos[MAX_BATCH], seqs[MAX_BATCH];
    bool want[MAX_BATCH];
    for (int i = 0; i < n; i++) {
        pos[i] = kv_cache_seq_len(g->kv, seq) + i;
        seqs[i] = seq;
        want[i] = all || i == n - 1;
    }
    model_batch b = {n, ids, pos, seqs, want};
    el_err err = {{0}};
    int rc = model_forward(g->ctx, g->kv, &b, logits, &err);
    CHECKF(rc == 0, "%s: %s", g->name, err.msg);
    return rc;
}

static void check_position(golden_run *g, const char *prompt, json_t *ref, const float *logits)
{
    int pos = (int)json_integer_value(json_object_get(ref, "pos"));
    json_t *top = json_object_get(ref, "top");
    double sum = 0, sq = 0;
    for (int t = 0; t < g->n_vocab; t++) {
        sum += logits[t];
        sq += (double)logits[t] * logits[t];
    }
    double mean = sum / g->n_vocab, rms = sqrt(sq / g->n_vocab);
    double ref_mean = json_real_value(json_object_get(ref, "mean"));
    double ref_rms = json_real_value(json_object_get(ref, "rms"));
    CHECKF(close_enough(mean, ref_mean, g->tol), "%s %s pos %d: mean %g vs %g", g->name, prompt, pos, mean, ref_mean);
    CHECKF(close_enough(rms, ref_rms, g->tol), "%s %s pos %d: rms %g vs %g", g->name, prompt, pos, rms, ref_rms);

    int32_t ours[TOP];
    int n_top = TOP < g->n_vocab ? TOP : g->n_vocab;
    CHECK(sampler_top_ids(logits, g->n_vocab, n_top, ours) == 0);
    for (int r = 0; r < n_top && r < (int)json_array_size(top); r++) {
        json_t *pair = json_array_get(top, (size_t)r);
        int id = (int)json_integer_value(json_array_get(pair, 0));
        double want = json_number_value(json_array_get(pair, 1));
        track_error(g, logits[id], want);
        CHECKF(close_enough(logits[id], want, g->tol), "%s %s pos %d rank %d: logit of %d is %.6f, reference %.6f",
               g->name, prompt, pos, r, id, logits[id], want);
        CHECKF(ours[r] == id || close_enough(logits[ours[r]], want, g->tol),
               "%s %s pos %d rank %d: id %d (%.6f), reference %d (%.6f)", g->name, prompt, pos, r, ours[r],
               logits[ours[r]], id, want);
    }
}

static void check_greedy(golden_run *g, const char *prompt, const int32_t *ids, int n, json_t *greedy, float *logits)
{
    kv_cache_truncate(g->kv, 0, 0, false);
    if (eval_batch(g, 0, ids, n, false, logits) < 0)
        return;
    for (size_t s = 0; s < json_array_size(greedy); s++) {
        int32_t next = argmax(logits, g->n_vocab);
        int32_t want = (int32_t)json_integer_value(json_array_get(greedy, s));
        bool ok = want >= 0 && want < g->n_vocab &&
                  (next == want || close_enough(logits[want], logits[next], g->tol)); /* a near-tie */
        CHECKF(ok, "%s %s greedy step %zu: %d (%.6f), reference %d", g->name, prompt, s, next, logits[next], want);
        /* follow the reference's path, so that a near-tie does not end the comparison */
        if (!ok || eval_batch(g, 0, &want, 1, false, logits) < 0)
            return;
    }
}

/* Token by token through the cache gives the one-batch logits. */
static void check_incremental(golden_run *g, const char *prompt, const int32_t *ids, int n, const float *batch_logits,
                              float *logits)
{
    kv_cache_truncate(g->kv, 1, 0, true);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (eval_batch(g, 1, &ids[i], 1, false, logits) < 0)
            return;
        const float *want = batch_logits + (size_t)i * g->n_vocab;
        for (int t = 0; t < g->n_vocab; t++)
            worst = fmax(worst, fabs(logits[t] - want[t]) / fmax(1.0, fabs(want[t])));
    }
    CHECKF(worst <= g->tol, "%s %s: token-by-token differs from one batch by %g", g->name, prompt, worst);
}

/* Two prompts interleaved in one batch, as sequences 0 and 1, match each run alone. */
static void check_two_sequences(golden_run *g, const int32_t *a, int na, const float *la, const int32_t *b, int nb,
                                const float *lb, float *logits)
{
    if (na + nb > MAX_BATCH)
        return;
    kv_cache_truncate(g->kv, 0, 0, false);
    kv_cache_truncate(g->kv, 1, 0, false);
    int32_t tok[MAX_BATCH], pos[MAX_BATCH], seq[MAX_BATCH];
    int src[MAX_BATCH];
    int n = 0, ia = 0, ib = 0;
    while (ia < na || ib < nb) {
        if (ia < na) {
            tok[n] = a[ia], pos[n] = ia, seq[n] = 0, src[n] = ia++;
            n++;
        }
        if (ib < nb) {
            tok[n] = b[ib], pos[n] = ib, seq[n] = 1, src[n] = ib++;
            n++;
        }
    }
    bool want[MAX_BATCH];
    for (int i = 0; i < n; i++)
        want[i] = true;
    model_batch batch = {n, tok, pos, seq, want};
    el_err err = {{0}};
    CHECKF(model_forward(g->ctx, g->kv, &batch, logits, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *ref = (seq[i] == 0 ? la : lb) + (size_t)src[i] * g->n_vocab;
        const float *got = logits + (size_t)i * g->n_vocab;
        for (int t = 0; t < g->n_vocab; t++)
            worst = fmax(worst, fabs(got[t] - ref[t]) / fmax(1.0, fabs(ref[t])));
    }
    CHECKF(worst <= g->tol, "%s: two sequences in one batch differ from each alone by %g", g->name, worst);
}

static int read_ids(json_t *arr, int32_t *ids)
{
    int n = (int)json_array_size(arr);
    if (n > MAX_BATCH)
        n = MAX_BATCH;
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return n;
}

/* Checks the model at model_path against the reference logits in json_path. */
static void run_golden(const char *name, const char *model_path, const char *json_path, double tol, threadpool *pool,
                       enum model_cache_type cache)
{
    json_error_t jerr;
    json_t *root = json_load_file(json_path, 0, &jerr);
    CHECKF(root != NULL, "%s: %s", json_path, jerr.text);
    el_err err = {{0}};
    golden_run g = {.name = name, .tol = tol};
    g.m = model_load(model_path, NULL, &err);
    CHECKF(g.m != NULL, "%s", err.msg);
    if (!root || !g.m) {
        json_decref(root);
        model_free(g.m);
        return;
    }
    g.n_vocab = model_hparams_of(g.m)->n_vocab;
    g.kv = kv_cache_create(g.m, cache, 2, N_CTX, &err);
    g.ctx = model_ctx_create(g.m, MAX_BATCH, pool, &err);
    CHECK(g.kv && g.ctx);
    json_t *prompts = json_object_get(root, "prompts");
    size_t n_prompts = json_array_size(prompts);
    float *all = malloc((size_t)n_prompts * MAX_BATCH * (size_t)g.n_vocab * sizeof(float));
    float *scratch = malloc((size_t)MAX_BATCH * (size_t)g.n_vocab * sizeof(float));
    int32_t ids[8][MAX_BATCH];
    int n_ids[8] = {0};
    for (size_t pi = 0; pi < n_prompts && pi < 8 && g.kv && g.ctx; pi++) {
        json_t *pr = json_array_get(prompts, pi);
        const char *pname = json_string_value(json_object_get(pr, "name"));
        int n = n_ids[pi] = read_ids(json_object_get(pr, "ids"), ids[pi]);
        float *lg = all + pi * MAX_BATCH * (size_t)g.n_vocab;
        kv_cache_truncate(g.kv, 0, 0, false);
        if (eval_batch(&g, 0, ids[pi], n, true, lg) < 0)
            continue;
        json_t *positions = json_object_get(pr, "positions");
        CHECK_EQ_INT(json_array_size(positions), n);
        for (size_t i = 0; i < json_array_size(positions) && (int)i < n; i++)
            check_position(&g, pname, json_array_get(positions, i), lg + i * (size_t)g.n_vocab);
        check_greedy(&g, pname, ids[pi], n, json_object_get(pr, "greedy16"), scratch);
        check_incremental(&g, pname, ids[pi], n, lg, scratch);
    }
    if (n_prompts >= 2)
        check_two_sequences(&g, ids[0], n_ids[0], all, ids[1], n_ids[1], all + MAX_BATCH * (size_t)g.n_vocab,
                            scratch);
    fprintf(stderr, "      %s: worst relative error of the reference's top-%d logits %.2e (tolerance %.0e)\n",
            name, TOP, g.worst, tol);
    free(all);
    free(scratch);
    model_ctx_free(g.ctx);
    kv_cache_free(g.kv);
    model_free(g.m);
    json_decref(root);
}

#endif

/* Embeddings: inputs tokenized, grouped into batches and pooled by model_embed.
 *
 * Threading: the scheduler thread owns the engine's KV cache, scratch and thread
 * pool, so an embedding request brings its own (a cache sized to its inputs, a
 * scratch and a pool of the engine's thread count) and runs on the caller's
 * thread, reading the model's weights and the tokenizer, which nobody writes once
 * the engine is READY. It holds the engine (engine_hold) like a submit, so the
 * loader does not free the model under it at shutdown. Input text is wiped from
 * every buffer that held it. */
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "engine/engine_internal.h"

enum { EMBED_BATCH_TOKENS = 2048 };

int engine_embedding_size(engine *e)
{
    if (!engine_hold(e))
        return 0;
    int n = model_embedding_size(e->m);
    engine_unhold(e);
    return n;
}

bool engine_is_embedding_model(engine *e)
{
    if (!engine_hold(e))
        return false;
    bool yes = model_hparams_of(e->m)->pooling != MODEL_POOLING_NONE;
    engine_unhold(e);
    return yes;
}

static void wipe_tokens(token_vec *v)
{
    if (v->ids)
        explicit_bzero(v->ids, v->n * sizeof *v->ids);
    token_vec_free(v);
}

/* One input's tokens: its ids as given, or its text after a BOS (when the model
 * uses one), cut to the context when truncate is set. */
static enum gen_status input_tokens(engine *e, const embed_input *in, size_t i, bool truncate, token_vec *out,
                                    el_err *err)
{
    int rc = 0;
    if (in->tokens) {
        for (size_t k = 0; k < in->n_tokens && rc == 0; k++) {
            if (in->tokens[k] < 0 || in->tokens[k] >= tokenizer_n_vocab(e->tok)) {
                el_fail(err, "input %zu: token %d is not in the vocabulary (0..%d)", i, in->tokens[k],
                        tokenizer_n_vocab(e->tok) - 1);
                return GEN_ERR_INVALID;
            }
            rc = token_vec_push(out, in->tokens[k], err);
        }
    } else {
        if (tokenizer_add_bos(e->tok) && tokenizer_bos(e->tok) >= 0)
            rc = token_vec_push(out, tokenizer_bos(e->tok), err);
        if (rc == 0)
            rc = tokenizer_encode(e->tok, in->text, in->len, false, out, err);
    }
    if (rc < 0)
        return GEN_ERR_INTERNAL;
    if (out->n == 0) {
        el_fail(err, "input %zu is empty", i);
        return GEN_ERR_INVALID;
    }
    if (out->n > (size_t)e->n_ctx) {
        if (!truncate) {
            el_fail(err, "input %zu is %zu tokens, more than the context of %d", i, out->n, e->n_ctx);
            return GEN_ERR_CONTEXT;
        }
        explicit_bzero(out->ids + e->n_ctx, (out->n - (size_t)e->n_ctx) * sizeof *out->ids);
        out->n = (size_t)e->n_ctx;
    }
    return GEN_OK;
}

/* Evaluates inputs [first, last) as one batch, each its own sequence. */
static int embed_group(engine *e, threadpool *pool, token_vec *toks, size_t first, size_t last,
                       enum model_pooling pooling, bool normalize, float *out, el_err *err)
{
    int n_seq = (int)(last - first), longest = 0, n_tokens = 0;
    for (size_t i = first; i < last; i++) {
        n_tokens += (int)toks[i].n;
        if ((int)toks[i].n > longest)
            longest = (int)toks[i].n;
    }
    int dim = model_embedding_size(e->m);
    kv_cache *kv = kv_cache_create(e->m, MODEL_CACHE_F16, n_seq, longest, err);
    model_ctx *ctx = kv ? model_ctx_create(e->m, n_tokens, pool, err) : NULL;
    int32_t *token = malloc((size_t)n_tokens * sizeof *token);
    int32_t *pos = malloc((size_t)n_tokens * sizeof *pos);
    int32_t *seq = malloc((size_t)n_tokens * sizeof *seq);
    float *rows = malloc((size_t)n_seq * (size_t)dim * sizeof *rows);
    int rc = -1;
    if (!kv || !ctx || !token || !pos || !seq || !rows) {
        if (kv && ctx)
            el_fail(err, "engine: out of memory for an embedding batch");
        goto done;
    }
    int at = 0;
    for (size_t i = first; i < last; i++) {
        for (size_t k = 0; k < toks[i].n; k++, at++) {
            token[at] = toks[i].ids[k];
            pos[at] = (int32_t)k;
            seq[at] = (int32_t)(i - first);
        }
    }
    model_batch b = {.n_tokens = n_tokens, .token = token, .pos = pos, .seq = seq};
    rc = model_embed(ctx, kv, &b, pooling, normalize, rows, err);
    if (rc == 0 && !engine_model_intact(e, err))
        rc = -1;
    if (rc == 0)
        memcpy(out + first * (size_t)dim, rows, (size_t)n_seq * (size_t)dim * sizeof *rows);
done:
    if (token)
        explicit_bzero(token, (size_t)n_tokens * sizeof *token);
    free(token);
    free(pos);
    free(seq);
    free(rows);
    model_ctx_free(ctx);
    if (kv)
        kv_cache_truncate(kv, 0, 0, true);
    for (int s = 1; kv && s < n_seq; s++)
        kv_cache_truncate(kv, s, 0, true);
    kv_cache_free(kv);
    return rc;
}

static enum model_pooling model_pooling_of(enum embed_pooling p)
{
    switch (p) {
    case EMBED_POOL_MEAN: return MODEL_POOLING_MEAN;
    case EMBED_POOL_CLS: return MODEL_POOLING_CLS;
    case EMBED_POOL_LAST: return MODEL_POOLING_LAST;
    case EMBED_POOL_MODEL: break;
    }
    return MODEL_POOLING_NONE;
}

static enum gen_status embed_all(engine *e, const embed_input *inputs, size_t n, const embed_options *opts,
                                 float *out, int *prompt_tokens, el_err *err)
{
    enum model_pooling pooling = model_pooling_of(opts->pooling);
    if (pooling == MODEL_POOLING_NONE && model_hparams_of(e->m)->pooling == MODEL_POOLING_NONE) {
        el_fail(err, "the served model is generative, not an embedding model: ask for its mean-pooled hidden "
                     "states explicitly if that is what you want");
        return GEN_ERR_INVALID;
    }
    token_vec *toks = calloc(n, sizeof *toks);
    if (!toks) {
        el_fail(err, "engine: out of memory");
        return GEN_ERR_INTERNAL;
    }
    enum gen_status st = GEN_OK;
    int total = 0;
    for (size_t i = 0; i < n && st == GEN_OK; i++) {
        st = input_tokens(e, &inputs[i], i, opts->truncate, &toks[i], err);
        if (st == GEN_OK)
            total += (int)toks[i].n;
    }
    threadpool *pool = st == GEN_OK ? threadpool_create(e->cfg.n_threads, err) : NULL;
    if (st == GEN_OK && !pool)
        st = GEN_ERR_INTERNAL;
    /* Inputs share a batch until it holds EMBED_BATCH_TOKENS (an input longer
     * than that is a batch of its own). */
    for (size_t first = 0; st == GEN_OK && first < n;) {
        size_t last = first + 1, tokens = toks[first].n;
        while (last < n && tokens + toks[last].n <= EMBED_BATCH_TOKENS)
            tokens += toks[last++].n;
        if (embed_group(e, pool, toks, first, last, pooling, opts->normalize, out, err) < 0)
            st = GEN_ERR_INTERNAL;
        first = last;
    }
    threadpool_free(pool);
    for (size_t i = 0; i < n; i++)
        wipe_tokens(&toks[i]);
    free(toks);
    if (st == GEN_OK && prompt_tokens)
        *prompt_tokens = total;
    return st;
}

enum gen_status engine_embed(engine *e, const embed_input *inputs, size_t n, const embed_options *opts, float *out,
                             int *prompt_tokens, el_err *err)
{
    if (!e || !inputs || n == 0 || !opts || !out) {
        el_fail(err, "engine: no inputs to embed");
        return GEN_ERR_INTERNAL;
    }
    if (!engine_hold(e)) {
        pthread_mutex_lock(&e->mu);
        enum gen_status s = e->stopping ? GEN_ERR_SHUTTING_DOWN : GEN_ERR_NOT_READY;
        pthread_mutex_unlock(&e->mu);
        el_fail(err, "engine: %s", s == GEN_ERR_SHUTTING_DOWN ? "shutting down" : "the model is not loaded");
        return s;
    }
    enum gen_status st = embed_all(e, inputs, n, opts, out, prompt_tokens, err);
    engine_unhold(e);
    return st;
}

/* The forward pass shared by every architecture: per-arch differences are a
 * handful of switches (embedding scale, activation, extra norms, rope style,
 * soft-capping, sliding window) and optional blocks that a layer has or lacks
 * (Gemma 4's shared KV, mixture of experts, per-layer inputs, layer scalar),
 * never separate code paths. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/invariant.h"
#include "model/model_internal.h"

struct model_ctx {
    const model *m;
    threadpool *pool;
    int n_threads;
    int max_batch;
    /* the largest widths over the layers */
    int64_t q_width, k_width, v_width, attn_width, ff_width;
    int max_head_dim_k, max_head_dim_v;

    /* activations, max_batch rows each */
    float *x;     /* residual stream [n_embd] */
    float *xn;    /* normed input of a block [n_embd] */
    float *q;     /* [q_width] */
    float *k;     /* [k_width] */
    float *v;     /* [v_width] */
    float *attn;  /* attention output [attn_width] */
    float *proj;  /* output of attn_output / ffn_down [n_embd] */
    float *gate;  /* [ff_width] */
    float *up;    /* [ff_width] */
    float *rope;  /* per token: cos, sin for global layers [2][n_rot/2], then for sliding layers [2][n_rot_swa/2] */
    int *all_rows;   /* 0, 1, 2, ...: every token of the batch */
    int *logit_rows; /* batch indices of the tokens that want logits */

    /* gemma4 mixture of experts */
    float *moe_out;      /* [n_embd]: the experts' weighted sum, then the combined FFN */
    float *moe_probs;    /* [n_expert] router probabilities */
    int *moe_choice;     /* [n_expert_used] experts of each token */
    float *moe_weight;   /* [n_expert_used] their weights */
    float *exp_in;       /* [n_embd] rows gathered for one expert */
    float *exp_mid;      /* [2 * n_ff_exp] */
    float *exp_out;      /* [n_embd] */
    int *exp_rows;       /* tokens routed to one expert, and (same index) which of their choices */
    int *exp_slot;
    /* gemma4 per-layer inputs */
    float *ple_in;       /* [n_embd_per_layer * n_layer] each token's inputs for every layer */
    float *ple_gate;     /* [n_embd_per_layer] */
    float *ple_row;      /* one token's row of the per-layer table [n_embd_per_layer * n_layer] */
    /* gemma3n AltUp and LAuReL */
    float *alt;          /* [n_altup * n_embd] the streams */
    float *alt_pred;     /* [n_altup * n_embd] their predictions */
    float *alt_tmp;      /* [n_embd] */
    float *alt_coef;     /* [n_altup * n_altup] */
    float *alt_modal;    /* [n_altup] router outputs */
    float *laurel_mid;   /* [n_laurel] */

    void *mm_scratch;   /* kernels_matmul activations, 64-byte aligned */
    size_t mm_scratch_size;
    void *att_scratch;        /* per thread, att_scratch_stride bytes: kernels_attn_f16's scratch */
    size_t att_scratch_stride;
    int *att_group;           /* [max_batch] the first row of each group of rows attended together */
    void *tok_row;            /* one row of a repacked token table, unpacked (token_row) */
};

/* ---- per-arch switches ------------------------------------------------------------- */

static bool arch_is_gemma(enum model_arch a)
{
    return a != MODEL_ARCH_LLAMA;
}

/* ---- context ----------------------------------------------------------------------- */

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static size_t group_scratch(const kernels_matrix *const group[], int n, int n_tokens)
{
    size_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += kernels_matmul_scratch_size(group[i]->type, group[i]->cols, n_tokens);
    return sum;
}

static size_t one_scratch(const kernels_matrix *w, int n_tokens)
{
    return w->data ? kernels_matmul_scratch_size(w->type, w->cols, n_tokens) : 0;
}

/* The largest of: one matrix alone, or a group that shares its input (kernels_matmul_multi). */
static size_t max_matmul_scratch(const model *m, int n_tokens)
{
    size_t best = kernels_matmul_scratch_size(m->output.type, m->output.cols, n_tokens);
    const kernels_matrix *globals[] = {&m->ple_model_proj, &m->dense_2, &m->dense_3, &m->altup_proj,
                                       &m->altup_unembd_proj};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        if (one_scratch(globals[i], n_tokens) > best)
            best = one_scratch(globals[i], n_tokens);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const model_layer *l = &m->layers[il];
        const kernels_matrix *qkv[] = {&l->wq, &l->wk, &l->wv}, *gate_up[] = {&l->ffn_gate, &l->ffn_up};
        int n_qkv = m->hp.layer[il].kv_layer != il ? 1 : m->hp.layer[il].v_from_k ? 2 : 3;
        size_t sizes[] = {group_scratch(qkv, n_qkv, n_tokens), group_scratch(gate_up, 2, n_tokens),
                          one_scratch(&l->wo, n_tokens), one_scratch(&l->ffn_down, n_tokens),
                          one_scratch(&l->router, n_tokens), one_scratch(&l->gate_up_exps, n_tokens),
                          one_scratch(&l->down_exps, n_tokens), one_scratch(&l->ple_gate, n_tokens),
                          one_scratch(&l->ple_proj, n_tokens), one_scratch(&l->altup_router, n_tokens),
                          one_scratch(&l->altup_predict_coef, n_tokens), one_scratch(&l->altup_correct_coef, n_tokens),
                          one_scratch(&l->laurel_l, n_tokens), one_scratch(&l->laurel_r, n_tokens)};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            if (sizes[i] > best)
                best = sizes[i];
    }
    return best;
}

void model_ctx_free(model_ctx *c)
{
    if (!c)
        return;
    float **bufs[] = {&c->x,        &c->xn,       &c->q,      &c->k,       &c->v,        &c->attn,
                      &c->proj,     &c->gate,     &c->up,     &c->rope,    &c->moe_out,
                      &c->moe_probs, &c->moe_weight, &c->exp_in, &c->exp_mid, &c->exp_out, &c->ple_in,
                      &c->ple_gate, &c->ple_row, &c->alt, &c->alt_pred, &c->alt_tmp, &c->alt_coef,
                      &c->alt_modal, &c->laurel_mid};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(*bufs[i]);
    free(c->att_scratch);
    free(c->att_group);
    free(c->logit_rows);
    free(c->all_rows);
    free(c->moe_choice);
    free(c->exp_rows);
    free(c->exp_slot);
    free(c->mm_scratch);
    free(c->tok_row);
    free(c);
}

enum { MAX_BATCH = 1 << 16 };

static float *alloc_rows(int rows, int64_t width)
{
    return aligned_alloc(64, align64((size_t)rows * (size_t)(width > 0 ? width : 1) * sizeof(float)));
}

static void measure_widths(model_ctx *c, const model_hparams *hp)
{
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer_hparams *l = &hp->layer[il];
        int64_t q = (int64_t)hp->n_head * l->head_dim_k, k = (int64_t)l->n_head_kv * l->head_dim_k;
        int64_t v = (int64_t)l->n_head_kv * l->head_dim_v, a = (int64_t)hp->n_head * l->head_dim_v;
        c->q_width = q > c->q_width ? q : c->q_width;
        c->k_width = k > c->k_width ? k : c->k_width;
        /* v_from_k layers copy K's projection into v */
        c->v_width = v > c->v_width ? v : c->v_width;
        c->v_width = k > c->v_width ? k : c->v_width;
        c->attn_width = a > c->attn_width ? a : c->attn_width;
        c->ff_width = l->n_ff > c->ff_width ? l->n_ff : c->ff_width;
        c->max_head_dim_k = l->head_dim_k > c->max_head_dim_k ? l->head_dim_k : c->max_head_dim_k;
        c->max_head_dim_v = l->head_dim_v > c->max_head_dim_v ? l->head_dim_v : c->max_head_dim_v;
    }
}

static bool alloc_gemma4_buffers(model_ctx *c, const model_hparams *hp, int max_batch)
{
    if (hp->n_expert > 0) {
        int used = hp->n_expert_used > 0 ? hp->n_expert_used : 1;
        c->moe_out = alloc_rows(max_batch, hp->n_embd);
        c->moe_probs = alloc_rows(max_batch, hp->n_expert);
        c->moe_weight = alloc_rows(max_batch, used);
        c->moe_choice = calloc((size_t)max_batch * (size_t)used, sizeof *c->moe_choice);
        c->exp_in = alloc_rows(max_batch, hp->n_embd);
        c->exp_mid = alloc_rows(max_batch, 2 * (int64_t)hp->n_ff_exp);
        c->exp_out = alloc_rows(max_batch, hp->n_embd);
        c->exp_rows = calloc((size_t)max_batch, sizeof *c->exp_rows);
        c->exp_slot = calloc((size_t)max_batch, sizeof *c->exp_slot);
        if (!c->moe_out || !c->moe_probs || !c->moe_weight || !c->moe_choice || !c->exp_in || !c->exp_mid ||
            !c->exp_out || !c->exp_rows || !c->exp_slot)
            return false;
    }
    if (hp->n_altup > 0) {
        int64_t A = hp->n_altup;
        c->alt = alloc_rows(max_batch, A * hp->n_embd);
        c->alt_pred = alloc_rows(max_batch, A * hp->n_embd);
        c->alt_tmp = alloc_rows(max_batch, hp->n_embd);
        c->alt_coef = alloc_rows(max_batch, A * A);
        c->alt_modal = alloc_rows(max_batch, A);
        c->laurel_mid = alloc_rows(max_batch, hp->n_laurel);
        if (!c->alt || !c->alt_pred || !c->alt_tmp || !c->alt_coef || !c->alt_modal || !c->laurel_mid)
            return false;
    }
    if (hp->n_embd_per_layer > 0) {
        c->ple_in = alloc_rows(max_batch, (int64_t)hp->n_embd_per_layer * hp->n_layer);
        c->ple_gate = alloc_rows(max_batch, hp->n_embd_per_layer);
        c->ple_row = alloc_rows(1, (int64_t)hp->n_embd_per_layer * hp->n_layer);
        if (!c->ple_in || !c->ple_gate || !c->ple_row)
            return false;
    }
    return true;
}

model_ctx *model_ctx_create(const model *m, int max_batch, threadpool *pool, el_err *err)
{
    if (max_batch < 1 || max_batch > MAX_BATCH) {
        el_fail(err, "batch size %d is out of range [1, %d]", max_batch, MAX_BATCH);
        return NULL;
    }
    model_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        el_fail(err, "out of memory");
        return NULL;
    }
    const model_hparams *hp = &m->hp;
    c->m = m;
    c->pool = pool;
    c->n_threads = pool ? threadpool_size(pool) : 1;
    c->max_batch = max_batch;
    measure_widths(c, hp);
    c->x = alloc_rows(max_batch, hp->n_embd);
    c->xn = alloc_rows(max_batch, hp->n_embd);
    c->q = alloc_rows(max_batch, c->q_width);
    c->k = alloc_rows(max_batch, c->k_width);
    c->v = alloc_rows(max_batch, c->v_width);
    c->attn = alloc_rows(max_batch, c->attn_width);
    c->proj = alloc_rows(max_batch, hp->n_embd);
    c->gate = alloc_rows(max_batch, c->ff_width);
    c->up = alloc_rows(max_batch, c->ff_width);
    c->rope = alloc_rows(max_batch, (int64_t)hp->n_rot + hp->n_rot_swa);
    c->logit_rows = calloc((size_t)max_batch, sizeof *c->logit_rows);
    c->all_rows = calloc((size_t)max_batch, sizeof *c->all_rows);
    for (int i = 0; c->all_rows && i < max_batch; i++)
        c->all_rows[i] = i;
    /* the F16 kernel's scratch, or the Q8_0 kernel's where that is larger, so that
     * one context serves a cache of either type */
    size_t f16_scratch = kernels_attn_scratch_size(KERNELS_ATTN_MAX_ROWS, c->max_head_dim_k, c->max_head_dim_v);
    size_t q8_scratch = c->max_head_dim_k % 32 == 0 && c->max_head_dim_v % 32 == 0
                            ? kernels_attn_q8_0_scratch_size(KERNELS_ATTN_MAX_ROWS, c->max_head_dim_k, c->max_head_dim_v)
                            : 0;
    c->att_scratch_stride = align64(f16_scratch > q8_scratch ? f16_scratch : q8_scratch);
    c->att_scratch = aligned_alloc(64, (size_t)c->n_threads * c->att_scratch_stride);
    c->att_group = calloc((size_t)max_batch, sizeof *c->att_group);
    c->mm_scratch_size = align64(max_matmul_scratch(m, max_batch));
    c->mm_scratch = aligned_alloc(64, c->mm_scratch_size ? c->mm_scratch_size : 64);
    c->tok_row = malloc(m->tok_embd.row_bytes);
    if (!c->x || !c->xn || !c->q || !c->k || !c->v || !c->attn || !c->proj || !c->gate || !c->up || !c->rope ||
        !c->logit_rows || !c->all_rows || !c->att_scratch || !c->att_group || !c->mm_scratch || !c->tok_row ||
        !alloc_gemma4_buffers(c, hp, max_batch)) {
        model_ctx_free(c);
        el_fail(err, "out of memory for a batch of %d tokens", max_batch);
        return NULL;
    }
    return c;
}

/* ---- batch validation ---------------------------------------------------------------- */

static bool kv_fits(const kv_cache *kv, const model_hparams *hp)
{
    if (kv->n_layer != hp->n_layer)
        return false;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer_hparams *l = &hp->layer[il];
        const kv_layer *c = &kv->layers[l->kv_layer];
        if (c->n_head_kv != l->n_head_kv || c->head_dim_k != l->head_dim_k || c->head_dim_v != l->head_dim_v)
            return false;
    }
    return true;
}

/* A model without causal attention (an embedding model) cannot extend a sequence:
 * its earlier tokens would have to see the new ones. */
static bool whole_sequences_ok(const model_hparams *hp, const kv_cache *kv, int seq)
{
    return hp->causal || kv->len[seq] == 0;
}

static int validate_batch(const model_ctx *c, kv_cache *kv, const model_batch *b, el_err *err)
{
    const model_hparams *hp = &c->m->hp;
    if (!b || b->n_tokens < 1 || b->n_tokens > c->max_batch)
        return el_fail(err, "batch of %d tokens is out of range [1, %d]", b ? b->n_tokens : 0, c->max_batch);
    if (!b->token || !b->pos || !b->seq)
        return el_fail(err, "batch without tokens, positions or sequence ids");
    if (!kv_fits(kv, hp))
        return el_fail(err, "the KV cache was made for another model");
    memcpy(kv->next, kv->len, (size_t)kv->n_seq * sizeof *kv->next);
    for (int i = 0; i < b->n_tokens; i++) {
        int32_t tok = b->token[i], seq = b->seq[i], pos = b->pos[i];
        if (tok < 0 || tok >= hp->n_vocab)
            return el_fail(err, "token %d: id %d is out of range [0, %d)", i, tok, hp->n_vocab);
        if (seq < 0 || seq >= kv->n_seq)
            return el_fail(err, "token %d: sequence %d is out of range [0, %d)", i, seq, kv->n_seq);
        if (pos != kv->next[seq])
            return el_fail(err, "token %d: position %d of sequence %d, expected %d", i, pos, seq, kv->next[seq]);
        if (pos >= kv->n_ctx)
            return el_fail(err, "token %d: position %d is beyond the context of %d", i, pos, kv->n_ctx);
        if (!whole_sequences_ok(hp, kv, seq))
            return el_fail(err, "token %d: sequence %d continues from position %d, but a model without causal "
                                "attention takes each sequence whole, in one batch", i, seq, kv->len[seq]);
        kv->next[seq]++;
    }
    return 0;
}

/* ---- threaded helpers ------------------------------------------------------------------ */

/* Runs fn over the pool, or on the caller alone when there is too little work to share. */
static void run_split(model_ctx *c, threadpool_fn fn, void *arg, int n_items)
{
    if (n_items < 2 || c->n_threads < 2)
        fn(arg, 0, 1);
    else
        threadpool_run(c->pool, fn, arg);
}

static void split_range(int n, int ith, int nth, int *lo, int *hi)
{
    *lo = (int)((int64_t)n * ith / nth);
    *hi = (int)((int64_t)n * (ith + 1) / nth);
}

typedef struct norm_job {
    float *dst;
    const float *src;
    const float *weight;
    int64_t width;
    int rows;
    float eps;
} norm_job;

static void norm_rows(void *p, int ith, int nth)
{
    const norm_job *j = p;
    int lo, hi;
    split_range(j->rows, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++)
        kernels_rmsnorm(j->dst + (size_t)r * j->width, j->src + (size_t)r * j->width, j->weight, j->width, j->eps);
}

static void rmsnorm_rows(model_ctx *c, float *dst, const float *src, const float *w, int64_t width, int rows)
{
    norm_job j = {dst, src, w, width, rows, c->m->hp.rms_eps};
    run_split(c, norm_rows, &j, rows);
}

static void matmul(model_ctx *c, const kernels_matrix *w, const float *x, int n_tokens, float *y)
{
    kernels_matmul(w, x, w->cols, n_tokens, y, w->rows, c->mm_scratch, c->pool);
}

/* Matrices that read the same input, each output row-contiguous (stride = its rows). */
static void matmul_shared_input(model_ctx *c, int n, const kernels_matrix *const w[], float *const y[],
                                const float *x, int n_tokens)
{
    int64_t strides[KERNELS_MATMUL_MULTI_MAX];
    for (int i = 0; i < n; i++)
        strides[i] = w[i]->rows;
    kernels_matmul_multi(n, w, y, strides, x, w[0]->cols, n_tokens, c->mm_scratch, c->pool);
}

/* ---- embedding and rope tables --------------------------------------------------------- */

/* A token's row of the table in its GGUF bytes: in place, or from a repacked table
 * (the tied output matrix) through c->tok_row. */
static const void *token_row(model_ctx *c, int32_t token)
{
    const kernels_matrix *t = &c->m->tok_embd;
    if (t->layout == KERNELS_LAYOUT_GGUF)
        return (const uint8_t *)t->data + (size_t)token * t->row_bytes;
    int rc = kernels_unpack_row(t, token, c->tok_row);
    EL_ASSERT(rc == 0); /* tokens were validated against n_vocab */
    (void)rc;
    return c->tok_row;
}

static void embed(model_ctx *c, const model_batch *b)
{
    const model *m = c->m;
    int64_t n_embd = m->hp.n_embd;
    float scale = arch_is_gemma(m->hp.arch) ? sqrtf((float)n_embd) : 1.0f;
    for (int i = 0; i < b->n_tokens; i++) {
        float *dst = c->x + (size_t)i * n_embd;
        kernels_dequantize_row(m->tok_embd.type, token_row(c, b->token[i]), dst, n_embd);
        if (scale != 1.0f)
            kernels_scale(dst, scale, n_embd);
    }
}

/* Gemma 4's per-layer inputs, in llama.cpp's order of operations: the RMS-normed
 * projection of the scaled embedding (times 1/sqrt(n_embd) before the norm), plus
 * the token's row of the per-layer table times sqrt(width), all times 1/sqrt(2). */
static void per_layer_inputs(model_ctx *c, const model_batch *b)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    int P = hp->n_embd_per_layer;
    int64_t width = (int64_t)P * hp->n_layer;
    kernels_matmul(&m->ple_model_proj, c->x, hp->n_embd, b->n_tokens, c->ple_in, width, c->mm_scratch, c->pool);
    float proj_scale = 1.0f / sqrtf((float)hp->n_embd), table_scale = sqrtf((float)P);
    float input_scale = 1.0f / sqrtf(2.0f);
    for (int t = 0; t < b->n_tokens; t++) {
        float *dst = c->ple_in + (size_t)t * width;
        kernels_scale(dst, proj_scale, width);
        for (int il = 0; il < hp->n_layer; il++)
            kernels_rmsnorm(dst + (size_t)il * P, dst + (size_t)il * P, m->ple_proj_norm, P, hp->rms_eps);
        const uint8_t *src = (const uint8_t *)m->ple_tok_embd->data + (size_t)b->token[t] * m->ple_tok_embd_row_bytes;
        kernels_dequantize_row(m->ple_tok_embd->type, src, c->ple_row, width);
        kernels_scale(c->ple_row, table_scale, width);
        kernels_add(dst, c->ple_row, width);
        kernels_scale(dst, input_scale, width);
    }
}

static int rope_stride(const model_hparams *hp)
{
    return hp->n_rot + hp->n_rot_swa;
}

static float *rope_table(const model_ctx *c, int token, bool swa)
{
    const model_hparams *hp = &c->m->hp;
    return c->rope + (size_t)token * (size_t)rope_stride(hp) + (swa ? (size_t)hp->n_rot : 0);
}

/* ggml's angles with frequency factors: each pair's angle divided by its factor
 * (Gemma 4's full layers rotate only their first pairs: the rest have huge factors). */
static void rope_angles_factored(int32_t pos, float base, float freq_scale, int n_rot, const float *factors,
                                 float *cos_out, float *sin_out)
{
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float angle = freq_scale * (theta / factors[i]);
        cos_out[i] = cosf(angle);
        sin_out[i] = sinf(angle);
        theta *= theta_scale;
    }
}

static void fill_rope_tables(model_ctx *c, const model_batch *b)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    for (int i = 0; i < b->n_tokens; i++) {
        float *g = rope_table(c, i, false), *s = rope_table(c, i, true);
        if (m->rope_freqs)
            rope_angles_factored(b->pos[i], hp->rope_base, hp->rope_freq_scale, hp->n_rot, m->rope_freqs, g,
                                 g + hp->n_rot / 2);
        else
            kernels_rope_angles(b->pos[i], hp->rope_base, hp->rope_freq_scale, hp->n_rot, g, g + hp->n_rot / 2);
        kernels_rope_angles(b->pos[i], hp->rope_base_swa, hp->rope_freq_scale_swa, hp->n_rot_swa, s,
                            s + hp->n_rot_swa / 2);
    }
}

/* ---- attention ------------------------------------------------------------------------ */

typedef struct layer_job {
    model_ctx *c;
    kv_cache *kv;
    const model_batch *b;
    int il;
    const model_layer_hparams *lh;
    const int *rows; /* the tokens whose attention output is needed; row i of attn is rows[i] */
    int n_rows;
} layer_job;

static void rmsnorm_heads(float *x, int n_heads, int head_dim, const float *w, float eps)
{
    for (int h = 0; h < n_heads; h++)
        kernels_rmsnorm(x + (size_t)h * head_dim, x + (size_t)h * head_dim, w, head_dim, eps);
}

/* Writes one position's keys and values of one head in the cache's type (Q8_0
 * rounds as ggml's reference quantizer, as llama.cpp's cache copy does). */
static void store_kv(kv_cache *kv, int il, int seq, int h, int pos, const float *k, const float *v)
{
    const kv_layer *c = &kv->layers[il];
    if (kv->type == MODEL_CACHE_F16) {
        kernels_f32_to_f16(k, kv_k_at(kv, il, seq, h, pos), c->head_dim_k);
        kernels_f32_to_f16(v, kv_v_at(kv, il, seq, h, pos), c->head_dim_v);
        return;
    }
    /* kv_cache_create refused head sizes that are not whole blocks */
    int rk = kernels_quantize_row(GGUF_TYPE_Q8_0, k, kv_k_at(kv, il, seq, h, pos), c->head_dim_k);
    int rv = kernels_quantize_row(GGUF_TYPE_Q8_0, v, kv_v_at(kv, il, seq, h, pos), c->head_dim_v);
    EL_ASSERT(rk == 0 && rv == 0);
    (void)rk, (void)rv;
}

/* q/k norms (gemma3/4), v norm (gemma4), rope, query scaling, then K and V into the
 * cache of a layer that has its own. */
static void prepare_qkv(void *p, int ith, int nth)
{
    const layer_job *j = p;
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const model_layer *l = &c->m->layers[j->il];
    const model_layer_hparams *lh = j->lh;
    bool neox = arch_is_gemma(hp->arch), own_kv = lh->kv_layer == j->il;
    int dk = lh->head_dim_k, dv = lh->head_dim_v;
    /* Gemma scales the queries (llama.cpp does so before the F16 product); llama scales scores. */
    float q_scale = arch_is_gemma(hp->arch) ? hp->attn_scale : 1.0f;
    int64_t q_width = (int64_t)hp->n_head * dk, k_width = (int64_t)lh->n_head_kv * dk;
    int64_t v_width = (int64_t)lh->n_head_kv * dv;
    int lo, hi;
    split_range(j->b->n_tokens, ith, nth, &lo, &hi);
    for (int t = lo; t < hi; t++) {
        float *q = c->q + (size_t)t * q_width, *k = c->k + (size_t)t * k_width, *v = c->v + (size_t)t * v_width;
        const float *cs = rope_table(c, t, lh->swa);
        if (l->q_norm)
            rmsnorm_heads(q, hp->n_head, dk, l->q_norm, hp->rms_eps);
        kernels_rope(q, hp->n_head, dk, lh->n_rot, cs, cs + lh->n_rot / 2, neox);
        if (q_scale != 1.0f)
            kernels_scale(q, q_scale, q_width);
        if (!own_kv)
            continue;
        if (lh->v_from_k)
            memcpy(v, k, (size_t)k_width * sizeof *k);
        if (l->k_norm)
            rmsnorm_heads(k, lh->n_head_kv, dk, l->k_norm, hp->rms_eps);
        if (hp->v_norm)
            rmsnorm_heads(v, lh->n_head_kv, dv, NULL, hp->rms_eps);
        kernels_rope(k, lh->n_head_kv, dk, lh->n_rot, cs, cs + lh->n_rot / 2, neox);
        int seq = j->b->seq[t], pos = j->b->pos[t];
        for (int h = 0; h < lh->n_head_kv; h++)
            store_kv(j->kv, j->il, seq, h, pos, k + (size_t)h * dk, v + (size_t)h * dv);
    }
}

/* The positions token t attends, first..last. */
static void attended_range(const layer_job *j, int t, int *first, int *last)
{
    const model_hparams *hp = &j->c->m->hp;
    int seq = j->b->seq[t], pos = j->b->pos[t];
    *first = 0;
    *last = pos;
    if (!hp->causal) {
        /* the whole sequence, or a window centred on the token (llama.cpp's symmetric SWA) */
        *last = j->kv->next[seq] - 1;
        if (j->lh->swa) {
            int half = hp->sliding_window / 2;
            *first = pos - half > 0 ? pos - half : 0;
            *last = pos + half < *last ? pos + half : *last;
        }
    } else if (j->lh->swa && pos - hp->sliding_window + 1 > 0) {
        *first = pos - hp->sliding_window + 1;
    }
}

/* Attention runs in items: a group of consecutive rows of one sequence (a few
 * tokens of a prompt), one KV head, and a part of the query heads that share it.
 * Every query row of an item goes through one pass over the head's keys and
 * values; parts split the heads only when there are too few items to occupy the
 * threads (decoding one sequence). */
typedef struct attend_job {
    const layer_job *lj;
    int n_groups, n_parts, n_items;
    atomic_int next_item;
} attend_job;

static void attend_item(const attend_job *aj, int item, void *scratch)
{
    const layer_job *j = aj->lj;
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const model_layer_hparams *lh = j->lh;
    int dk = lh->head_dim_k, dv = lh->head_dim_v, per_kv = hp->n_head / lh->n_head_kv;
    int part = item % aj->n_parts, kvh = item / aj->n_parts % lh->n_head_kv;
    int g = item / aj->n_parts / lh->n_head_kv;
    int row0 = c->att_group[g], row_end = g + 1 < aj->n_groups ? c->att_group[g + 1] : j->n_rows;
    int h_lo, h_hi;
    split_range(per_kv, part, aj->n_parts, &h_lo, &h_hi);
    kernels_attn_row rows[KERNELS_ATTN_MAX_ROWS];
    int n = 0;
    for (int r = row0; r < row_end; r++) {
        int t = j->rows[r], first, last;
        attended_range(j, t, &first, &last);
        for (int h = kvh * per_kv + h_lo; h < kvh * per_kv + h_hi; h++) {
            EL_ASSERT(n < KERNELS_ATTN_MAX_ROWS);
            rows[n++] = (kernels_attn_row){c->q + (size_t)t * hp->n_head * dk + (size_t)h * dk,
                                           c->attn + (size_t)r * hp->n_head * dv + (size_t)h * dv, first, last};
        }
    }
    int seq = j->b->seq[j->rows[row0]];
    const void *k = kv_k_at(j->kv, lh->kv_layer, seq, kvh, 0), *v = kv_v_at(j->kv, lh->kv_layer, seq, kvh, 0);
    float kq_scale = arch_is_gemma(hp->arch) ? 1.0f : hp->attn_scale;
    if (j->kv->type == MODEL_CACHE_Q8_0) {
        kernels_attn_head_q8_0 head = {k, v, dk, dv, kq_scale, hp->attn_softcap};
        kernels_attn_q8_0(&head, rows, n, scratch);
    } else {
        kernels_attn_head head = {k, v, dk, dv, kq_scale, hp->attn_softcap};
        kernels_attn_f16(&head, rows, n, scratch);
    }
}

/* Items are taken in turn from the last (the longest rows of a causal prompt)
 * to the first, so that the threads finish together. */
static void attend(void *p, int ith, int nth)
{
    attend_job *aj = p;
    void *scratch = (char *)aj->lj->c->att_scratch + (size_t)ith * aj->lj->c->att_scratch_stride;
    for (;;) {
        int taken = atomic_fetch_add_explicit(&aj->next_item, 1, memory_order_relaxed);
        if (taken >= aj->n_items)
            break;
        attend_item(aj, aj->n_items - 1 - taken, scratch);
    }
}

/* Groups of consecutive rows of one sequence, up to tokens_per_group each.
 * Returns how many. */
static int group_rows(const layer_job *j, int tokens_per_group)
{
    int n_groups = 0, in_group = 0;
    for (int r = 0; r < j->n_rows; r++) {
        bool same_seq = r > 0 && j->b->seq[j->rows[r]] == j->b->seq[j->rows[r - 1]];
        if (!same_seq || in_group == tokens_per_group) {
            j->c->att_group[n_groups++] = r;
            in_group = 0;
        }
        in_group++;
    }
    return n_groups;
}

static int ceil_div(int a, int b)
{
    return (a + b - 1) / b;
}

static void attend_rows(model_ctx *c, const layer_job *j)
{
    const model_hparams *hp = &c->m->hp;
    int per_kv = hp->n_head / j->lh->n_head_kv;
    /* the fewest parts that keep an item within the kernel's rows, and as many tokens as then fit */
    int min_parts = ceil_div(per_kv, KERNELS_ATTN_MAX_ROWS);
    int tokens_per_group = KERNELS_ATTN_MAX_ROWS / ceil_div(per_kv, min_parts);
    attend_job aj = {.lj = j, .n_groups = group_rows(j, tokens_per_group), .n_parts = min_parts};
    int whole = aj.n_groups * j->lh->n_head_kv;
    if (whole * aj.n_parts < c->n_threads) {
        int wanted = ceil_div(c->n_threads, whole);
        aj.n_parts = wanted < per_kv ? wanted : per_kv;
    }
    aj.n_items = whole * aj.n_parts;
    atomic_init(&aj.next_item, 0);
    run_split(c, attend, &aj, aj.n_items);
}

/* ---- blocks ----------------------------------------------------------------------------- */

static void add_rows(float *y, const float *x, int64_t n)
{
    kernels_add(y, x, n);
}

/* Every token's keys and values go to the cache; the rest of the layer runs only for
 * `rows` (all of them, except in the last layer, where only the rows that want logits
 * matter: they are then moved to the front of x). */
static void attention_block(model_ctx *c, kv_cache *kv, const model_batch *b, int il, const int *rows, int n)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const model_layer *l = &m->layers[il];
    const model_layer_hparams *lh = &hp->layer[il];
    int n_all = b->n_tokens;
    rmsnorm_rows(c, c->xn, c->x, l->attn_norm, hp->n_embd, n_all);
    const kernels_matrix *qkv[] = {&l->wq, &l->wk, &l->wv};
    float *const qkv_out[] = {c->q, c->k, c->v};
    int n_mats = lh->kv_layer != il ? 1 : lh->v_from_k ? 2 : 3;
    matmul_shared_input(c, n_mats, qkv, qkv_out, c->xn, n_all);
    layer_job j = {c, kv, b, il, lh, rows, n};
    run_split(c, prepare_qkv, &j, n_all);
    if (n == 0)
        return;
    attend_rows(c, &j);
    if (rows != c->all_rows)
        for (int r = 0; r < n; r++)
            memmove(c->x + (size_t)r * hp->n_embd, c->x + (size_t)rows[r] * hp->n_embd,
                    (size_t)hp->n_embd * sizeof(float));
    matmul(c, &l->wo, c->attn, n, c->proj);
    if (l->post_attn_norm)
        rmsnorm_rows(c, c->proj, c->proj, l->post_attn_norm, hp->n_embd, n);
    add_rows(c->x, c->proj, (int64_t)n * hp->n_embd);
}

typedef struct glu_job {
    float *gate;
    const float *up;
    int64_t n;
    bool gelu;
} glu_job;

static void glu_rows(void *p, int ith, int nth)
{
    const glu_job *j = p;
    int64_t lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
    if (j->gelu)
        kernels_geglu(j->gate + lo, j->up + lo, hi - lo);
    else
        kernels_swiglu(j->gate + lo, j->up + lo, hi - lo);
}

/* Gemma 3n's activation sparsity: gate values below mean + k std (over the row)
 * become 0, the rest shrink by that cutoff; in llama.cpp's order of operations. */
static void gaussian_topk(float *x, int64_t n, float k)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)x[i];
    float mean = (float)sum / (float)n;
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float d = x[i] - mean;
        sq += (double)(d * d);
    }
    float std = sqrtf((float)sq * (1.0f / (float)(n - 1)));
    float cutoff = mean + std * k;
    for (int64_t i = 0; i < n; i++)
        x[i] = fmaxf(x[i] - cutoff, 0.0f);
}

/* The dense FFN of n rows of xn into proj. */
static void dense_ffn(model_ctx *c, int il, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    const kernels_matrix *gate_up[] = {&l->ffn_gate, &l->ffn_up};
    float *const gate_up_out[] = {c->gate, c->up};
    matmul_shared_input(c, 2, gate_up, gate_up_out, c->xn, n);
    int64_t n_ff = l->ffn_gate.rows;
    if (il < hp->n_layer_sparse)
        for (int r = 0; r < n; r++)
            gaussian_topk(c->gate + (size_t)r * n_ff, n_ff, hp->sparsity_std_mul);
    glu_job g = {c->gate, c->up, (int64_t)n * n_ff, arch_is_gemma(hp->arch)};
    run_split(c, glu_rows, &g, n_ff >= 4096 || n > 1 ? 2 : 1);
    matmul(c, &l->ffn_down, c->gate, n, c->proj);
}

/* Gemma 4's router: softmax over the experts of W (rmsnorm(x) / sqrt(n_embd) * scale),
 * the top n_expert_used kept with their probabilities renormalized to sum 1. */
static void route_tokens(model_ctx *c, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t n_embd = hp->n_embd;
    int E = hp->n_expert, K = hp->n_expert_used;
    float inv_sqrt = 1.0f / sqrtf((float)n_embd);
    for (int t = 0; t < n; t++) {
        float *xr = c->xn + (size_t)t * n_embd;
        kernels_rmsnorm(xr, c->x + (size_t)t * n_embd, NULL, n_embd, hp->rms_eps);
        kernels_scale(xr, inv_sqrt, n_embd);
        for (int64_t i = 0; i < n_embd; i++)
            xr[i] *= l->router_scale[i];
    }
    matmul(c, &l->router, c->xn, n, c->moe_probs);
    for (int t = 0; t < n; t++) {
        float *probs = c->moe_probs + (size_t)t * E;
        int *choice = c->moe_choice + (size_t)t * K;
        float *weight = c->moe_weight + (size_t)t * K;
        kernels_softmax(probs, E);
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int i = 0; i < k; i++)
                    taken |= choice[i] == e;
                if (!taken && (best < 0 || probs[e] > probs[best]))
                    best = e;
            }
            choice[k] = best;
            weight[k] = probs[best];
        }
        float sum = 0.0f;
        for (int k = 0; k < K; k++)
            sum += weight[k];
        sum = fmaxf(sum, 6.103515625e-5f); /* llama.cpp's clamp before the division */
        for (int k = 0; k < K; k++)
            weight[k] /= sum;
    }
}

/* One expert's rows of a weight holding every expert's matrix back to back. */
static kernels_matrix expert_slice(const kernels_matrix *all, int n_expert, int e)
{
    kernels_matrix w = *all;
    w.rows = all->rows / n_expert;
    w.data = (const uint8_t *)all->data + (size_t)e * (size_t)w.rows * all->row_bytes;
    return w;
}

/* The experts on n rows of xn (already normed), weighted sum into moe_out. */
static void run_experts(model_ctx *c, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t n_embd = hp->n_embd, F = hp->n_ff_exp;
    int E = hp->n_expert, K = hp->n_expert_used;
    memset(c->moe_out, 0, (size_t)n * (size_t)n_embd * sizeof(float));
    for (int e = 0; e < E; e++) {
        int m = 0;
        for (int t = 0; t < n; t++)
            for (int k = 0; k < K; k++)
                if (c->moe_choice[(size_t)t * K + k] == e) {
                    c->exp_rows[m] = t;
                    c->exp_slot[m] = k;
                    memcpy(c->exp_in + (size_t)m * n_embd, c->xn + (size_t)t * n_embd, (size_t)n_embd * sizeof(float));
                    m++;
                }
        if (m == 0)
            continue;
        kernels_matrix gate_up = expert_slice(&l->gate_up_exps, E, e), down = expert_slice(&l->down_exps, E, e);
        kernels_matmul(&gate_up, c->exp_in, n_embd, m, c->exp_mid, 2 * F, c->mm_scratch, c->pool);
        for (int r = 0; r < m; r++)
            kernels_geglu(c->exp_mid + (size_t)r * 2 * F, c->exp_mid + (size_t)r * 2 * F + F, F);
        kernels_matmul(&down, c->exp_mid, 2 * F, m, c->exp_out, n_embd, c->mm_scratch, c->pool);
        for (int r = 0; r < m; r++) {
            float *y = c->exp_out + (size_t)r * n_embd;
            int t = c->exp_rows[r];
            kernels_scale(y, l->down_exps_scale[e], n_embd);
            kernels_scale(y, c->moe_weight[(size_t)t * K + c->exp_slot[r]], n_embd);
            kernels_add(c->moe_out + (size_t)t * n_embd, y, n_embd);
        }
    }
}

/* Gemma 4's MoE layers: the dense FFN (ffn_norm, post_ffw_norm_1) plus the experts
 * (pre_ffw_norm_2, post_ffw_norm_2), their sum into proj. */
static void moe_ffn(model_ctx *c, int il, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t width = (int64_t)n * hp->n_embd;
    rmsnorm_rows(c, c->xn, c->x, l->ffn_norm, hp->n_embd, n);
    dense_ffn(c, il, l, n);
    rmsnorm_rows(c, c->proj, c->proj, l->post_ffw_norm_1, hp->n_embd, n);
    route_tokens(c, l, n);
    rmsnorm_rows(c, c->xn, c->x, l->pre_ffw_norm_2, hp->n_embd, n);
    run_experts(c, l, n);
    rmsnorm_rows(c, c->moe_out, c->moe_out, l->post_ffw_norm_2, hp->n_embd, n);
    kernels_add(c->proj, c->moe_out, width);
}

static void ffn_block(model_ctx *c, int il, int n)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const model_layer *l = &m->layers[il];
    if (hp->layer[il].moe) {
        moe_ffn(c, il, l, n);
    } else {
        rmsnorm_rows(c, c->xn, c->x, l->ffn_norm, hp->n_embd, n);
        dense_ffn(c, il, l, n);
    }
    if (l->post_ffw_norm)
        rmsnorm_rows(c, c->proj, c->proj, l->post_ffw_norm, hp->n_embd, n);
    add_rows(c->x, c->proj, (int64_t)n * hp->n_embd);
}

/* Gemma 4's per-layer input: x += norm(proj(gelu(gate(x)) * input of this layer)). */
static void per_layer_block(model_ctx *c, int il, const int *rows, int n)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const model_layer *l = &m->layers[il];
    int P = hp->n_embd_per_layer;
    int64_t width = (int64_t)P * hp->n_layer;
    matmul(c, &l->ple_gate, c->x, n, c->ple_gate);
    for (int r = 0; r < n; r++)
        kernels_geglu(c->ple_gate + (size_t)r * P, c->ple_in + (size_t)rows[r] * width + (size_t)il * P, P);
    matmul(c, &l->ple_proj, c->ple_gate, n, c->proj);
    rmsnorm_rows(c, c->proj, c->proj, l->ple_post_norm, hp->n_embd, n);
    add_rows(c->x, c->proj, (int64_t)n * hp->n_embd);
}

static int list_logit_rows(model_ctx *c, const model_batch *b)
{
    int n_out = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        bool want = b->want_logits ? b->want_logits[i] : i == b->n_tokens - 1;
        if (want)
            c->logit_rows[n_out++] = i;
    }
    return n_out;
}

/* The first n_out rows of x are the tokens that want logits, in batch order. */
static void output_logits(model_ctx *c, int n_out, float *logits)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    rmsnorm_rows(c, c->xn, c->x, m->output_norm, hp->n_embd, n_out);
    kernels_matmul(&m->output, c->xn, hp->n_embd, n_out, logits, hp->n_vocab, c->mm_scratch, c->pool);
    if (hp->final_softcap > 0.0f)
        kernels_softcap(logits, hp->final_softcap, (int64_t)n_out * hp->n_vocab);
}

/* ---- gemma3n: AltUp streams and LAuReL ------------------------------------------------ */

static float row_magnitude(const float *x, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    return sqrtf((float)sum);
}

/* y = y * target / |y| (llama.cpp: a multiplication, then a division). */
static void match_magnitude(float *y, int64_t n, float target)
{
    float mag = row_magnitude(y, n);
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] * target / mag;
}

static float *stream(model_ctx *c, float *base, int t, int k)
{
    const model_hparams *hp = &c->m->hp;
    return base + ((size_t)t * hp->n_altup + k) * (size_t)hp->n_embd;
}

/* Stream 0 is the scaled embedding; stream k its projection k, at the embedding's magnitude. */
static void altup_spread(model_ctx *c, int n)
{
    const model *m = c->m;
    int64_t E = m->hp.n_embd;
    int A = m->hp.n_altup;
    for (int k = 1; k < A; k++) {
        kernels_matrix w = expert_slice(&m->altup_proj, A - 1, k - 1);
        kernels_matmul(&w, c->x, E, n, c->alt_tmp, E, c->mm_scratch, c->pool);
        for (int t = 0; t < n; t++) {
            float *dst = stream(c, c->alt, t, k);
            memcpy(dst, c->alt_tmp + (size_t)t * E, (size_t)E * sizeof *dst);
            match_magnitude(dst, E, row_magnitude(c->x + (size_t)t * E, E));
        }
    }
    for (int t = 0; t < n; t++)
        memcpy(stream(c, c->alt, t, 0), c->x + (size_t)t * E, (size_t)E * sizeof(float));
}

/* tanh(router (rmsnorm(x) / n_embd)) for n rows of x (stride n_embd). */
static void altup_modalities(model_ctx *c, const model_layer *l, const float *x, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t E = hp->n_embd;
    for (int t = 0; t < n; t++) {
        float *dst = c->alt_tmp + (size_t)t * E;
        kernels_rmsnorm(dst, x + (size_t)t * E, l->altup_router_norm, E, hp->rms_eps);
        kernels_scale(dst, 1.0f / (float)E, E);
    }
    matmul(c, &l->altup_router, c->alt_tmp, n, c->alt_modal);
    for (int64_t i = 0; i < (int64_t)n * hp->n_altup; i++)
        c->alt_modal[i] = tanhf(c->alt_modal[i]);
}

/* prediction_j = stream_j + sum_k coef[j][k] stream_k, the coefficients from the
 * active stream's router. */
static void altup_predict(model_ctx *c, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t E = hp->n_embd;
    int A = hp->n_altup;
    for (int t = 0; t < n; t++)
        memcpy(c->alt_pred + (size_t)t * E, stream(c, c->alt, t, hp->altup_active), (size_t)E * sizeof(float));
    altup_modalities(c, l, c->alt_pred, n);
    matmul(c, &l->altup_predict_coef, c->alt_modal, n, c->alt_coef);
    for (int t = 0; t < n; t++) {
        const float *coef = c->alt_coef + (size_t)t * A * A;
        for (int j = 0; j < A; j++) {
            float *dst = stream(c, c->alt_pred, t, j);
            const float *self = stream(c, c->alt, t, j);
            for (int64_t i = 0; i < E; i++) {
                double sum = 0.0;
                for (int k = 0; k < A; k++)
                    sum += (double)(stream(c, c->alt, t, k)[i] * coef[j * A + k]);
                dst[i] = (float)sum + self[i];
            }
        }
    }
}

/* stream_j = prediction_j + (1 + coef_j) (x - active prediction), the coefficients
 * from x's router. */
static void altup_correct(model_ctx *c, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t E = hp->n_embd;
    int A = hp->n_altup;
    altup_modalities(c, l, c->x, n);
    matmul(c, &l->altup_correct_coef, c->alt_modal, n, c->alt_coef);
    for (int t = 0; t < n; t++) {
        const float *x = c->x + (size_t)t * E, *active = stream(c, c->alt_pred, t, hp->altup_active);
        for (int j = 0; j < A; j++) {
            float scale = c->alt_coef[(size_t)t * A + j] + 1.0f;
            float *dst = stream(c, c->alt, t, j);
            const float *pred = stream(c, c->alt_pred, t, j);
            for (int64_t i = 0; i < E; i++)
                dst[i] = (x[i] - active[i]) * scale + pred[i];
        }
    }
}

/* LAuReL: norm(R (L xn)) + xn, where xn is the normed input of attention. */
static void laurel(model_ctx *c, const model_layer *l, int n, float *out)
{
    const model_hparams *hp = &c->m->hp;
    matmul(c, &l->laurel_l, c->xn, n, c->laurel_mid);
    matmul(c, &l->laurel_r, c->laurel_mid, n, out);
    rmsnorm_rows(c, out, out, l->laurel_post_norm, hp->n_embd, n);
    add_rows(out, c->xn, (int64_t)n * hp->n_embd);
}

/* The per-layer input, gated by the corrected active stream, added to the other streams. */
static void altup_per_layer(model_ctx *c, int il, const model_layer *l, int n)
{
    const model_hparams *hp = &c->m->hp;
    int64_t E = hp->n_embd, width = (int64_t)hp->n_embd_per_layer * hp->n_layer;
    int P = hp->n_embd_per_layer;
    for (int t = 0; t < n; t++) {
        const float *active = stream(c, c->alt, t, hp->altup_active);
        float *dst = c->alt_tmp + (size_t)t * E;
        for (int64_t i = 0; i < E; i++)
            dst[i] = active[i] * l->altup_correct_scale[i];
    }
    matmul(c, &l->ple_gate, c->alt_tmp, n, c->ple_gate);
    for (int t = 0; t < n; t++)
        kernels_geglu(c->ple_gate + (size_t)t * P, c->ple_in + (size_t)t * width + (size_t)il * P, P);
    matmul(c, &l->ple_proj, c->ple_gate, n, c->proj);
    rmsnorm_rows(c, c->proj, c->proj, l->ple_post_norm, E, n);
    for (int t = 0; t < n; t++)
        for (int k = 1; k < hp->n_altup; k++)
            kernels_add(stream(c, c->alt, t, k), c->proj + (size_t)t * E, E);
}

/* Back to one stream: stream 0 plus each other stream's projection at the active
 * stream's magnitude, averaged; the rows that want output moved to the front of x. */
static void altup_merge(model_ctx *c, int n, const int *rows, int n_out)
{
    const model *m = c->m;
    int64_t E = m->hp.n_embd;
    int A = m->hp.n_altup;
    for (int r = 0; r < n_out; r++)
        memcpy(c->x + (size_t)r * E, stream(c, c->alt, rows[r], 0), (size_t)E * sizeof(float));
    for (int k = 1; k < A; k++) {
        kernels_matrix w = expert_slice(&m->altup_unembd_proj, A - 1, k - 1);
        for (int r = 0; r < n_out; r++)
            memcpy(c->alt_tmp + (size_t)r * E, stream(c, c->alt, rows[r], k), (size_t)E * sizeof(float));
        kernels_matmul(&w, c->alt_tmp, E, n_out, c->proj, E, c->mm_scratch, c->pool);
        for (int r = 0; r < n_out; r++) {
            float *u = c->proj + (size_t)r * E;
            match_magnitude(u, E, row_magnitude(stream(c, c->alt, rows[r], m->hp.altup_active), E));
            kernels_add(c->x + (size_t)r * E, u, E);
        }
    }
    kernels_scale(c->x, 1.0f / (float)A, (int64_t)n_out * E);
    (void)n;
}

/* Gemma 3n's layers: attention and FFN run on the active stream's prediction, with
 * LAuReL beside attention; AltUp corrects every stream from the result. */
static void run_layers_altup(model_ctx *c, kv_cache *kv, const model_batch *b, const int *out_rows, int n_out)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    int n = b->n_tokens;
    int64_t E = hp->n_embd;
    embed(c, b);
    per_layer_inputs(c, b);
    fill_rope_tables(c, b);
    altup_spread(c, n);
    float *laurel_out = c->up; /* free between the attention and the FFN */
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *l = &m->layers[il];
        altup_predict(c, l, n);
        for (int t = 0; t < n; t++)
            memcpy(c->x + (size_t)t * E, stream(c, c->alt_pred, t, hp->altup_active), (size_t)E * sizeof(float));
        attention_block(c, kv, b, il, c->all_rows, n);
        laurel(c, l, n, laurel_out);
        add_rows(c->x, laurel_out, (int64_t)n * E);
        kernels_scale(c->x, 1.0f / sqrtf(2.0f), (int64_t)n * E);
        ffn_block(c, il, n);
        altup_correct(c, l, n);
        altup_per_layer(c, il, l, n);
    }
    altup_merge(c, n, out_rows, n_out);
    for (int s = 0; s < kv->n_seq; s++)
        kv->len[s] = kv->next[s];
}

/* Every layer over the batch; the last one only for rows[0..n_out), which end up as
 * the first n_out rows of x. */
static void run_layers(model_ctx *c, kv_cache *kv, const model_batch *b, const int *out_rows, int n_out)
{
    const model *m = c->m;
    if (m->hp.n_altup > 0) {
        run_layers_altup(c, kv, b, out_rows, n_out);
        return;
    }
    embed(c, b);
    if (m->hp.n_embd_per_layer > 0)
        per_layer_inputs(c, b);
    fill_rope_tables(c, b);
    int n_layer = m->hp.n_layer;
    for (int il = 0; il < n_layer; il++) {
        bool last = il == n_layer - 1;
        const int *rows = last ? out_rows : c->all_rows;
        int n = last ? n_out : b->n_tokens;
        attention_block(c, kv, b, il, rows, n);
        if (n == 0)
            continue;
        ffn_block(c, il, n);
        if (m->hp.n_embd_per_layer > 0)
            per_layer_block(c, il, rows, n);
        if (m->layers[il].out_scale)
            kernels_scale(c->x, m->layers[il].out_scale[0], (int64_t)n * m->hp.n_embd);
    }
    for (int s = 0; s < kv->n_seq; s++)
        kv->len[s] = kv->next[s];
}

int model_forward(model_ctx *c, kv_cache *kv, const model_batch *b, float *logits, el_err *err)
{
    if (!c->m->hp.causal)
        return el_fail(err, "%s is an embedding model: it gives embeddings (model_embed), not logits",
                       model_arch_name(c->m->hp.arch));
    if (validate_batch(c, kv, b, err) < 0)
        return -1;
    int n_out = logits ? list_logit_rows(c, b) : 0;
    run_layers(c, kv, b, c->logit_rows, n_out);
    if (n_out > 0)
        output_logits(c, n_out, logits);
    return 0;
}

/* ---- embeddings ------------------------------------------------------------------------ */

int model_embedding_size(const model *m)
{
    return m->hp.n_embd;
}

/* The hidden states a pooling needs: every token (mean), or each sequence's first or
 * last token of the batch. */
static int list_pooled_rows(model_ctx *c, const model_batch *b, enum model_pooling pooling)
{
    int n = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        bool want = pooling == MODEL_POOLING_MEAN;
        if (pooling == MODEL_POOLING_CLS)
            want = b->pos[i] == 0;
        if (pooling == MODEL_POOLING_LAST) {
            want = true;
            for (int k = i + 1; k < b->n_tokens && want; k++)
                want = b->seq[k] != b->seq[i];
        }
        if (want)
            c->logit_rows[n++] = i;
    }
    return n;
}

static void l2_normalize(float *v, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)v[i] * v[i];
    if (sum > 0.0)
        kernels_scale(v, (float)(1.0 / sqrt(sum)), n);
}

int model_embed(model_ctx *c, kv_cache *kv, const model_batch *b, enum model_pooling pooling, bool normalize,
                float *out, el_err *err)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    if (pooling == MODEL_POOLING_NONE)
        pooling = hp->pooling;
    if (pooling != MODEL_POOLING_MEAN && pooling != MODEL_POOLING_CLS && pooling != MODEL_POOLING_LAST)
        return el_fail(err, "%s says no pooling: ask for mean, CLS or last-token pooling of its hidden states",
                       model_arch_name(hp->arch));
    if (validate_batch(c, kv, b, err) < 0)
        return -1;
    for (int i = 0; i < b->n_tokens; i++)
        if (kv->len[b->seq[i]] != 0)
            return el_fail(err, "token %d: sequence %d already holds %d positions; an embedding takes the "
                                "sequence whole, in one batch", i, b->seq[i], kv->len[b->seq[i]]);
    int n_rows = list_pooled_rows(c, b, pooling);
    int64_t E = hp->n_embd, W = hp->n_dense > E ? hp->n_dense : E;
    /* one pooled row per sequence, in the order sequences first appear */
    float *pooled = calloc((size_t)kv->n_seq * (size_t)(2 * W), sizeof *pooled);
    int *seq_of = calloc((size_t)kv->n_seq, sizeof *seq_of), *count = calloc((size_t)kv->n_seq, sizeof *count);
    int *slot = malloc((size_t)kv->n_seq * sizeof *slot);
    if (!pooled || !seq_of || !count || !slot) {
        free(pooled), free(seq_of), free(count), free(slot);
        return el_fail(err, "out of memory for %d embeddings", kv->n_seq);
    }
    run_layers(c, kv, b, c->logit_rows, n_rows);
    rmsnorm_rows(c, c->xn, c->x, m->output_norm, E, n_rows);
    int n_seqs = 0;
    for (int s = 0; s < kv->n_seq; s++)
        slot[s] = -1;
    for (int r = 0; r < n_rows; r++) {
        int seq = b->seq[c->logit_rows[r]];
        if (slot[seq] < 0) {
            slot[seq] = n_seqs;
            seq_of[n_seqs++] = seq;
        }
        kernels_add(pooled + (size_t)slot[seq] * E, c->xn + (size_t)r * E, E);
        count[slot[seq]]++;
    }
    for (int k = 0; k < n_seqs; k++)
        kernels_scale(pooled + (size_t)k * E, 1.0f / (float)count[k], E);
    if (hp->n_dense > 0) {
        float *mid = pooled + (size_t)kv->n_seq * W;
        kernels_matmul(&m->dense_2, pooled, E, n_seqs, mid, hp->n_dense, c->mm_scratch, c->pool);
        kernels_matmul(&m->dense_3, mid, hp->n_dense, n_seqs, pooled, E, c->mm_scratch, c->pool);
    }
    for (int k = 0; k < n_seqs; k++) {
        float *dst = out + (size_t)seq_of[k] * E;
        memcpy(dst, pooled + (size_t)k * E, (size_t)E * sizeof *dst);
        if (normalize)
            l2_normalize(dst, E);
    }
    free(pooled), free(seq_of), free(count), free(slot);
    return 0;
}

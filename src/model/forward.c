/* The forward pass shared by every architecture: per-arch differences are a
 * handful of switches (embedding scale, activation, extra norms, rope style,
 * soft-capping, sliding window), never separate code paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

struct model_ctx {
    const model *m;
    threadpool *pool;
    int n_threads;
    int max_batch;

    /* activations, max_batch rows each */
    float *x;     /* residual stream [n_embd] */
    float *xn;    /* normed input of a block [n_embd] */
    float *q;     /* [n_head * head_dim_k] */
    float *k;     /* [n_head_kv * head_dim_k] */
    float *v;     /* [n_head_kv * head_dim_v] */
    float *attn;  /* attention output [n_head * head_dim_v] */
    float *proj;  /* output of attn_output / ffn_down [n_embd] */
    float *gate;  /* [n_ff] */
    float *up;    /* [n_ff] */
    float *rope;  /* per token: cos, sin for global layers, then for sliding layers [4][n_rot/2] */
    int *all_rows;   /* 0, 1, 2, ...: every token of the batch */
    int *logit_rows; /* batch indices of the tokens that want logits */

    void *mm_scratch;   /* kernels_matmul activations, 64-byte aligned */
    size_t mm_scratch_size;
    float *att_acc;     /* per thread [head_dim_v] */
    uint16_t *att_q16;  /* per thread [head_dim_k] */
};

/* ---- per-arch switches ------------------------------------------------------------- */

static bool arch_is_gemma(enum model_arch a)
{
    return a == MODEL_ARCH_GEMMA || a == MODEL_ARCH_GEMMA2 || a == MODEL_ARCH_GEMMA3;
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

/* The largest of: one matrix alone, or a group that shares its input (kernels_matmul_multi). */
static size_t max_matmul_scratch(const model *m, int n_tokens)
{
    size_t best = kernels_matmul_scratch_size(m->output.type, m->output.cols, n_tokens);
    for (int il = 0; il < m->hp.n_layer; il++) {
        const model_layer *l = &m->layers[il];
        const kernels_matrix *qkv[] = {&l->wq, &l->wk, &l->wv}, *gate_up[] = {&l->ffn_gate, &l->ffn_up};
        size_t sizes[] = {group_scratch(qkv, 3, n_tokens), group_scratch(gate_up, 2, n_tokens),
                          kernels_matmul_scratch_size(l->wo.type, l->wo.cols, n_tokens),
                          kernels_matmul_scratch_size(l->ffn_down.type, l->ffn_down.cols, n_tokens)};
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
    float **bufs[] = {&c->x, &c->xn, &c->q, &c->k, &c->v, &c->attn, &c->proj, &c->gate, &c->up, &c->rope, &c->att_acc};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(*bufs[i]);
    free(c->att_q16);
    free(c->logit_rows);
    free(c->all_rows);
    free(c->mm_scratch);
    free(c);
}

enum { MAX_BATCH = 1 << 16 };

static float *alloc_rows(int rows, int64_t width)
{
    return aligned_alloc(64, align64((size_t)rows * (size_t)width * sizeof(float)));
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
    int64_t q_width = (int64_t)hp->n_head * hp->head_dim_k;
    int64_t attn_width = (int64_t)hp->n_head * hp->head_dim_v;
    c->x = alloc_rows(max_batch, hp->n_embd);
    c->xn = alloc_rows(max_batch, hp->n_embd);
    c->q = alloc_rows(max_batch, q_width);
    c->k = alloc_rows(max_batch, (int64_t)hp->n_head_kv * hp->head_dim_k);
    c->v = alloc_rows(max_batch, (int64_t)hp->n_head_kv * hp->head_dim_v);
    c->attn = alloc_rows(max_batch, attn_width);
    c->proj = alloc_rows(max_batch, hp->n_embd);
    c->gate = alloc_rows(max_batch, hp->n_ff);
    c->up = alloc_rows(max_batch, hp->n_ff);
    c->rope = alloc_rows(max_batch, 2 * (int64_t)hp->n_rot);
    c->logit_rows = calloc((size_t)max_batch, sizeof *c->logit_rows);
    c->all_rows = calloc((size_t)max_batch, sizeof *c->all_rows);
    for (int i = 0; c->all_rows && i < max_batch; i++)
        c->all_rows[i] = i;
    c->att_acc = alloc_rows(c->n_threads, align64((size_t)hp->head_dim_v));
    c->att_q16 = aligned_alloc(64, align64((size_t)c->n_threads * align64((size_t)hp->head_dim_k) * sizeof(uint16_t)));
    c->mm_scratch_size = align64(max_matmul_scratch(m, max_batch));
    c->mm_scratch = aligned_alloc(64, c->mm_scratch_size ? c->mm_scratch_size : 64);
    if (!c->x || !c->xn || !c->q || !c->k || !c->v || !c->attn || !c->proj || !c->gate || !c->up || !c->rope ||
        !c->logit_rows || !c->all_rows || !c->att_acc || !c->att_q16 || !c->mm_scratch) {
        model_ctx_free(c);
        el_fail(err, "out of memory for a batch of %d tokens", max_batch);
        return NULL;
    }
    return c;
}

/* ---- batch validation ---------------------------------------------------------------- */

static int validate_batch(const model_ctx *c, kv_cache *kv, const model_batch *b, el_err *err)
{
    const model_hparams *hp = &c->m->hp;
    if (!b || b->n_tokens < 1 || b->n_tokens > c->max_batch)
        return el_fail(err, "batch of %d tokens is out of range [1, %d]", b ? b->n_tokens : 0, c->max_batch);
    if (!b->token || !b->pos || !b->seq)
        return el_fail(err, "batch without tokens, positions or sequence ids");
    if (kv->n_layer != hp->n_layer || kv->n_head_kv != hp->n_head_kv || kv->head_dim_k != hp->head_dim_k ||
        kv->head_dim_v != hp->head_dim_v)
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

static void embed(model_ctx *c, const model_batch *b)
{
    const model *m = c->m;
    int64_t n_embd = m->hp.n_embd;
    float scale = arch_is_gemma(m->hp.arch) ? sqrtf((float)n_embd) : 1.0f;
    for (int i = 0; i < b->n_tokens; i++) {
        const uint8_t *row = (const uint8_t *)m->tok_embd->data + (size_t)b->token[i] * m->tok_embd_row_bytes;
        float *dst = c->x + (size_t)i * n_embd;
        kernels_dequantize_row(m->tok_embd->type, row, dst, n_embd);
        if (scale != 1.0f)
            kernels_scale(dst, scale, n_embd);
    }
}

static float *rope_table(const model_ctx *c, int token, bool swa)
{
    return c->rope + (size_t)token * 2 * (size_t)c->m->hp.n_rot + (swa ? (size_t)c->m->hp.n_rot : 0);
}

static void fill_rope_tables(model_ctx *c, const model_batch *b)
{
    const model_hparams *hp = &c->m->hp;
    int half = hp->n_rot / 2;
    for (int i = 0; i < b->n_tokens; i++) {
        float *g = rope_table(c, i, false), *s = rope_table(c, i, true);
        kernels_rope_angles(b->pos[i], hp->rope_base, hp->rope_freq_scale, hp->n_rot, g, g + half);
        kernels_rope_angles(b->pos[i], hp->rope_base_swa, hp->rope_freq_scale_swa, hp->n_rot, s, s + half);
    }
}

/* ---- attention ------------------------------------------------------------------------ */

typedef struct layer_job {
    model_ctx *c;
    kv_cache *kv;
    const model_batch *b;
    int il;
    bool swa;
    const int *rows; /* the tokens whose attention output is needed; row i of attn is rows[i] */
    int n_rows;
} layer_job;

/* q/k norms (gemma3), rope, query scaling, then K and V into the cache. */
static void prepare_qkv(void *p, int ith, int nth)
{
    const layer_job *j = p;
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const model_layer *l = &c->m->layers[j->il];
    bool neox = arch_is_gemma(hp->arch);
    /* Gemma scales the queries (llama.cpp does so before the F16 product); llama scales scores. */
    float q_scale = arch_is_gemma(hp->arch) ? hp->attn_scale : 1.0f;
    int64_t q_width = (int64_t)hp->n_head * hp->head_dim_k, k_width = (int64_t)hp->n_head_kv * hp->head_dim_k;
    int64_t v_width = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int lo, hi;
    split_range(j->b->n_tokens, ith, nth, &lo, &hi);
    for (int t = lo; t < hi; t++) {
        float *q = c->q + (size_t)t * q_width, *k = c->k + (size_t)t * k_width, *v = c->v + (size_t)t * v_width;
        if (l->q_norm) {
            for (int h = 0; h < hp->n_head; h++)
                kernels_rmsnorm(q + (size_t)h * hp->head_dim_k, q + (size_t)h * hp->head_dim_k, l->q_norm,
                                hp->head_dim_k, hp->rms_eps);
            for (int h = 0; h < hp->n_head_kv; h++)
                kernels_rmsnorm(k + (size_t)h * hp->head_dim_k, k + (size_t)h * hp->head_dim_k, l->k_norm,
                                hp->head_dim_k, hp->rms_eps);
        }
        const float *cs = rope_table(c, t, j->swa);
        kernels_rope(q, hp->n_head, hp->head_dim_k, hp->n_rot, cs, cs + hp->n_rot / 2, neox);
        kernels_rope(k, hp->n_head_kv, hp->head_dim_k, hp->n_rot, cs, cs + hp->n_rot / 2, neox);
        if (q_scale != 1.0f)
            kernels_scale(q, q_scale, q_width);
        int seq = j->b->seq[t], pos = j->b->pos[t];
        for (int h = 0; h < hp->n_head_kv; h++) {
            kernels_f32_to_f16(k + (size_t)h * hp->head_dim_k, kv_k_at(j->kv, j->il, seq, h, pos), hp->head_dim_k);
            kernels_f32_to_f16(v + (size_t)h * hp->head_dim_v, kv_v_at(j->kv, j->il, seq, h, pos), hp->head_dim_v);
        }
    }
}

/* One query head of one token against its sequence's cache, with a streaming
 * (online) softmax: one pass over the keys and values, no score buffer. */
static void attend_one(const layer_job *j, int row, int h, uint16_t *q16, float *acc)
{
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    int dk = hp->head_dim_k, dv = hp->head_dim_v;
    int kvh = h / (hp->n_head / hp->n_head_kv);
    int t = j->rows[row];
    int seq = j->b->seq[t], pos = j->b->pos[t];
    float kq_scale = arch_is_gemma(hp->arch) ? 1.0f : hp->attn_scale;
    float cap = hp->attn_softcap;
    int first = 0;
    if (j->swa && pos - hp->sliding_window + 1 > 0)
        first = pos - hp->sliding_window + 1;

    kernels_f32_to_f16(c->q + (size_t)t * hp->n_head * dk + (size_t)h * dk, q16, dk);
    memset(acc, 0, (size_t)dv * sizeof *acc);
    const uint16_t *keys = kv_k_at(j->kv, j->il, seq, kvh, 0);
    const uint16_t *vals = kv_v_at(j->kv, j->il, seq, kvh, 0);
    float max = -INFINITY, sum = 0.0f;
    for (int p = first; p <= pos; p++) {
        float s = kernels_dot_f16(q16, keys + (size_t)p * dk, dk) * kq_scale;
        if (cap > 0.0f)
            s = cap * tanhf(s / cap);
        if (s > max) {
            float rescale = expf(max - s);
            if (sum > 0.0f)
                kernels_scale(acc, rescale, dv);
            sum *= rescale;
            max = s;
        }
        float w = expf(s - max);
        sum += w;
        kernels_axpy_f16(acc, w, vals + (size_t)p * dv, dv);
    }
    float *out = c->attn + (size_t)row * hp->n_head * dv + (size_t)h * dv;
    float inv = 1.0f / sum;
    for (int d = 0; d < dv; d++)
        out[d] = acc[d] * inv;
}

static void attend(void *p, int ith, int nth)
{
    const layer_job *j = p;
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    uint16_t *q16 = c->att_q16 + (size_t)ith * align64((size_t)hp->head_dim_k);
    float *acc = c->att_acc + (size_t)ith * align64((size_t)hp->head_dim_v);
    int n_items = j->n_rows * hp->n_head;
    /* Interleaved so that long and short causal rows spread evenly. */
    for (int item = ith; item < n_items; item += nth)
        attend_one(j, item / hp->n_head, item % hp->n_head, q16, acc);
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
    int n_all = b->n_tokens;
    rmsnorm_rows(c, c->xn, c->x, l->attn_norm, hp->n_embd, n_all);
    const kernels_matrix *qkv[] = {&l->wq, &l->wk, &l->wv};
    float *const qkv_out[] = {c->q, c->k, c->v};
    matmul_shared_input(c, 3, qkv, qkv_out, c->xn, n_all);
    layer_job j = {c, kv, b, il, model_layer_is_swa(hp, il), rows, n};
    run_split(c, prepare_qkv, &j, n_all);
    if (n == 0)
        return;
    run_split(c, attend, &j, n * hp->n_head);
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

static void ffn_block(model_ctx *c, int il, int n)
{
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const model_layer *l = &m->layers[il];
    rmsnorm_rows(c, c->xn, c->x, l->ffn_norm, hp->n_embd, n);
    const kernels_matrix *gate_up[] = {&l->ffn_gate, &l->ffn_up};
    float *const gate_up_out[] = {c->gate, c->up};
    matmul_shared_input(c, 2, gate_up, gate_up_out, c->xn, n);
    glu_job g = {c->gate, c->up, (int64_t)n * hp->n_ff, arch_is_gemma(hp->arch)};
    run_split(c, glu_rows, &g, hp->n_ff >= 4096 || n > 1 ? 2 : 1);
    matmul(c, &l->ffn_down, c->gate, n, c->proj);
    if (l->post_ffw_norm)
        rmsnorm_rows(c, c->proj, c->proj, l->post_ffw_norm, hp->n_embd, n);
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

int model_forward(model_ctx *c, kv_cache *kv, const model_batch *b, float *logits, el_err *err)
{
    if (validate_batch(c, kv, b, err) < 0)
        return -1;
    int n_out = logits ? list_logit_rows(c, b) : 0;
    embed(c, b);
    fill_rope_tables(c, b);
    int n_layer = c->m->hp.n_layer;
    for (int il = 0; il < n_layer; il++) {
        bool last = il == n_layer - 1;
        const int *rows = last ? c->logit_rows : c->all_rows;
        int n = last ? n_out : b->n_tokens;
        attention_block(c, kv, b, il, rows, n);
        if (n > 0)
            ffn_block(c, il, n);
    }
    for (int s = 0; s < kv->n_seq; s++)
        kv->len[s] = kv->next[s];
    if (n_out > 0)
        output_logits(c, n_out, logits);
    return 0;
}

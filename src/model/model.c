/* The tensors each architecture uses, and loading: every expected tensor is
 * checked for presence, shape and a usable type before anything is run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model_internal.h"

/* Shapes of tensors in terms of the hyperparameters of a layer; {ne[0], ne[1], ne[2]}. */
enum shape_kind {
    SHAPE_VEC_EMBD,     /* {n_embd} */
    SHAPE_VEC_HEAD,     /* {head_dim_k} */
    SHAPE_Q,            /* {n_embd, n_head * head_dim_k} */
    SHAPE_K,            /* {n_embd, n_head_kv * head_dim_k} */
    SHAPE_V,            /* {n_embd, n_head_kv * head_dim_v} */
    SHAPE_O,            /* {n_head * head_dim_v, n_embd} */
    SHAPE_FF_IN,        /* {n_embd, n_ff} */
    SHAPE_FF_OUT,       /* {n_ff, n_embd} */
    SHAPE_SCALAR,       /* {1} */
    SHAPE_ROUTER,       /* {n_embd, n_expert} */
    SHAPE_VEC_EXPERT,   /* {n_expert} */
    SHAPE_GATE_UP_EXPS, /* {n_embd, 2 * n_ff_exp, n_expert} */
    SHAPE_DOWN_EXPS,    /* {n_ff_exp, n_embd, n_expert} */
    SHAPE_PLE_GATE,     /* {n_embd, n_embd_per_layer} */
    SHAPE_PLE_PROJ,     /* {n_embd_per_layer, n_embd} */
    SHAPE_ALTUP_SQ,     /* {n_altup, n_altup} */
    SHAPE_ALTUP_PRED,   /* {n_altup, n_altup * n_altup} */
    SHAPE_ALTUP_ROUTER, /* {n_embd, n_altup} */
    SHAPE_LAUREL_L,     /* {n_embd, n_laurel} */
    SHAPE_LAUREL_R,     /* {n_laurel, n_embd} */
};

/* When a layer has a tensor. */
enum layer_cond {
    COND_ALWAYS,
    COND_OWN_KV, /* the layer computes keys and values (no shared KV) */
    COND_OWN_V,  /* ... and values of their own projection */
    COND_MOE,
    COND_PLE,    /* per-layer inputs */
};

#define ARCH_BIT(a) (1u << (a))
#define GEMMA34 (ARCH_BIT(MODEL_ARCH_GEMMA3) | ARCH_BIT(MODEL_ARCH_GEMMA4) | ARCH_BIT(MODEL_ARCH_GEMMA_EMBEDDING) | \
                 ARCH_BIT(MODEL_ARCH_GEMMA3N))
#define GEMMA234 (ARCH_BIT(MODEL_ARCH_GEMMA2) | GEMMA34)
#define ALL_ARCHS (ARCH_BIT(MODEL_ARCH_LLAMA) | ARCH_BIT(MODEL_ARCH_GEMMA) | GEMMA234)
#define GEMMA4 ARCH_BIT(MODEL_ARCH_GEMMA4)
#define GEMMA3N ARCH_BIT(MODEL_ARCH_GEMMA3N)

typedef struct layer_tensor {
    const char *name;  /* between "blk.N." and ".weight" (or the suffix given) */
    const char *suffix;
    unsigned archs;
    enum layer_cond cond;
    enum shape_kind shape;
    enum model_tensor_kind kind;
    bool optional;
    size_t offset;     /* of the kernels_matrix or const float * in model_layer */
} layer_tensor;

#define L(name, archs, cond, shape, kind, field) \
    {name, "weight", archs, cond, shape, MODEL_TENSOR_##kind, false, offsetof(model_layer, field)}

static const layer_tensor layer_tensors[] = {
    L("attn_norm", ALL_ARCHS, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, attn_norm),
    L("attn_q", ALL_ARCHS, COND_ALWAYS, SHAPE_Q, MATRIX, wq),
    L("attn_k", ALL_ARCHS, COND_OWN_KV, SHAPE_K, MATRIX, wk),
    L("attn_v", ALL_ARCHS, COND_OWN_V, SHAPE_V, MATRIX, wv),
    L("attn_output", ALL_ARCHS, COND_ALWAYS, SHAPE_O, MATRIX, wo),
    L("attn_q_norm", GEMMA34, COND_ALWAYS, SHAPE_VEC_HEAD, VECTOR, q_norm),
    L("attn_k_norm", GEMMA34, COND_OWN_KV, SHAPE_VEC_HEAD, VECTOR, k_norm),
    L("post_attention_norm", GEMMA234, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, post_attn_norm),
    L("ffn_norm", ALL_ARCHS, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, ffn_norm),
    L("ffn_gate", ALL_ARCHS, COND_ALWAYS, SHAPE_FF_IN, MATRIX, ffn_gate),
    L("ffn_up", ALL_ARCHS, COND_ALWAYS, SHAPE_FF_IN, MATRIX, ffn_up),
    L("ffn_down", ALL_ARCHS, COND_ALWAYS, SHAPE_FF_OUT, MATRIX, ffn_down),
    L("post_ffw_norm", GEMMA234, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, post_ffw_norm),
    L("ffn_gate_inp", GEMMA4, COND_MOE, SHAPE_ROUTER, ROUTER, router),
    {"ffn_gate_inp", "scale", GEMMA4, COND_MOE, SHAPE_VEC_EMBD, MODEL_TENSOR_VECTOR, false,
     offsetof(model_layer, router_scale)},
    L("pre_ffw_norm_2", GEMMA4, COND_MOE, SHAPE_VEC_EMBD, VECTOR, pre_ffw_norm_2),
    L("post_ffw_norm_1", GEMMA4, COND_MOE, SHAPE_VEC_EMBD, VECTOR, post_ffw_norm_1),
    L("post_ffw_norm_2", GEMMA4, COND_MOE, SHAPE_VEC_EMBD, VECTOR, post_ffw_norm_2),
    L("ffn_gate_up_exps", GEMMA4, COND_MOE, SHAPE_GATE_UP_EXPS, MATRIX, gate_up_exps),
    L("ffn_down_exps", GEMMA4, COND_MOE, SHAPE_DOWN_EXPS, MATRIX, down_exps),
    {"ffn_down_exps", "scale", GEMMA4, COND_MOE, SHAPE_VEC_EXPERT, MODEL_TENSOR_VECTOR, false,
     offsetof(model_layer, down_exps_scale)},
    L("inp_gate", GEMMA4 | GEMMA3N, COND_PLE, SHAPE_PLE_GATE, MATRIX, ple_gate),
    L("proj", GEMMA4 | GEMMA3N, COND_PLE, SHAPE_PLE_PROJ, MATRIX, ple_proj),
    L("post_norm", GEMMA4 | GEMMA3N, COND_PLE, SHAPE_VEC_EMBD, VECTOR, ple_post_norm),
    L("altup_correct_coef", GEMMA3N, COND_ALWAYS, SHAPE_ALTUP_SQ, ROUTER, altup_correct_coef),
    L("altup_correct_scale", GEMMA3N, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, altup_correct_scale),
    L("altup_predict_coef", GEMMA3N, COND_ALWAYS, SHAPE_ALTUP_PRED, ROUTER, altup_predict_coef),
    L("altup_router", GEMMA3N, COND_ALWAYS, SHAPE_ALTUP_ROUTER, MATRIX, altup_router),
    L("altup_router_norm", GEMMA3N, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, altup_router_norm),
    L("laurel_l", GEMMA3N, COND_ALWAYS, SHAPE_LAUREL_L, MATRIX, laurel_l),
    L("laurel_r", GEMMA3N, COND_ALWAYS, SHAPE_LAUREL_R, MATRIX, laurel_r),
    L("laurel_post_norm", GEMMA3N, COND_ALWAYS, SHAPE_VEC_EMBD, VECTOR, laurel_post_norm),
    {"layer_output_scale", "weight", GEMMA4, COND_ALWAYS, SHAPE_SCALAR, MODEL_TENSOR_VECTOR, true,
     offsetof(model_layer, out_scale)},
};
#undef L
enum { N_LAYER_TENSORS = sizeof layer_tensors / sizeof layer_tensors[0] };

static bool layer_has(const model_hparams *hp, int il, const layer_tensor *t)
{
    if (!(t->archs & ARCH_BIT(hp->arch)))
        return false;
    const model_layer_hparams *l = &hp->layer[il];
    switch (t->cond) {
    case COND_ALWAYS: return true;
    case COND_OWN_KV: return l->kv_layer == il;
    case COND_OWN_V: return l->kv_layer == il && !l->v_from_k;
    case COND_MOE: return l->moe;
    case COND_PLE: return hp->n_embd_per_layer > 0;
    }
    return false;
}

static int shape_dims(const model_hparams *hp, int il, enum shape_kind kind, int64_t ne[3])
{
    const model_layer_hparams *l = &hp->layer[il];
    int64_t q = (int64_t)hp->n_head * l->head_dim_k, k = (int64_t)l->n_head_kv * l->head_dim_k;
    int64_t v = (int64_t)l->n_head_kv * l->head_dim_v, o = (int64_t)hp->n_head * l->head_dim_v;
    switch (kind) {
    case SHAPE_VEC_EMBD: ne[0] = hp->n_embd; return 1;
    case SHAPE_VEC_HEAD: ne[0] = l->head_dim_k; return 1;
    case SHAPE_Q: ne[0] = hp->n_embd; ne[1] = q; return 2;
    case SHAPE_K: ne[0] = hp->n_embd; ne[1] = k; return 2;
    case SHAPE_V: ne[0] = hp->n_embd; ne[1] = v; return 2;
    case SHAPE_O: ne[0] = o; ne[1] = hp->n_embd; return 2;
    case SHAPE_FF_IN: ne[0] = hp->n_embd; ne[1] = l->n_ff; return 2;
    case SHAPE_FF_OUT: ne[0] = l->n_ff; ne[1] = hp->n_embd; return 2;
    case SHAPE_SCALAR: ne[0] = 1; return 1;
    case SHAPE_ROUTER: ne[0] = hp->n_embd; ne[1] = hp->n_expert; return 2;
    case SHAPE_VEC_EXPERT: ne[0] = hp->n_expert; return 1;
    case SHAPE_GATE_UP_EXPS: ne[0] = hp->n_embd; ne[1] = 2 * (int64_t)hp->n_ff_exp; ne[2] = hp->n_expert; return 3;
    case SHAPE_DOWN_EXPS: ne[0] = hp->n_ff_exp; ne[1] = hp->n_embd; ne[2] = hp->n_expert; return 3;
    case SHAPE_PLE_GATE: ne[0] = hp->n_embd; ne[1] = hp->n_embd_per_layer; return 2;
    case SHAPE_PLE_PROJ: ne[0] = hp->n_embd_per_layer; ne[1] = hp->n_embd; return 2;
    case SHAPE_ALTUP_SQ: ne[0] = hp->n_altup; ne[1] = hp->n_altup; return 2;
    case SHAPE_ALTUP_PRED: ne[0] = hp->n_altup; ne[1] = (int64_t)hp->n_altup * hp->n_altup; return 2;
    case SHAPE_ALTUP_ROUTER: ne[0] = hp->n_embd; ne[1] = hp->n_altup; return 2;
    case SHAPE_LAUREL_L: ne[0] = hp->n_embd; ne[1] = hp->n_laurel; return 2;
    case SHAPE_LAUREL_R: ne[0] = hp->n_laurel; ne[1] = hp->n_embd; return 2;
    }
    return 0;
}

static void layer_tensor_name(char *buf, size_t size, int il, const layer_tensor *t)
{
    snprintf(buf, size, "blk.%d.%s.%s", il, t->name, t->suffix);
}

static int emit(model_tensor_fn fn, void *ctx, const char *name, enum model_tensor_kind kind, bool optional,
                int n_dims, int64_t ne0, int64_t ne1, el_err *err)
{
    model_tensor_desc d = {.name = name, .n_dims = n_dims, .ne = {ne0, ne1, 1, 1}, .kind = kind, .optional = optional};
    return fn(ctx, &d, err);
}

/* Gemma 3n's and 4's tensors outside the layers: the full layers' rope factors
 * (gemma4) and the per-layer input tables. */
static int for_each_gemma4_global(const model_hparams *hp, model_tensor_fn fn, void *ctx, el_err *err)
{
    if (hp->rope_freq_factors) {
        int full = 0;
        while (full < hp->n_layer - 1 && hp->layer[full].swa)
            full++;
        if (emit(fn, ctx, "rope_freqs.weight", MODEL_TENSOR_VECTOR, false, 1, hp->layer[full].head_dim_k / 2, 1,
                 err) < 0)
            return -1;
    }
    if (hp->n_embd_per_layer > 0) {
        int64_t width = (int64_t)hp->n_embd_per_layer * hp->n_layer;
        if (emit(fn, ctx, "per_layer_token_embd.weight", MODEL_TENSOR_TABLE, false, 2, width, hp->n_vocab, err) < 0 ||
            emit(fn, ctx, "per_layer_model_proj.weight", MODEL_TENSOR_MATRIX, false, 2, hp->n_embd, width, err) < 0 ||
            emit(fn, ctx, "per_layer_proj_norm.weight", MODEL_TENSOR_VECTOR, false, 1, hp->n_embd_per_layer, 1,
                 err) < 0)
            return -1;
    }
    return 0;
}

int model_for_each_tensor(const model_hparams *hp, model_tensor_fn fn, void *ctx, el_err *err)
{
    if ((unsigned)hp->arch >= MODEL_ARCH_COUNT)
        return el_fail(err, "unknown architecture %d", (int)hp->arch);
    if (hp->n_layer < 1 || hp->n_layer > MODEL_MAX_LAYERS)
        return el_fail(err, "%d layers is out of range [1, %d]", hp->n_layer, MODEL_MAX_LAYERS);
    if (emit(fn, ctx, "token_embd.weight", MODEL_TENSOR_TABLE, false, 2, hp->n_embd, hp->n_vocab, err) < 0)
        return -1;
    if ((hp->arch == MODEL_ARCH_GEMMA4 || hp->arch == MODEL_ARCH_GEMMA3N) &&
        for_each_gemma4_global(hp, fn, ctx, err) < 0)
        return -1;
    if (hp->n_altup > 0) {
        model_tensor_desc d = {.name = "altup_proj.weight", .n_dims = 3, .kind = MODEL_TENSOR_MATRIX,
                               .ne = {hp->n_embd, hp->n_embd, hp->n_altup - 1, 1}};
        if (fn(ctx, &d, err) < 0)
            return -1;
        d.name = "altup_unembd_proj.weight";
        if (fn(ctx, &d, err) < 0)
            return -1;
    }
    if (hp->n_dense > 0 &&
        (emit(fn, ctx, "dense_2.weight", MODEL_TENSOR_MATRIX, false, 2, hp->n_embd, hp->n_dense, err) < 0 ||
         emit(fn, ctx, "dense_3.weight", MODEL_TENSOR_MATRIX, false, 2, hp->n_dense, hp->n_embd, err) < 0))
        return -1;
    char name[80];
    for (int il = 0; il < hp->n_layer; il++) {
        for (int i = 0; i < N_LAYER_TENSORS; i++) {
            const layer_tensor *t = &layer_tensors[i];
            if (!layer_has(hp, il, t))
                continue;
            model_tensor_desc d = {.name = name, .ne = {1, 1, 1, 1}, .kind = t->kind, .optional = t->optional};
            d.n_dims = shape_dims(hp, il, t->shape, d.ne);
            layer_tensor_name(name, sizeof name, il, t);
            if (fn(ctx, &d, err) < 0)
                return -1;
        }
    }
    return emit(fn, ctx, "output_norm.weight", MODEL_TENSOR_VECTOR, false, 1, hp->n_embd, 1, err);
}

enum model_tensor_kind model_tensor_kind_of(const char *name)
{
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight"))
        return MODEL_TENSOR_TABLE;
    if (!strcmp(name, "rope_freqs.weight") || !strcmp(name, "output_norm.weight") ||
        !strcmp(name, "per_layer_proj_norm.weight"))
        return MODEL_TENSOR_VECTOR;
    const char *rest = name;
    if (!strncmp(name, "blk.", 4)) {
        rest = strchr(name + 4, '.');
        rest = rest ? rest + 1 : name;
    }
    for (int i = 0; i < N_LAYER_TENSORS; i++) {
        const layer_tensor *t = &layer_tensors[i];
        size_t n = strlen(t->name);
        if (!strncmp(rest, t->name, n) && rest[n] == '.' && !strcmp(rest + n + 1, t->suffix))
            return t->kind;
    }
    return MODEL_TENSOR_MATRIX;
}

/* ---- validation ------------------------------------------------------------------ */

static int check_type(const gguf_tensor *t, const char *name, enum model_tensor_kind kind, bool tied_output,
                      el_err *err)
{
    const gguf_type_info *info = gguf_type_get(t->type);
    if (!info)
        return el_fail(err, "tensor %s has unknown type id %u", name, t->type);
    bool ok;
    if (!strcmp(name, "token_embd.weight"))
        ok = kernels_can_dequantize(t->type) && (!tied_output || kernels_can_matmul(t->type));
    else if (kind == MODEL_TENSOR_MATRIX || kind == MODEL_TENSOR_ROUTER)
        ok = kernels_can_matmul(t->type);
    else
        ok = kernels_can_dequantize(t->type);
    if (!ok)
        return el_fail(err, "tensor %s has type %s, which is not supported here", name, info->name);
    if (gguf_row_size(t->type, t->ne[0]) == 0)
        return el_fail(err, "tensor %s: a row of %lld values is not a whole number of %s blocks", name,
                       (long long)t->ne[0], info->name);
    return 0;
}

static int check_shape(const gguf_tensor *t, const char *name, const int64_t *ne, el_err *err)
{
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] != ne[d])
            return el_fail(err, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld, %lld]",
                           name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)t->ne[3], (long long)ne[0], (long long)ne[1], (long long)ne[2],
                           (long long)ne[3]);
    }
    return 0;
}

typedef struct validate_ctx {
    const gguf_file *f;
    bool tied_output;
    size_t vector_floats; /* total, for one allocation */
} validate_ctx;

static int validate_tensor(void *p, const model_tensor_desc *d, el_err *err)
{
    validate_ctx *v = p;
    const gguf_tensor *t = gguf_find_tensor(v->f, d->name);
    if (!t) {
        if (d->optional)
            return 0;
        return el_fail(err, "tensor %s is missing", d->name);
    }
    if (check_shape(t, d->name, d->ne, err) < 0 || check_type(t, d->name, d->kind, v->tied_output, err) < 0)
        return -1;
    if (d->kind == MODEL_TENSOR_VECTOR)
        v->vector_floats += (size_t)d->ne[0];
    return 0;
}

/* ---- binding ----------------------------------------------------------------------- */

/* A 3-D tensor (experts) becomes one matrix of all its rows: expert e's rows start
 * at e * ne[1]. */
static kernels_matrix matrix_of(const gguf_tensor *t)
{
    kernels_matrix mat = {
        .type = t->type,
        .rows = t->ne[1] * t->ne[2],
        .cols = t->ne[0],
        .data = t->data,
        .row_bytes = gguf_row_size(t->type, t->ne[0]),
    };
    return mat;
}

/* Copies a (validated) vector weight into the model's F32 storage. */
static const float *bind_vector(model *m, const char *name, float **cursor)
{
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    float *dst = *cursor;
    kernels_dequantize_row(t->type, t->data, dst, t->ne[0]);
    *cursor += t->ne[0];
    return dst;
}

static kernels_matrix bind_matrix(model *m, const char *name)
{
    kernels_matrix mat = matrix_of(gguf_find_tensor(m->file, name));
    m->weight_bytes += (uint64_t)mat.rows * mat.row_bytes;
    return mat;
}

static void bind_layer(model *m, int il, float **cursor)
{
    model_layer *layer = &m->layers[il];
    char name[80];
    for (int i = 0; i < N_LAYER_TENSORS; i++) {
        const layer_tensor *t = &layer_tensors[i];
        if (!layer_has(&m->hp, il, t))
            continue;
        layer_tensor_name(name, sizeof name, il, t);
        if (t->optional && !gguf_find_tensor(m->file, name))
            continue;
        char *field = (char *)layer + t->offset;
        if (t->kind == MODEL_TENSOR_VECTOR) {
            const float *w = bind_vector(m, name, cursor);
            memcpy(field, &w, sizeof w);
        } else {
            kernels_matrix mat = bind_matrix(m, name);
            memcpy(field, &mat, sizeof mat);
        }
    }
    if (m->hp.layer[il].moe) {
        /* One token reads only its experts' rows. */
        uint64_t all = (uint64_t)layer->gate_up_exps.rows * layer->gate_up_exps.row_bytes +
                       (uint64_t)layer->down_exps.rows * layer->down_exps.row_bytes;
        m->weight_bytes -= all - all / (uint64_t)m->hp.n_expert * (uint64_t)m->hp.n_expert_used;
    }
}

static void bind_gemma4_globals(model *m, float **cursor)
{
    if (m->hp.rope_freq_factors)
        m->rope_freqs = bind_vector(m, "rope_freqs.weight", cursor);
    if (m->hp.n_embd_per_layer > 0) {
        m->ple_tok_embd = gguf_find_tensor(m->file, "per_layer_token_embd.weight");
        m->ple_tok_embd_row_bytes = gguf_row_size(m->ple_tok_embd->type, m->ple_tok_embd->ne[0]);
        m->ple_model_proj = bind_matrix(m, "per_layer_model_proj.weight");
        m->ple_proj_norm = bind_vector(m, "per_layer_proj_norm.weight", cursor);
    }
}

static int check_output(model *m, el_err *err)
{
    const gguf_tensor *out = gguf_find_tensor(m->file, "output.weight");
    if (!out)
        return 0;
    int64_t ne[GGUF_MAX_DIMS] = {m->hp.n_embd, m->hp.n_vocab, 1, 1};
    if (check_shape(out, "output.weight", ne, err) < 0 ||
        check_type(out, "output.weight", MODEL_TENSOR_MATRIX, false, err) < 0)
        return -1;
    return 0;
}

static int reject_unsupported(const model *m, el_err *err)
{
    /* Llama 3 style rope frequency factors would silently change every result. */
    if (m->hp.arch != MODEL_ARCH_GEMMA4 && gguf_find_tensor(m->file, "rope_freqs.weight"))
        return el_fail(err, "tensor rope_freqs.weight (rope frequency factors) is not supported");
    for (int il = 0; il < m->hp.n_layer; il++) {
        char name[80];
        snprintf(name, sizeof name, "blk.%d.ffn_gate_exps.weight", il);
        if (gguf_find_tensor(m->file, name))
            return el_fail(err, "tensor %s: separate expert gate and up tensors are not supported "
                                "(ffn_gate_up_exps is)", name);
    }
    return 0;
}

/* x86-64's transparent huge page (a hint elsewhere: the blocks are then only anonymous). */
enum { HUGE_PAGE = 2 << 20 };

/* The whole HUGE_PAGE blocks of [lo, hi) (both multiples of HUGE_PAGE) become anonymous
 * memory at the same addresses, with the same bytes, asking for huge pages. A private
 * file mapping's written pages are always 4 KiB ones, and decode streams every weight
 * once per token: with 4 KiB pages the fastest gemma-2b Q4_K_M token took 54-56 ms,
 * with 2 MiB ones 50-51 ms (2 threads; TLB misses, in a VM two-level page walks, and
 * hardware prefetchers that stop at each 4 KiB page). One block at a time through
 * `buffer` (HUGE_PAGE bytes): the file's pages leave the process as the copies arrive,
 * so resident memory grows by the buffer at most. Returns -1 when a block could not be
 * mapped (its bytes are then gone: the model cannot be used). */
static int move_to_huge_pages(uintptr_t lo, uintptr_t hi, uint8_t *buffer)
{
    for (uintptr_t b = lo; b < hi; b += HUGE_PAGE) {
        memcpy(buffer, (const void *)b, HUGE_PAGE);
        void *p = mmap((void *)b, HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p == MAP_FAILED)
            return -1;
#ifdef MADV_HUGEPAGE
        madvise(p, HUGE_PAGE, MADV_HUGEPAGE); /* a hint: without it the block keeps 4 KiB pages */
#endif
        memcpy(p, buffer, HUGE_PAGE);
    }
    return 0;
}

/* Rewrites a matrix into the kernels' faster layout where they have one. gguf_open maps
 * the file MAP_PRIVATE: a page written here becomes this process's own copy and the
 * file's page leaves the process, so resident memory stays one copy of the weights;
 * with a `buffer`, the matrix's whole huge-page blocks move to huge pages first
 * (move_to_huge_pages). A matrix that cannot be repacked keeps its GGUF rows (same
 * results, slower). Returns -1 only when its bytes were lost on the way. */
static int repack_in_place(kernels_matrix *w, uint8_t *buffer, el_err *err)
{
    if (!kernels_can_repack(w))
        return 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)w->data / page * page;
    uintptr_t end = (uintptr_t)w->data + (size_t)w->rows * w->row_bytes;
    size_t len = end - start;
    uintptr_t huge_lo = ((uintptr_t)w->data + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uintptr_t huge_hi = end / HUGE_PAGE * HUGE_PAGE;
    if (buffer && huge_hi > huge_lo && move_to_huge_pages(huge_lo, huge_hi, buffer) < 0)
        return el_fail(err, "cannot map memory for a %lld x %lld matrix: %s", (long long)w->rows,
                       (long long)w->cols, strerror(errno));
    if (mprotect((void *)start, len, PROT_READ | PROT_WRITE) != 0)
        return 0;
#ifdef MADV_POPULATE_WRITE
    /* the private copies made in one call instead of a fault per page (a hint: older
     * kernels refuse it and the writes fault as usual) */
    madvise((void *)start, len, MADV_POPULATE_WRITE);
#endif
    kernels_repack_matrix(w, (void *)(uintptr_t)w->data);
    mprotect((void *)start, len, PROT_READ); /* back to read only; failing, it stays writable */
    return 0;
}

/* Every matrix that forward.c only multiplies whole (the output projection:
 * repack_output); expert matrices and altup's projections are sliced by rows, the
 * routers' few rows are not whole groups. Gemma 4's per-layer-input gate and projection
 * and the model's per-layer projection are 1.8 % of gemma4-e2b's bytes per token; in
 * the GGUF layout they took 2.3 % of a decode step's samples. */
static int repack_layers(model *m, uint8_t *buffer, el_err *err)
{
    for (int il = 0; il < m->hp.n_layer; il++) {
        model_layer *l = &m->layers[il];
        kernels_matrix *dense[] = {&l->wq,       &l->wk,       &l->wv,       &l->wo,       &l->ffn_gate,
                                   &l->ffn_up,   &l->ffn_down, &l->ple_gate, &l->ple_proj, &l->laurel_l,
                                   &l->laurel_r};
        for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++)
            if (dense[i]->data && repack_in_place(dense[i], buffer, err) < 0)
                return -1;
    }
    kernels_matrix *globals[] = {&m->ple_model_proj, &m->dense_2, &m->dense_3};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        if (globals[i]->data && repack_in_place(globals[i], buffer, err) < 0)
            return -1;
    return 0;
}

/* The output projection too (on Gemma the tied token table: a fifth of gemma-2b's
 * bytes), for models that compute logits; the token lookup then reads the table's
 * rows through kernels_unpack_row. An embedding model only looks rows up: repacking
 * would make its whole table resident for nothing. */
static int repack_output(model *m, bool tied, uint8_t *buffer, el_err *err)
{
    if (m->hp.pooling != MODEL_POOLING_NONE || m->hp.arch == MODEL_ARCH_GEMMA_EMBEDDING)
        return 0;
    if (repack_in_place(&m->output, buffer, err) < 0)
        return -1;
    if (tied)
        m->tok_embd.layout = m->output.layout;
    return 0;
}

/* The repacking of a mapped file's matrices, through one huge-page block's buffer (none
 * when it cannot be had: the matrices then keep 4 KiB pages). */
static int repack_mapped(model *m, bool tied, el_err *err)
{
    uint8_t *buffer = malloc(HUGE_PAGE);
    int rc = repack_layers(m, buffer, err) < 0 || repack_output(m, tied, buffer, err) < 0 ? -1 : 0;
    free(buffer);
    return rc;
}

static int prepare(model *m, bool mapped, el_err *err)
{
    if (model_hparams_from_gguf(m->file, &m->hp, err) < 0 || reject_unsupported(m, err) < 0)
        return -1;
    validate_ctx v = {.f = m->file, .tied_output = gguf_find_tensor(m->file, "output.weight") == NULL};
    if (model_for_each_tensor(&m->hp, validate_tensor, &v, err) < 0 || check_output(m, err) < 0)
        return -1;

    m->layers = calloc((size_t)m->hp.n_layer, sizeof *m->layers);
    m->norm_data = malloc((v.vector_floats + 1) * sizeof(float));
    if (!m->layers || !m->norm_data)
        return el_fail(err, "out of memory for the model's tables");
    float *cursor = m->norm_data;
    m->tok_embd = matrix_of(gguf_find_tensor(m->file, "token_embd.weight"));
    if (m->hp.arch == MODEL_ARCH_GEMMA4 || m->hp.arch == MODEL_ARCH_GEMMA3N)
        bind_gemma4_globals(m, &cursor);
    if (m->hp.n_altup > 0) {
        m->altup_proj = bind_matrix(m, "altup_proj.weight");
        m->altup_unembd_proj = bind_matrix(m, "altup_unembd_proj.weight");
    }
    if (m->hp.n_dense > 0) {
        m->dense_2 = bind_matrix(m, "dense_2.weight");
        m->dense_3 = bind_matrix(m, "dense_3.weight");
    }
    for (int il = 0; il < m->hp.n_layer; il++)
        bind_layer(m, il, &cursor);
    m->output_norm = bind_vector(m, "output_norm.weight", &cursor);
    const gguf_tensor *out = gguf_find_tensor(m->file, "output.weight");
    m->output = out ? matrix_of(out) : m->tok_embd;
    m->weight_bytes += (uint64_t)m->output.rows * m->output.row_bytes;
    return mapped ? repack_mapped(m, out == NULL, err) : 0;
}

/* mapped: f is gguf_open's private mapping of a file, whose weights may be repacked. */
static model *finish_load(gguf_file *f, bool mapped, const char *what, el_err *err)
{
    if (!f)
        return NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        el_fail(err, "out of memory");
        return NULL;
    }
    m->file = f;
    kernels_init();
    if (prepare(m, mapped, err) < 0) {
        el_wrap(err, "%s", what);
        model_free(m);
        return NULL;
    }
    return m;
}

model *model_load(const char *path, const model_load_options *options, el_err *err)
{
    gguf_file *f = gguf_open(path, err);
    model *m = finish_load(f, true, path, err);
    if (m && options && options->mlock && mlock(gguf_base(f), (size_t)gguf_size(f)) != 0) {
        el_fail(err, "%s: cannot lock %llu bytes in memory: %s (see ulimit -l)", path,
                (unsigned long long)gguf_size(f), strerror(errno));
        model_free(m);
        return NULL;
    }
    return m;
}

model *model_load_memory(const void *data, size_t size, el_err *err)
{
    return finish_load(gguf_open_memory(data, size, err), false, "embedded model", err);
}

void model_free(model *m)
{
    if (!m)
        return;
    free(m->layers);
    free(m->norm_data);
    gguf_close(m->file);
    free(m);
}

const model_hparams *model_hparams_of(const model *m)
{
    return &m->hp;
}

const gguf_file *model_gguf(const model *m)
{
    return m->file;
}

uint64_t model_weight_bytes(const model *m)
{
    return m->weight_bytes;
}

/* The tensors each architecture uses, and loading: every expected tensor is
 * checked for presence, shape and a usable type before anything is run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/model_internal.h"

/* Shapes of tensors in terms of the hyperparameters; {cols (ne[0]), rows (ne[1])}. */
enum shape_kind {
    SHAPE_VEC_EMBD,  /* {n_embd} */
    SHAPE_VEC_HEAD,  /* {head_dim_k} */
    SHAPE_Q,         /* {n_embd, n_head * head_dim_k} */
    SHAPE_K,         /* {n_embd, n_head_kv * head_dim_k} */
    SHAPE_V,         /* {n_embd, n_head_kv * head_dim_v} */
    SHAPE_O,         /* {n_head * head_dim_v, n_embd} */
    SHAPE_FF_IN,     /* {n_embd, n_ff} */
    SHAPE_FF_OUT,    /* {n_ff, n_embd} */
    SHAPE_VOCAB,     /* {n_embd, n_vocab} */
};

#define ARCH_BIT(a) (1u << (a))
#define ALL_ARCHS (ARCH_BIT(MODEL_ARCH_LLAMA) | ARCH_BIT(MODEL_ARCH_GEMMA) | ARCH_BIT(MODEL_ARCH_GEMMA2) | ARCH_BIT(MODEL_ARCH_GEMMA3))
#define GEMMA23 (ARCH_BIT(MODEL_ARCH_GEMMA2) | ARCH_BIT(MODEL_ARCH_GEMMA3))

typedef struct layer_tensor {
    const char *name;  /* after "blk.N." */
    unsigned archs;
    enum shape_kind shape;
    bool matrix;       /* a matmul weight (quantizable); otherwise a norm (F32) */
    size_t offset;     /* of the kernels_matrix or const float * in model_layer */
} layer_tensor;

static const layer_tensor layer_tensors[] = {
    {"attn_norm", ALL_ARCHS, SHAPE_VEC_EMBD, false, offsetof(model_layer, attn_norm)},
    {"attn_q", ALL_ARCHS, SHAPE_Q, true, offsetof(model_layer, wq)},
    {"attn_k", ALL_ARCHS, SHAPE_K, true, offsetof(model_layer, wk)},
    {"attn_v", ALL_ARCHS, SHAPE_V, true, offsetof(model_layer, wv)},
    {"attn_q_norm", ARCH_BIT(MODEL_ARCH_GEMMA3), SHAPE_VEC_HEAD, false, offsetof(model_layer, q_norm)},
    {"attn_k_norm", ARCH_BIT(MODEL_ARCH_GEMMA3), SHAPE_VEC_HEAD, false, offsetof(model_layer, k_norm)},
    {"attn_output", ALL_ARCHS, SHAPE_O, true, offsetof(model_layer, wo)},
    {"post_attention_norm", GEMMA23, SHAPE_VEC_EMBD, false, offsetof(model_layer, post_attn_norm)},
    {"ffn_norm", ALL_ARCHS, SHAPE_VEC_EMBD, false, offsetof(model_layer, ffn_norm)},
    {"ffn_gate", ALL_ARCHS, SHAPE_FF_IN, true, offsetof(model_layer, ffn_gate)},
    {"ffn_up", ALL_ARCHS, SHAPE_FF_IN, true, offsetof(model_layer, ffn_up)},
    {"ffn_down", ALL_ARCHS, SHAPE_FF_OUT, true, offsetof(model_layer, ffn_down)},
    {"post_ffw_norm", GEMMA23, SHAPE_VEC_EMBD, false, offsetof(model_layer, post_ffw_norm)},
};
enum { N_LAYER_TENSORS = sizeof layer_tensors / sizeof layer_tensors[0] };

static int shape_dims(const model_hparams *hp, enum shape_kind kind, int64_t ne[2])
{
    int64_t q = (int64_t)hp->n_head * hp->head_dim_k, k = (int64_t)hp->n_head_kv * hp->head_dim_k;
    int64_t v = (int64_t)hp->n_head_kv * hp->head_dim_v, o = (int64_t)hp->n_head * hp->head_dim_v;
    switch (kind) {
    case SHAPE_VEC_EMBD: ne[0] = hp->n_embd; return 1;
    case SHAPE_VEC_HEAD: ne[0] = hp->head_dim_k; return 1;
    case SHAPE_Q: ne[0] = hp->n_embd; ne[1] = q; return 2;
    case SHAPE_K: ne[0] = hp->n_embd; ne[1] = k; return 2;
    case SHAPE_V: ne[0] = hp->n_embd; ne[1] = v; return 2;
    case SHAPE_O: ne[0] = o; ne[1] = hp->n_embd; return 2;
    case SHAPE_FF_IN: ne[0] = hp->n_embd; ne[1] = hp->n_ff; return 2;
    case SHAPE_FF_OUT: ne[0] = hp->n_ff; ne[1] = hp->n_embd; return 2;
    case SHAPE_VOCAB: ne[0] = hp->n_embd; ne[1] = hp->n_vocab; return 2;
    }
    return 0;
}

static void layer_tensor_name(char *buf, size_t size, int il, const layer_tensor *t)
{
    snprintf(buf, size, "blk.%d.%s.weight", il, t->name);
}

int model_for_each_tensor(const model_hparams *hp, model_tensor_fn fn, void *ctx, el_err *err)
{
    if ((unsigned)hp->arch >= MODEL_ARCH_COUNT)
        return el_fail(err, "unknown architecture %d", (int)hp->arch);
    int64_t ne[GGUF_MAX_DIMS] = {1, 1, 1, 1};
    int nd = shape_dims(hp, SHAPE_VOCAB, ne);
    if (fn(ctx, "token_embd.weight", nd, ne, true, err) < 0)
        return -1;
    char name[64];
    for (int il = 0; il < hp->n_layer; il++) {
        for (int i = 0; i < N_LAYER_TENSORS; i++) {
            const layer_tensor *t = &layer_tensors[i];
            if (!(t->archs & ARCH_BIT(hp->arch)))
                continue;
            int64_t tne[GGUF_MAX_DIMS] = {1, 1, 1, 1};
            nd = shape_dims(hp, t->shape, tne);
            layer_tensor_name(name, sizeof name, il, t);
            if (fn(ctx, name, nd, tne, t->matrix, err) < 0)
                return -1;
        }
    }
    int64_t one[GGUF_MAX_DIMS] = {1, 1, 1, 1};
    nd = shape_dims(hp, SHAPE_VEC_EMBD, one);
    return fn(ctx, "output_norm.weight", nd, one, false, err);
}

/* ---- validation ------------------------------------------------------------------ */

static int check_type(const gguf_tensor *t, const char *name, bool matrix, bool tied_output, el_err *err)
{
    const gguf_type_info *info = gguf_type_get(t->type);
    if (!info)
        return el_fail(err, "tensor %s has unknown type id %u", name, t->type);
    bool ok;
    if (!strcmp(name, "token_embd.weight"))
        ok = kernels_can_dequantize(t->type) && (!tied_output || kernels_can_matmul(t->type));
    else if (matrix)
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
    size_t norm_floats; /* total, for one allocation */
} validate_ctx;

static int validate_tensor(void *p, const char *name, int n_dims, const int64_t *ne, bool quantizable,
                           el_err *err)
{
    validate_ctx *v = p;
    (void)n_dims;
    const gguf_tensor *t = gguf_find_tensor(v->f, name);
    if (!t)
        return el_fail(err, "tensor %s is missing", name);
    if (check_shape(t, name, ne, err) < 0 || check_type(t, name, quantizable, v->tied_output, err) < 0)
        return -1;
    if (!quantizable)
        v->norm_floats += (size_t)ne[0];
    return 0;
}

/* ---- binding ----------------------------------------------------------------------- */

static kernels_matrix matrix_of(const gguf_tensor *t)
{
    kernels_matrix mat = {
        .type = t->type,
        .rows = t->ne[1],
        .cols = t->ne[0],
        .data = t->data,
        .row_bytes = gguf_row_size(t->type, t->ne[0]),
    };
    return mat;
}

/* Copies a (validated) norm weight into the model's F32 storage. */
static const float *bind_norm(model *m, const char *name, float **cursor)
{
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    float *dst = *cursor;
    kernels_dequantize_row(t->type, t->data, dst, t->ne[0]);
    *cursor += t->ne[0];
    return dst;
}

static void bind_layer(model *m, int il, float **cursor)
{
    model_layer *layer = &m->layers[il];
    char name[64];
    for (int i = 0; i < N_LAYER_TENSORS; i++) {
        const layer_tensor *t = &layer_tensors[i];
        if (!(t->archs & ARCH_BIT(m->hp.arch)))
            continue;
        layer_tensor_name(name, sizeof name, il, t);
        char *field = (char *)layer + t->offset;
        if (t->matrix) {
            kernels_matrix mat = matrix_of(gguf_find_tensor(m->file, name));
            memcpy(field, &mat, sizeof mat);
            m->weight_bytes += (uint64_t)mat.rows * mat.row_bytes;
        } else {
            const float *w = bind_norm(m, name, cursor);
            memcpy(field, &w, sizeof w);
        }
    }
}

static int check_output(model *m, el_err *err)
{
    const gguf_tensor *out = gguf_find_tensor(m->file, "output.weight");
    if (!out)
        return 0;
    int64_t ne[GGUF_MAX_DIMS] = {1, 1, 1, 1};
    shape_dims(&m->hp, SHAPE_VOCAB, ne);
    if (check_shape(out, "output.weight", ne, err) < 0 || check_type(out, "output.weight", true, false, err) < 0)
        return -1;
    return 0;
}

static int reject_unsupported(const gguf_file *f, el_err *err)
{
    /* Llama 3 style rope frequency factors would silently change every result. */
    if (gguf_find_tensor(f, "rope_freqs.weight"))
        return el_fail(err, "tensor rope_freqs.weight (rope frequency factors) is not supported");
    return 0;
}

static int prepare(model *m, el_err *err)
{
    if (model_hparams_from_gguf(m->file, &m->hp, err) < 0 || reject_unsupported(m->file, err) < 0)
        return -1;
    validate_ctx v = {.f = m->file, .tied_output = gguf_find_tensor(m->file, "output.weight") == NULL};
    if (model_for_each_tensor(&m->hp, validate_tensor, &v, err) < 0 || check_output(m, err) < 0)
        return -1;

    m->layers = calloc((size_t)m->hp.n_layer, sizeof *m->layers);
    m->norm_data = malloc(v.norm_floats * sizeof(float));
    if (!m->layers || !m->norm_data)
        return el_fail(err, "out of memory for the model's tables");
    float *cursor = m->norm_data;
    m->tok_embd = gguf_find_tensor(m->file, "token_embd.weight");
    m->tok_embd_row_bytes = gguf_row_size(m->tok_embd->type, m->tok_embd->ne[0]);
    for (int il = 0; il < m->hp.n_layer; il++)
        bind_layer(m, il, &cursor);
    m->output_norm = bind_norm(m, "output_norm.weight", &cursor);
    const gguf_tensor *out = gguf_find_tensor(m->file, "output.weight");
    m->output = matrix_of(out ? out : m->tok_embd);
    m->weight_bytes += (uint64_t)m->output.rows * m->output.row_bytes;
    return 0;
}

static model *finish_load(gguf_file *f, const char *what, el_err *err)
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
    if (prepare(m, err) < 0) {
        el_wrap(err, "%s", what);
        model_free(m);
        return NULL;
    }
    return m;
}

model *model_load(const char *path, const model_load_options *options, el_err *err)
{
    gguf_file *f = gguf_open(path, err);
    model *m = finish_load(f, path, err);
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
    return finish_load(gguf_open_memory(data, size, err), "embedded model", err);
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

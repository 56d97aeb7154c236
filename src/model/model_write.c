/* Random-weight models at real shapes, written tensor by tensor through the GGUF
 * writer so that a multi-gigabyte model never sits in memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"

typedef struct model_shape {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    int sliding_window; /* gemma2/gemma3 layers; 0: the architecture's usual one */
    float rope_scale;   /* linear rope scaling factor of gemma3's global layers; 0: none */
} model_shape;

static const model_shape shapes[] = {
    {"tiny", 64, 2, 4, 1, 16, 128, 2048, 8, 0},
    {"tiny-mha", 96, 3, 3, 3, 32, 160, 2048, 8, 0},
    {"tiny-256", 256, 2, 2, 1, 128, 512, 2048, 8, 0}, /* K-quant blocks need 256 columns */
    {"tiny-deep", 64, 6, 4, 1, 16, 128, 2048, 8, 0}, /* gemma3: 5 local layers, then a global one */
    {"gemma-2b", 2048, 18, 8, 1, 256, 16384, 8192, 0, 0},
    {"gemma-7b", 3072, 28, 16, 16, 256, 24576, 8192, 0, 0},
    {"gemma2-2b", 2304, 26, 8, 4, 256, 9216, 8192, 4096, 0},
    {"gemma2-9b", 3584, 42, 16, 8, 256, 14336, 8192, 4096, 0},
    {"gemma3-270m", 640, 18, 4, 1, 256, 2048, 32768, 512, 0},
    {"gemma3-1b", 1152, 26, 4, 1, 256, 6912, 32768, 512, 0},
    {"gemma3-4b", 2560, 34, 8, 4, 256, 10240, 131072, 1024, 8.0f},
};
enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };

const char *model_shape_name(int i)
{
    return i >= 0 && i < N_SHAPES ? shapes[i].name : NULL;
}

static const model_shape *find_shape(const char *name)
{
    for (int i = 0; i < N_SHAPES; i++)
        if (!strcmp(shapes[i].name, name))
            return &shapes[i];
    return NULL;
}

/* llama.cpp's general.file_type for a model whose weights are all of one type. */
static int file_type_of(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_F32: return 0;
    case GGUF_TYPE_F16: return 1;
    case GGUF_TYPE_Q4_0: return 2;
    case GGUF_TYPE_Q4_1: return 3;
    case GGUF_TYPE_Q8_0: return 7;
    case GGUF_TYPE_Q5_0: return 8;
    case GGUF_TYPE_Q5_1: return 9;
    case GGUF_TYPE_Q2_K: return 10;
    case GGUF_TYPE_Q3_K: return 11;
    case GGUF_TYPE_Q4_K: return 14;
    case GGUF_TYPE_Q5_K: return 16;
    case GGUF_TYPE_Q6_K: return 18;
    case GGUF_TYPE_BF16: return 32;
    default: return -1;
    }
}

/* ---- the tensor plan ---------------------------------------------------------------- */

typedef struct planned_tensor {
    char name[64];
    int64_t cols, rows;
    uint32_t type;
    bool norm;
    float scale; /* standard deviation of the random values */
} planned_tensor;

typedef struct writer_state {
    planned_tensor *tensors;
    size_t n, cap;
    uint32_t weight_type;
    int n_embd;
    uint64_t seed;
    float *row; /* one row of floats */
    int64_t max_cols;
    gguf_writer *w;
} writer_state;

static int plan_tensor(void *p, const char *name, int n_dims, const int64_t *ne, bool quantizable, el_err *err)
{
    writer_state *s = p;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        planned_tensor *t = realloc(s->tensors, cap * sizeof *t);
        if (!t)
            return el_fail(err, "out of memory");
        s->tensors = t;
        s->cap = cap;
    }
    planned_tensor *t = &s->tensors[s->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->cols = ne[0];
    t->rows = n_dims > 1 ? ne[1] : 1;
    t->norm = !quantizable;
    bool embd = !strcmp(name, "token_embd.weight");
    /* As llama.cpp's converter does for F32 models, the embedding table is F16. */
    t->type = t->norm ? GGUF_TYPE_F32 : (embd && s->weight_type == GGUF_TYPE_F32 ? GGUF_TYPE_F16 : s->weight_type);
    /* Unit-gain matrices keep every layer's output near the size of its input. */
    t->scale = t->norm ? 0.1f : 1.0f / sqrtf((float)(embd ? s->n_embd : t->cols));
    if (t->cols > s->max_cols)
        s->max_cols = t->cols;
    if (gguf_row_size(t->type, t->cols) == 0) {
        const gguf_type_info *info = gguf_type_get(t->type);
        return el_fail(err, "tensor %s: %lld columns are not a whole number of %s blocks (%u)", name,
                       (long long)t->cols, info ? info->name : "?", info ? info->block_size : 0);
    }
    uint32_t n = (uint32_t)(n_dims > 1 ? 2 : 1);
    int64_t dims[2] = {t->cols, t->rows};
    return gguf_writer_add_tensor(s->w, name, t->type, n, dims, err);
}

/* Uniform values of the given standard deviation, four per random draw (plenty of
 * precision for random weights, and fast at billions of values). */
static void random_row(el_rng *rng, float *row, int64_t n, float stddev, float mean)
{
    const float unit = stddev * 1.7320508f / 32768.0f; /* uniform on [-a, a] has sd a / sqrt(3) */
    for (int64_t i = 0; i < n; i += 4) {
        uint64_t r = el_rng_next(rng);
        for (int k = 0; k < 4 && i + k < n; k++)
            row[i + k] = mean + (float)((int32_t)((r >> (16 * k)) & 0xffff) - 32768) * unit;
    }
}

static int fill_tensor(void *p, uint64_t index, const char *name, void *buf, uint64_t nbytes, el_err *err)
{
    writer_state *s = p;
    if (index >= s->n)
        return el_fail(err, "tensor %s: unexpected index %llu", name, (unsigned long long)index);
    const planned_tensor *t = &s->tensors[index];
    size_t row_bytes = gguf_row_size(t->type, t->cols);
    if ((uint64_t)row_bytes * (uint64_t)t->rows != nbytes)
        return el_fail(err, "tensor %s: %llu bytes, expected %llu", name, (unsigned long long)nbytes,
                       (unsigned long long)row_bytes * (unsigned long long)t->rows);
    el_rng rng;
    el_rng_seed(&rng, s->seed * 0x9e3779b97f4a7c15ull + index + 1);
    for (int64_t r = 0; r < t->rows; r++) {
        random_row(&rng, s->row, t->cols, t->scale, t->norm ? 1.0f : 0.0f);
        void *dst = (uint8_t *)buf + (size_t)r * row_bytes;
        if (t->type == GGUF_TYPE_F32)
            memcpy(dst, s->row, (size_t)t->cols * sizeof(float));
        else if (kernels_quantize_row(t->type, s->row, dst, t->cols) < 0)
            return el_fail(err, "tensor %s: cannot quantize to %s", name, gguf_type_get(t->type)->name);
    }
    return 0;
}

/* ---- metadata ------------------------------------------------------------------------ */

static int copy_tokenizer(gguf_writer *w, const char *vocab_path, int *n_vocab, el_err *err)
{
    gguf_file *f = gguf_open(vocab_path, err);
    if (!f)
        return el_wrap(err, "vocabulary");
    int rc = 0;
    const gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_VAL_ARRAY || tokens->arr_len < 1 || tokens->arr_len > (1u << 22)) {
        rc = el_fail(err, "%s: no usable tokenizer.ggml.tokens array", vocab_path);
    } else {
        *n_vocab = (int)tokens->arr_len;
        for (uint64_t i = 0; i < gguf_kv_count(f) && rc == 0; i++) {
            const gguf_kv *kv = gguf_kv_at(f, i);
            if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10))
                rc = gguf_writer_copy_kv(w, kv, err);
        }
    }
    gguf_close(f);
    return rc;
}

typedef struct meta_writer {
    gguf_writer *w;
    const char *arch;
    el_err *err;
    int rc;
} meta_writer;

static void meta_u32(meta_writer *m, const char *suffix, uint32_t v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    if (m->rc == 0)
        m->rc = gguf_writer_set_u32(m->w, key, v, m->err);
}

static void meta_f32(meta_writer *m, const char *suffix, float v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    if (m->rc == 0)
        m->rc = gguf_writer_set_f32(m->w, key, v, m->err);
}

static int write_metadata(gguf_writer *w, const model_random_options *o, const model_shape *sh, int swa, el_err *err)
{
    const char *arch = model_arch_name(o->arch);
    char name[128];
    snprintf(name, sizeof name, "%s-%s-random", sh->name, arch);
    if (gguf_writer_set_str(w, "general.architecture", arch, err) < 0 ||
        gguf_writer_set_str(w, "general.name", name, err) < 0)
        return -1;
    int ft = file_type_of(o->type);
    if (ft >= 0 && gguf_writer_set_u32(w, "general.file_type", (uint32_t)ft, err) < 0)
        return -1;
    bool quantized = o->type != GGUF_TYPE_F32 && o->type != GGUF_TYPE_F16 && o->type != GGUF_TYPE_BF16;
    if (quantized && gguf_writer_set_u32(w, "general.quantization_version", 2, err) < 0)
        return -1;
    meta_writer m = {w, arch, err, 0};
    meta_u32(&m, "context_length", (uint32_t)sh->n_ctx);
    meta_u32(&m, "embedding_length", (uint32_t)sh->n_embd);
    meta_u32(&m, "block_count", (uint32_t)sh->n_layer);
    meta_u32(&m, "feed_forward_length", (uint32_t)sh->n_ff);
    meta_u32(&m, "attention.head_count", (uint32_t)sh->n_head);
    meta_u32(&m, "attention.head_count_kv", (uint32_t)sh->n_head_kv);
    meta_f32(&m, "attention.layer_norm_rms_epsilon", o->arch == MODEL_ARCH_LLAMA ? 1e-5f : 1e-6f);
    meta_u32(&m, "attention.key_length", (uint32_t)sh->head_dim);
    meta_u32(&m, "attention.value_length", (uint32_t)sh->head_dim);
    switch (o->arch) {
    case MODEL_ARCH_LLAMA:
        meta_u32(&m, "rope.dimension_count", (uint32_t)sh->head_dim);
        meta_f32(&m, "rope.freq_base", 10000.0f);
        break;
    case MODEL_ARCH_GEMMA:
        break;
    case MODEL_ARCH_GEMMA2:
        meta_u32(&m, "attention.sliding_window", (uint32_t)(swa ? swa : 4096));
        meta_f32(&m, "attn_logit_softcapping", 50.0f);
        meta_f32(&m, "final_logit_softcapping", 30.0f);
        break;
    case MODEL_ARCH_GEMMA3:
        meta_u32(&m, "attention.sliding_window", (uint32_t)(swa ? swa : 512));
        meta_f32(&m, "rope.freq_base", 1000000.0f);
        if (sh->rope_scale > 0.0f) {
            char key[128];
            snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
            if (m.rc == 0)
                m.rc = gguf_writer_set_str(w, key, "linear", err);
            meta_f32(&m, "rope.scaling.factor", sh->rope_scale);
        }
        break;
    default:
        break;
    }
    return m.rc;
}

static void hparams_of_shape(const model_random_options *o, const model_shape *sh, int n_vocab, model_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->arch = o->arch;
    hp->n_vocab = n_vocab;
    hp->n_embd = sh->n_embd;
    hp->n_layer = sh->n_layer;
    hp->n_head = sh->n_head;
    hp->n_head_kv = sh->n_head_kv;
    hp->head_dim_k = sh->head_dim;
    hp->head_dim_v = sh->head_dim;
    hp->n_ff = sh->n_ff;
}

int model_write_random(const char *path, const model_random_options *o, el_err *err)
{
    if ((unsigned)o->arch >= MODEL_ARCH_COUNT)
        return el_fail(err, "unknown architecture %d", (int)o->arch);
    const model_shape *sh = find_shape(o->shape ? o->shape : "");
    if (!sh)
        return el_fail(err, "unknown model shape '%s'", o->shape ? o->shape : "");
    if (!kernels_can_quantize(o->type) && o->type != GGUF_TYPE_F32) {
        const gguf_type_info *info = gguf_type_get(o->type);
        return el_fail(err, "cannot write weights of type %s", info ? info->name : "unknown");
    }
    if (o->sliding_window < 0)
        return el_fail(err, "sliding window %d is negative", o->sliding_window);

    writer_state s = {.weight_type = o->type, .n_embd = sh->n_embd, .seed = o->seed};
    int rc = -1;
    int n_vocab = o->n_vocab;
    s.w = gguf_writer_create(err);
    if (!s.w)
        return -1;
    if (write_metadata(s.w, o, sh, o->sliding_window ? o->sliding_window : sh->sliding_window, err) < 0)
        goto done;
    if (o->vocab_path) {
        if (copy_tokenizer(s.w, o->vocab_path, &n_vocab, err) < 0)
            goto done;
    } else if (n_vocab < 1 || n_vocab > (1 << 22)) {
        el_fail(err, "vocabulary of %d tokens is out of range [1, %d]", n_vocab, 1 << 22);
        goto done;
    }
    model_hparams hp;
    hparams_of_shape(o, sh, n_vocab, &hp);
    if (model_for_each_tensor(&hp, plan_tensor, &s, err) < 0)
        goto done;
    s.row = malloc(((size_t)s.max_cols + 4) * sizeof(float));
    if (!s.row) {
        el_fail(err, "out of memory");
        goto done;
    }
    rc = gguf_writer_write(s.w, path, fill_tensor, &s, err);
done:
    free(s.row);
    free(s.tensors);
    gguf_writer_free(s.w);
    return rc;
}

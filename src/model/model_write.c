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
    const char *only_arch; /* the one architecture this shape is for; NULL: llama, gemma, gemma2, gemma3 */
    int n_dense;        /* gemma-embedding: the dense projection's width; 0: none */
    /* gemma4 */
    int period;         /* every period-th layer is a full-attention one */
    int head_dim_full;  /* full layers' head size */
    int n_head_kv_full; /* full layers' KV heads; 0: n_head_kv */
    int n_ple;          /* per-layer input width; 0: none */
    int shared_kv;      /* trailing layers that reuse earlier layers' KV */
    bool double_wide;   /* those layers have an MLP of 2 * n_ff */
    bool k_eq_v;        /* full layers use the keys as values (no attn_v) */
    int n_expert, n_expert_used, n_ff_exp;
    /* gemma3n (also period, n_ple, shared_kv) */
    int n_altup, n_laurel;
} model_shape;

static const model_shape shapes[] = {
    {.name = "tiny", .n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 1, .head_dim = 16,
     .n_ff = 128, .n_ctx = 2048, .sliding_window = 8},
    {.name = "tiny-mha", .n_embd = 96, .n_layer = 3, .n_head = 3, .n_head_kv = 3, .head_dim = 32,
     .n_ff = 160, .n_ctx = 2048, .sliding_window = 8},
    {.name = "tiny-256", .n_embd = 256, .n_layer = 2, .n_head = 2, .n_head_kv = 1, .head_dim = 128,
     .n_ff = 512, .n_ctx = 2048, .sliding_window = 8}, /* K-quant blocks need 256 columns */
    {.name = "tiny-deep", .n_embd = 64, .n_layer = 6, .n_head = 4, .n_head_kv = 1, .head_dim = 16,
     .n_ff = 128, .n_ctx = 2048, .sliding_window = 8}, /* gemma3: 5 local layers, then a global one */
    {.name = "gemma-2b", .n_embd = 2048, .n_layer = 18, .n_head = 8, .n_head_kv = 1, .head_dim = 256,
     .n_ff = 16384, .n_ctx = 8192, .sliding_window = 0},
    {.name = "gemma-7b", .n_embd = 3072, .n_layer = 28, .n_head = 16, .n_head_kv = 16, .head_dim = 256,
     .n_ff = 24576, .n_ctx = 8192, .sliding_window = 0},
    {.name = "gemma2-2b", .n_embd = 2304, .n_layer = 26, .n_head = 8, .n_head_kv = 4, .head_dim = 256,
     .n_ff = 9216, .n_ctx = 8192, .sliding_window = 4096},
    {.name = "gemma2-9b", .n_embd = 3584, .n_layer = 42, .n_head = 16, .n_head_kv = 8, .head_dim = 256,
     .n_ff = 14336, .n_ctx = 8192, .sliding_window = 4096},
    {.name = "gemma3-270m", .n_embd = 640, .n_layer = 18, .n_head = 4, .n_head_kv = 1, .head_dim = 256,
     .n_ff = 2048, .n_ctx = 32768, .sliding_window = 512},
    {.name = "gemma3-1b", .n_embd = 1152, .n_layer = 26, .n_head = 4, .n_head_kv = 1, .head_dim = 256,
     .n_ff = 6912, .n_ctx = 32768, .sliding_window = 512},
    {.name = "gemma3-4b", .n_embd = 2560, .n_layer = 34, .n_head = 8, .n_head_kv = 4, .head_dim = 256,
     .n_ff = 10240, .n_ctx = 131072, .sliding_window = 1024, .rope_scale = 8.0f},
    /* Gemma 4 E2B scaled down: 4 sliding : 1 full, per-layer inputs, the last half
     * sharing KV with a double-wide MLP. */
    {.name = "tiny-gemma4", .only_arch = "gemma4", .n_embd = 64, .n_layer = 10, .n_head = 4, .n_head_kv = 1, .head_dim = 16,
     .n_ff = 256, .n_ctx = 2048, .sliding_window = 8, .period = 5, .head_dim_full = 32, .n_ple = 16,
     .shared_kv = 5, .double_wide = true},
    /* Gemma 4 26B-A4B scaled down: 5 sliding : 1 full, K = V on full layers, experts. */
    {.name = "tiny-gemma4-moe", .only_arch = "gemma4", .n_embd = 64, .n_layer = 6, .n_head = 4, .n_head_kv = 2, .head_dim = 16,
     .n_ff = 64, .n_ctx = 2048, .sliding_window = 8, .period = 6, .head_dim_full = 32, .n_head_kv_full = 1,
     .k_eq_v = true, .n_expert = 4, .n_expert_used = 2, .n_ff_exp = 32},
    {.name = "gemma4-e2b", .only_arch = "gemma4", .n_embd = 1536, .n_layer = 35, .n_head = 8, .n_head_kv = 1, .head_dim = 256,
     .n_ff = 6144, .n_ctx = 131072, .sliding_window = 512, .period = 5, .head_dim_full = 512, .n_ple = 256,
     .shared_kv = 20, .double_wide = true},
    {.name = "gemma4-26b-a4b", .only_arch = "gemma4", .n_embd = 2816, .n_layer = 30, .n_head = 16, .n_head_kv = 8, .head_dim = 256,
     .n_ff = 2112, .n_ctx = 262144, .sliding_window = 1024, .period = 6, .head_dim_full = 512,
     .n_head_kv_full = 2, .k_eq_v = true, .n_expert = 128, .n_expert_used = 8, .n_ff_exp = 704},
    /* Gemma 3n E2B scaled down: a sliding and a full layer, 4 AltUp streams, LAuReL rank
     * 64 and per-layer inputs of 256 as the real one. */
    {.name = "tiny-gemma3n", .only_arch = "gemma3n", .n_embd = 64, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
     .head_dim = 16, .n_ff = 256, .n_ctx = 2048, .sliding_window = 8, .period = 2, .n_ple = 256, .n_altup = 4,
     .n_laurel = 64},
    {.name = "gemma3n-e2b", .only_arch = "gemma3n", .n_embd = 2048, .n_layer = 30, .n_head = 8, .n_head_kv = 2,
     .head_dim = 256, .n_ff = 8192, .n_ctx = 32768, .sliding_window = 512, .period = 5, .n_ple = 256,
     .shared_kv = 10, .n_altup = 4, .n_laurel = 64},
    /* EmbeddingGemma 300m scaled down: 5 sliding : 1 full, bidirectional, mean pooling,
     * the sentence-transformers dense projection n_embd -> 4 n_embd -> n_embd. */
    {.name = "tiny-gemma-embedding", .only_arch = "gemma-embedding", .n_embd = 64, .n_layer = 6, .n_head = 4,
     .n_head_kv = 1, .head_dim = 16, .n_ff = 96, .n_ctx = 2048, .sliding_window = 8, .n_dense = 256},
    {.name = "embeddinggemma-300m", .only_arch = "gemma-embedding", .n_embd = 768, .n_layer = 24, .n_head = 3,
     .n_head_kv = 1, .head_dim = 256, .n_ff = 1152, .n_ctx = 2048, .sliding_window = 512, .n_dense = 3072},
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
    char name[80];
    int64_t cols, rows;
    uint32_t type;
    bool vector;
    float scale; /* standard deviation of the random values */
    float mean;
    const float *fixed; /* values written as they are (cols floats), not random */
} planned_tensor;

typedef struct writer_state {
    planned_tensor *tensors;
    size_t n, cap;
    uint32_t weight_type;
    enum model_arch arch;
    int n_embd;
    uint64_t seed;
    float *row; /* one row of floats */
    int64_t max_cols;
    gguf_writer *w;
    float *rope_freqs; /* gemma4: the full layers' rope factors */
} writer_state;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Random values that keep activations near unit size, and where llama.cpp's
 * routing needs it, a clear margin between experts. */
static void choose_values(writer_state *s, planned_tensor *t, const model_tensor_desc *d)
{
    float root_embd = sqrtf((float)s->n_embd);
    t->mean = 0.0f;
    t->scale = 1.0f / sqrtf((float)t->cols);
    if (!strcmp(d->name, "token_embd.weight")) {
        t->scale = 1.0f / root_embd;
    } else if (!strcmp(d->name, "rope_freqs.weight")) {
        t->fixed = s->rope_freqs;
    } else if (ends_with(d->name, "ffn_gate_inp.weight")) {
        t->scale = 8.0f / root_embd;
    } else if (ends_with(d->name, "ffn_gate_inp.scale")) {
        t->mean = root_embd;
        t->scale = 0.1f * root_embd;
    } else if (ends_with(d->name, "ffn_down_exps.scale")) {
        t->mean = 1.0f;
        t->scale = 0.3f;
    } else if (ends_with(d->name, "layer_output_scale.weight")) {
        t->mean = 0.875f;
        t->scale = 0.07f;
    } else if (s->arch == MODEL_ARCH_GEMMA4 && (ends_with(d->name, "attn_q_norm.weight") ||
                                                ends_with(d->name, "attn_k_norm.weight"))) {
        /* Gemma 4 does not scale its scores: with unit q and k norms a score would be
         * about sqrt(head_dim), and attention so peaked that rounding decides it. */
        t->mean = 0.5f;
        t->scale = 0.05f;
    } else if (d->kind == MODEL_TENSOR_VECTOR) {
        t->mean = 1.0f;
        t->scale = 0.1f;
    }
}

/* As llama.cpp's converter: vectors and routers F32, the embedding tables F16 in an
 * F32 model. */
static uint32_t choose_type(const writer_state *s, const model_tensor_desc *d)
{
    if (d->kind == MODEL_TENSOR_VECTOR || d->kind == MODEL_TENSOR_ROUTER)
        return GGUF_TYPE_F32;
    if (d->kind == MODEL_TENSOR_TABLE && s->weight_type == GGUF_TYPE_F32)
        return GGUF_TYPE_F16;
    /* Gemma 4's narrow per-layer projections (16 columns in the tiny shapes, 256 in
     * real ones) are no whole number of some types' blocks. */
    if (s->arch == MODEL_ARCH_GEMMA4 && gguf_row_size(s->weight_type, d->ne[0]) == 0 &&
        gguf_row_size(GGUF_TYPE_F16, d->ne[0]) != 0)
        return GGUF_TYPE_F16;
    return s->weight_type;
}

static int plan_tensor(void *p, const model_tensor_desc *d, el_err *err)
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
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", d->name);
    t->cols = d->ne[0];
    t->rows = d->ne[1] * d->ne[2] * d->ne[3];
    t->vector = d->kind == MODEL_TENSOR_VECTOR;
    t->type = choose_type(s, d);
    choose_values(s, t, d);
    if (t->cols > s->max_cols)
        s->max_cols = t->cols;
    if (gguf_row_size(t->type, t->cols) == 0) {
        const gguf_type_info *info = gguf_type_get(t->type);
        return el_fail(err, "tensor %s: %lld columns are not a whole number of %s blocks (%u)", d->name,
                       (long long)t->cols, info ? info->name : "?", info ? info->block_size : 0);
    }
    return gguf_writer_add_tensor(s->w, d->name, t->type, (uint32_t)d->n_dims, d->ne, err);
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
        if (t->fixed)
            memcpy(s->row, t->fixed, (size_t)t->cols * sizeof(float));
        else
            random_row(&rng, s->row, t->cols, t->scale, t->mean);
        void *dst = (uint8_t *)buf + (size_t)r * row_bytes;
        if (t->type == GGUF_TYPE_F32)
            memcpy(dst, s->row, (size_t)t->cols * sizeof(float));
        else if (kernels_quantize_row(t->type, s->row, dst, t->cols) < 0)
            return el_fail(err, "tensor %s: cannot quantize to %s", name, gguf_type_get(t->type)->name);
    }
    return 0;
}

/* ---- metadata ------------------------------------------------------------------------ */

/* CodeGemma's vocabulary is Gemma's with four unused tokens renamed, in this order,
 * and typed as control tokens. */
static const char *const code_unused[4] = {"<unused60>", "<unused61>", "<unused62>", "<unused63>"};
static const char *const code_markers[4] = {"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                                            "<|file_separator|>"};
enum { TOKEN_TYPE_CONTROL = 3 };

static int find_code_ids(const gguf_kv *tokens, uint64_t ids[4], el_err *err)
{
    int found = 0;
    for (uint64_t i = 0; i < tokens->arr_len && tokens->arr_type == GGUF_VAL_STRING; i++)
        for (int k = 0; k < 4; k++)
            if (gguf_str_eq(tokens->arr_strings[i], code_unused[k])) {
                ids[k] = i;
                found++;
            }
    return found == 4 ? 0 : el_fail(err, "vocabulary: a code vocabulary needs Gemma's <unused60>..<unused63>");
}

static int write_code_tokens(gguf_writer *w, const gguf_kv *tokens, const uint64_t ids[4], el_err *err)
{
    gguf_str *names = malloc((size_t)tokens->arr_len * sizeof *names);
    if (!names)
        return el_fail(err, "out of memory");
    memcpy(names, tokens->arr_strings, (size_t)tokens->arr_len * sizeof *names);
    for (int k = 0; k < 4; k++)
        names[ids[k]] = (gguf_str){code_markers[k], strlen(code_markers[k])};
    gguf_kv kv = *tokens;
    kv.arr_strings = names;
    kv.arr_data = NULL;
    int rc = gguf_writer_copy_kv(w, &kv, err);
    free(names);
    return rc;
}

static int write_code_types(gguf_writer *w, const gguf_kv *types, uint64_t n_vocab, const uint64_t ids[4],
                            el_err *err)
{
    if (types->arr_type != GGUF_VAL_INT32 || types->arr_len != n_vocab)
        return el_fail(err, "vocabulary: tokenizer.ggml.token_type is not one int32 per token");
    uint8_t *data = malloc((size_t)n_vocab * 4);
    if (!data)
        return el_fail(err, "out of memory");
    memcpy(data, types->arr_data, (size_t)n_vocab * 4);
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 4; b++)
            data[ids[k] * 4 + (uint64_t)b] = (uint8_t)((uint32_t)TOKEN_TYPE_CONTROL >> (8 * b));
    gguf_kv kv = *types;
    kv.arr_data = data;
    int rc = gguf_writer_copy_kv(w, &kv, err);
    free(data);
    return rc;
}

static int copy_tokenizer(gguf_writer *w, const char *vocab_path, bool code_vocab, int *n_vocab, el_err *err)
{
    gguf_file *f = gguf_open(vocab_path, err);
    if (!f)
        return el_wrap(err, "vocabulary");
    int rc = 0;
    uint64_t code_ids[4];
    const gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find(f, "tokenizer.ggml.token_type");
    if (!tokens || tokens->type != GGUF_VAL_ARRAY || tokens->arr_len < 1 || tokens->arr_len > (1u << 22)) {
        rc = el_fail(err, "%s: no usable tokenizer.ggml.tokens array", vocab_path);
    } else if (code_vocab && (find_code_ids(tokens, code_ids, err) < 0 || !types)) {
        rc = types ? -1 : el_fail(err, "%s: a code vocabulary needs tokenizer.ggml.token_type", vocab_path);
    } else {
        *n_vocab = (int)tokens->arr_len;
        for (uint64_t i = 0; i < gguf_kv_count(f) && rc == 0; i++) {
            const gguf_kv *kv = gguf_kv_at(f, i);
            if (kv->key.len <= 10 || memcmp(kv->key.ptr, "tokenizer.", 10))
                continue;
            rc = code_vocab && kv == tokens  ? write_code_tokens(w, kv, code_ids, err)
                 : code_vocab && kv == types ? write_code_types(w, kv, tokens->arr_len, code_ids, err)
                                             : gguf_writer_copy_kv(w, kv, err);
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

/* One integer per layer: a single value when all agree, else an array. */
static void meta_per_layer(meta_writer *m, const char *suffix, const int *v, int n)
{
    bool uniform = true;
    for (int i = 1; i < n; i++)
        uniform &= v[i] == v[0];
    if (uniform) {
        meta_u32(m, suffix, (uint32_t)v[0]);
        return;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    int32_t vals[MODEL_MAX_LAYERS];
    for (int i = 0; i < n; i++)
        vals[i] = v[i];
    gguf_kv kv = {.key = {key, strlen(key)}, .type = GGUF_VAL_ARRAY, .arr_type = GGUF_VAL_INT32,
                  .arr_len = (uint64_t)n, .arr_data = (const uint8_t *)vals};
    if (m->rc == 0)
        m->rc = gguf_writer_copy_kv(m->w, &kv, m->err);
}

static void meta_bools(meta_writer *m, const char *suffix, const bool *v, int n)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    uint8_t vals[MODEL_MAX_LAYERS];
    for (int i = 0; i < n; i++)
        vals[i] = v[i];
    gguf_kv kv = {.key = {key, strlen(key)}, .type = GGUF_VAL_ARRAY, .arr_type = GGUF_VAL_BOOL,
                  .arr_len = (uint64_t)n, .arr_data = vals};
    if (m->rc == 0)
        m->rc = gguf_writer_copy_kv(m->w, &kv, m->err);
}

/* The keys llama.cpp's Gemma4Model converter writes, from the layer table. */
static void gemma4_metadata(meta_writer *m, const model_shape *sh, const model_hparams *hp, int swa)
{
    int n_ff[MODEL_MAX_LAYERS], n_kv[MODEL_MAX_LAYERS];
    bool is_swa[MODEL_MAX_LAYERS];
    for (int il = 0; il < sh->n_layer; il++) {
        n_ff[il] = hp->layer[il].n_ff;
        n_kv[il] = hp->layer[il].n_head_kv;
        is_swa[il] = hp->layer[il].swa;
    }
    meta_per_layer(m, "feed_forward_length", n_ff, sh->n_layer);
    meta_per_layer(m, "attention.head_count_kv", n_kv, sh->n_layer);
    meta_f32(m, "rope.freq_base", 1000000.0f);
    meta_f32(m, "rope.freq_base_swa", 10000.0f);
    meta_u32(m, "attention.key_length", (uint32_t)sh->head_dim_full);
    meta_u32(m, "attention.value_length", (uint32_t)sh->head_dim_full);
    meta_u32(m, "attention.key_length_swa", (uint32_t)sh->head_dim);
    meta_u32(m, "attention.value_length_swa", (uint32_t)sh->head_dim);
    meta_f32(m, "final_logit_softcapping", 30.0f);
    meta_u32(m, "attention.sliding_window", (uint32_t)swa);
    meta_u32(m, "attention.shared_kv_layers", (uint32_t)sh->shared_kv);
    meta_u32(m, "embedding_length_per_layer_input", (uint32_t)sh->n_ple);
    meta_bools(m, "attention.sliding_window_pattern", is_swa, sh->n_layer);
    if (sh->n_expert > 0) {
        meta_u32(m, "expert_count", (uint32_t)sh->n_expert);
        meta_u32(m, "expert_used_count", (uint32_t)sh->n_expert_used);
        meta_u32(m, "expert_feed_forward_length", (uint32_t)sh->n_ff_exp);
    }
    meta_u32(m, "rope.dimension_count", (uint32_t)sh->head_dim_full);
    meta_u32(m, "rope.dimension_count_swa", (uint32_t)sh->head_dim);
}

static void meta_floats(meta_writer *m, const char *suffix, const float *v, int n)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    gguf_kv kv = {.key = {key, strlen(key)}, .type = GGUF_VAL_ARRAY, .arr_type = GGUF_VAL_FLOAT32,
                  .arr_len = (uint64_t)n, .arr_data = (const uint8_t *)v};
    if (m->rc == 0)
        m->rc = gguf_writer_copy_kv(m->w, &kv, m->err);
}

/* The keys llama.cpp's Gemma3NModel converter writes. */
static void gemma3n_metadata(meta_writer *m, const model_shape *sh, const model_hparams *hp, int swa)
{
    int n_ff[MODEL_MAX_LAYERS];
    bool is_swa[MODEL_MAX_LAYERS];
    float sparsity[MODEL_MAX_LAYERS];
    for (int il = 0; il < sh->n_layer; il++) {
        n_ff[il] = sh->n_ff;
        is_swa[il] = hp->layer[il].swa;
        sparsity[il] = il < 10 ? 1.6448533535003662f : -INFINITY;
    }
    meta_per_layer(m, "feed_forward_length", n_ff, sh->n_layer);
    meta_u32(m, "attention.head_count_kv", (uint32_t)sh->n_head_kv);
    meta_f32(m, "rope.freq_base", 1000000.0f);
    meta_f32(m, "rope.freq_base_swa", 10000.0f);
    meta_u32(m, "attention.key_length", (uint32_t)sh->head_dim);
    meta_u32(m, "attention.value_length", (uint32_t)sh->head_dim);
    meta_f32(m, "final_logit_softcapping", 30.0f);
    meta_u32(m, "attention.sliding_window", (uint32_t)swa);
    meta_u32(m, "altup.active_idx", 0);
    meta_u32(m, "altup.num_inputs", (uint32_t)sh->n_altup);
    meta_u32(m, "embedding_length_per_layer_input", (uint32_t)sh->n_ple);
    meta_u32(m, "attention.shared_kv_layers", (uint32_t)sh->shared_kv);
    meta_floats(m, "activation_sparsity_scale", sparsity, sh->n_layer);
    meta_bools(m, "attention.sliding_window_pattern", is_swa, sh->n_layer);
}

static int write_metadata(gguf_writer *w, const model_random_options *o, const model_shape *sh,
                          const model_hparams *hp, int swa, el_err *err)
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
    meta_u32(&m, "attention.head_count", (uint32_t)sh->n_head);
    meta_f32(&m, "attention.layer_norm_rms_epsilon", o->arch == MODEL_ARCH_LLAMA ? 1e-5f : 1e-6f);
    if (o->arch == MODEL_ARCH_GEMMA4) {
        gemma4_metadata(&m, sh, hp, swa);
        return m.rc;
    }
    if (o->arch == MODEL_ARCH_GEMMA3N) {
        gemma3n_metadata(&m, sh, hp, swa);
        return m.rc;
    }
    meta_u32(&m, "feed_forward_length", (uint32_t)sh->n_ff);
    meta_u32(&m, "attention.head_count_kv", (uint32_t)sh->n_head_kv);
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
    case MODEL_ARCH_GEMMA_EMBEDDING:
        meta_f32(&m, "rope.freq_base_swa", 10000.0f);
        meta_u32(&m, "pooling_type", MODEL_POOLING_MEAN);
        if (sh->n_dense > 0) {
            meta_u32(&m, "dense_2_feat_in", (uint32_t)sh->n_embd);
            meta_u32(&m, "dense_2_feat_out", (uint32_t)sh->n_dense);
            meta_u32(&m, "dense_3_feat_in", (uint32_t)sh->n_dense);
            meta_u32(&m, "dense_3_feat_out", (uint32_t)sh->n_embd);
        }
        /* the rest as gemma3 */
        /* fall through */
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

/* Gemma 4's layer table from a shape, as llama.cpp derives it from the metadata. */
static void gemma4_layers(const model_shape *sh, model_hparams *hp)
{
    hp->n_layer_kv = sh->n_layer - sh->shared_kv;
    hp->n_embd_per_layer = sh->n_ple;
    hp->n_expert = sh->n_expert;
    hp->n_expert_used = sh->n_expert_used;
    hp->n_ff_exp = sh->n_ff_exp;
    hp->head_dim_k = hp->head_dim_v = sh->head_dim_full;
    for (int il = 0; il < sh->n_layer; il++) {
        model_layer_hparams *l = &hp->layer[il];
        bool shares = il >= hp->n_layer_kv;
        l->swa = (il + 1) % sh->period != 0;
        l->n_head_kv = !l->swa && sh->n_head_kv_full ? sh->n_head_kv_full : sh->n_head_kv;
        l->head_dim_k = l->head_dim_v = l->n_rot = l->swa ? sh->head_dim : sh->head_dim_full;
        l->n_ff = shares && sh->double_wide ? 2 * sh->n_ff : sh->n_ff;
        l->kv_layer = shares ? hp->n_layer_kv - (l->swa ? 2 : 1) : il;
        l->v_from_k = !shares && !l->swa && sh->k_eq_v;
        l->moe = sh->n_expert > 0;
        hp->rope_freq_factors |= !l->swa;
    }
}

static void gemma3n_layers(const model_shape *sh, model_hparams *hp)
{
    hp->n_layer_kv = sh->n_layer - sh->shared_kv;
    hp->n_embd_per_layer = sh->n_ple;
    hp->n_altup = sh->n_altup;
    hp->n_laurel = sh->n_laurel;
    for (int il = 0; il < sh->n_layer; il++) {
        model_layer_hparams *l = &hp->layer[il];
        l->swa = (il + 1) % sh->period != 0;
        l->n_head_kv = sh->n_head_kv;
        l->head_dim_k = l->head_dim_v = l->n_rot = sh->head_dim;
        l->n_ff = sh->n_ff;
        l->kv_layer = il >= hp->n_layer_kv ? hp->n_layer_kv - (l->swa ? 2 : 1) : il;
    }
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
    hp->n_rot = sh->head_dim;
    if (o->arch == MODEL_ARCH_GEMMA4) {
        gemma4_layers(sh, hp);
    } else if (o->arch == MODEL_ARCH_GEMMA3N) {
        gemma3n_layers(sh, hp);
    } else {
        hp->sliding_window = sh->sliding_window;
        hp->swa_pattern = o->arch == MODEL_ARCH_GEMMA3 || o->arch == MODEL_ARCH_GEMMA_EMBEDDING ? 6
                          : o->arch == MODEL_ARCH_GEMMA2                                       ? 2
                                                                                              : 1;
        hp->n_dense = sh->n_dense;
        model_hparams_uniform_layers(hp);
    }
}

/* Gemma 4's proportional rope: a quarter of the full layers' pairs rotate, the
 * rest are held still by a huge factor (Gemma4Model.generate_extra_tensors). */
static float *gemma4_rope_freqs(const model_shape *sh)
{
    int half = sh->head_dim_full / 2, rotated = sh->head_dim_full / 8;
    float *f = malloc((size_t)half * sizeof *f);
    for (int i = 0; f && i < half; i++)
        f[i] = i < rotated ? 1.0f : 1e30f;
    return f;
}

int model_write_random(const char *path, const model_random_options *o, el_err *err)
{
    if ((unsigned)o->arch >= MODEL_ARCH_COUNT)
        return el_fail(err, "unknown architecture %d", (int)o->arch);
    const model_shape *sh = find_shape(o->shape ? o->shape : "");
    if (!sh)
        return el_fail(err, "unknown model shape '%s'", o->shape ? o->shape : "");
    const char *arch_name = model_arch_name(o->arch);
    bool classic = o->arch == MODEL_ARCH_LLAMA || o->arch == MODEL_ARCH_GEMMA || o->arch == MODEL_ARCH_GEMMA2 ||
                   o->arch == MODEL_ARCH_GEMMA3;
    if (sh->only_arch ? strcmp(sh->only_arch, arch_name) != 0 : !classic)
        return el_fail(err, sh->only_arch ? "shape '%s' is for %s only" : "shape '%s' is not for %s (see its own shapes)",
                       sh->name, sh->only_arch ? sh->only_arch : arch_name);
    if (!kernels_can_quantize(o->type) && o->type != GGUF_TYPE_F32) {
        const gguf_type_info *info = gguf_type_get(o->type);
        return el_fail(err, "cannot write weights of type %s", info ? info->name : "unknown");
    }
    if (o->sliding_window < 0)
        return el_fail(err, "sliding window %d is negative", o->sliding_window);

    writer_state s = {.weight_type = o->type, .arch = o->arch, .n_embd = sh->n_embd, .seed = o->seed};
    int rc = -1;
    int n_vocab = o->n_vocab;
    model_hparams *hp = calloc(1, sizeof *hp);
    s.w = gguf_writer_create(err);
    if (!s.w || !hp) {
        if (!hp)
            el_fail(err, "out of memory");
        goto done;
    }
    if (o->arch == MODEL_ARCH_GEMMA4 && !(s.rope_freqs = gemma4_rope_freqs(sh))) {
        el_fail(err, "out of memory");
        goto done;
    }
    hparams_of_shape(o, sh, n_vocab, hp);
    if (write_metadata(s.w, o, sh, hp, o->sliding_window ? o->sliding_window : sh->sliding_window, err) < 0)
        goto done;
    if (o->vocab_path) {
        if (copy_tokenizer(s.w, o->vocab_path, o->code_vocab, &n_vocab, err) < 0)
            goto done;
    } else if (n_vocab < 1 || n_vocab > (1 << 22)) {
        el_fail(err, "vocabulary of %d tokens is out of range [1, %d]", n_vocab, 1 << 22);
        goto done;
    }
    hp->n_vocab = n_vocab;
    if (model_for_each_tensor(hp, plan_tensor, &s, err) < 0)
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
    free(s.rope_freqs);
    free(hp);
    gguf_writer_free(s.w);
    return rc;
}

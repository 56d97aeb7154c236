/* Architecture names and hyperparameters from GGUF metadata, with llama.cpp's
 * defaults for absent keys. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const char *const arch_names[MODEL_ARCH_COUNT] = {
    [MODEL_ARCH_LLAMA] = "llama",
    [MODEL_ARCH_GEMMA] = "gemma",
    [MODEL_ARCH_GEMMA2] = "gemma2",
    [MODEL_ARCH_GEMMA3] = "gemma3",
    [MODEL_ARCH_GEMMA4] = "gemma4",
    [MODEL_ARCH_GEMMA_EMBEDDING] = "gemma-embedding",
    [MODEL_ARCH_GEMMA3N] = "gemma3n",
};

int model_arch_from_name(const char *name, size_t len)
{
    for (int a = 0; a < MODEL_ARCH_COUNT; a++)
        if (strlen(arch_names[a]) == len && !memcmp(arch_names[a], name, len))
            return a;
    return -1;
}

const char *model_arch_name(enum model_arch arch)
{
    return (unsigned)arch < MODEL_ARCH_COUNT ? arch_names[arch] : "unknown";
}

bool model_layer_is_swa(const model_hparams *hp, int il)
{
    if (hp->arch == MODEL_ARCH_GEMMA4 || hp->arch == MODEL_ARCH_GEMMA3N)
        return il >= 0 && il < hp->n_layer && hp->layer[il].swa;
    return hp->sliding_window > 0 && hp->swa_pattern > 1 && il % hp->swa_pattern < hp->swa_pattern - 1;
}

void model_hparams_uniform_layers(model_hparams *hp)
{
    for (int il = 0; il < hp->n_layer && il < MODEL_MAX_LAYERS; il++) {
        model_layer_hparams *l = &hp->layer[il];
        memset(l, 0, sizeof *l);
        l->swa = model_layer_is_swa(hp, il);
        l->n_head_kv = hp->n_head_kv;
        l->head_dim_k = hp->head_dim_k;
        l->head_dim_v = hp->head_dim_v;
        l->n_ff = hp->n_ff;
        l->n_rot = hp->n_rot;
        l->kv_layer = il;
    }
    hp->n_layer_kv = hp->n_layer;
    hp->n_rot_swa = hp->n_rot;
}

/* Limits well above any real model, so that sizes derived from them cannot overflow. */
enum {
    MAX_EMBD = 65536,
    MAX_LAYERS = MODEL_MAX_LAYERS,
    MAX_HEADS = 1024,
    MAX_HEAD_DIM = 4096,
    MAX_FF = 1 << 20,
    MAX_VOCAB = 1 << 22,
    MAX_CTX = 1 << 24,
};

typedef struct key_reader {
    const gguf_file *f;
    const char *arch;
    char key[160];
} key_reader;

static const char *arch_key(key_reader *r, const char *suffix)
{
    snprintf(r->key, sizeof r->key, "%s.%s", r->arch, suffix);
    return r->key;
}

/* An integer key within [min, max]; absent keys keep *out unless required. */
static int read_int(key_reader *r, const char *suffix, bool required, long min, long max, int *out,
                    el_err *err)
{
    const char *key = arch_key(r, suffix);
    int64_t v = *out;
    int rc = gguf_get_i64(r->f, key, &v, err);
    if (rc < 0)
        return el_wrap(err, "metadata %s", key);
    if (rc == 1) {
        if (required)
            return el_fail(err, "metadata key %s is missing", key);
        return 0;
    }
    if (v < min || v > max)
        return el_fail(err, "metadata %s = %lld is out of range [%ld, %ld]", key, (long long)v, min, max);
    *out = (int)v;
    return 0;
}

static int read_float(key_reader *r, const char *suffix, bool required, double min, double max,
                      float *out, el_err *err)
{
    const char *key = arch_key(r, suffix);
    float v = *out;
    int rc = gguf_get_f32(r->f, key, &v, err);
    if (rc < 0)
        return el_wrap(err, "metadata %s", key);
    if (rc == 1) {
        if (required)
            return el_fail(err, "metadata key %s is missing", key);
        return 0;
    }
    if (!isfinite(v) || v < min || v > max)
        return el_fail(err, "metadata %s = %g is out of range [%g, %g]", key, (double)v, min, max);
    *out = v;
    return 0;
}

/* Element i of an integer or boolean array, widened. */
static int array_int_at(const gguf_kv *kv, uint64_t i, int64_t *out)
{
    const uint8_t *p = kv->arr_data;
    switch (kv->arr_type) {
    case GGUF_VAL_UINT8:
    case GGUF_VAL_BOOL: *out = p[i]; return 0;
    case GGUF_VAL_INT8: *out = (int8_t)p[i]; return 0;
    case GGUF_VAL_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); *out = v; return 0; }
    case GGUF_VAL_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); *out = v; return 0; }
    case GGUF_VAL_UINT32: { uint32_t v; memcpy(&v, p + 4 * i, 4); *out = v; return 0; }
    case GGUF_VAL_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); *out = v; return 0; }
    case GGUF_VAL_UINT64: {
        uint64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v > INT64_MAX)
            return -1;
        *out = (int64_t)v;
        return 0;
    }
    case GGUF_VAL_INT64: memcpy(out, p + 8 * i, 8); return 0;
    default: return -1;
    }
}

/* One integer per layer, stored as one value for every layer or as an array of
 * block_count values (llama.cpp's get_key_or_arr). Absent and not required: vals
 * keeps what the caller preset. */
static int read_per_layer(key_reader *r, const char *suffix, bool required, long min, long max, int n_layer,
                          int *vals, el_err *err)
{
    const char *key = arch_key(r, suffix);
    const gguf_kv *kv = gguf_find(r->f, key);
    if (!kv) {
        if (required)
            return el_fail(err, "metadata key %s is missing", key);
        return 0;
    }
    if (kv->type != GGUF_VAL_ARRAY) {
        int v = 0;
        if (kv->type == GGUF_VAL_BOOL) {
            v = kv->v.u64 != 0;
        } else if (read_int(r, suffix, true, min, max, &v, err) < 0) {
            return -1;
        }
        for (int il = 0; il < n_layer; il++)
            vals[il] = v;
        return 0;
    }
    if (kv->arr_len != (uint64_t)n_layer)
        return el_fail(err, "metadata %s holds %llu values for %d layers", key, (unsigned long long)kv->arr_len,
                       n_layer);
    for (int il = 0; il < n_layer; il++) {
        int64_t v;
        if (array_int_at(kv, (uint64_t)il, &v) < 0)
            return el_fail(err, "metadata %s is an array of %s, not of integers", key,
                           gguf_value_type_name(kv->arr_type));
        if (v < min || v > max)
            return el_fail(err, "metadata %s[%d] = %lld is out of range [%ld, %ld]", key, il, (long long)v, min,
                           max);
        vals[il] = (int)v;
    }
    return 0;
}

static int max_of(const int *v, int n)
{
    int m = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] > m)
            m = v[i];
    return m;
}

/* Architectures before gemma4 have one size for every layer. */
static int require_uniform(key_reader *r, const char *suffix, const int *v, int n, el_err *err)
{
    for (int i = 1; i < n; i++)
        if (v[i] != v[0])
            return el_fail(err, "metadata %s.%s differs between layers, which %s does not have", r->arch, suffix,
                           r->arch);
    return 0;
}

static int read_vocab_size(const gguf_file *f, model_hparams *hp, el_err *err)
{
    const gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    if (tokens) {
        if (tokens->type != GGUF_VAL_ARRAY || tokens->arr_type != GGUF_VAL_STRING)
            return el_fail(err, "metadata tokenizer.ggml.tokens is not an array of strings");
        if (tokens->arr_len < 1 || tokens->arr_len > MAX_VOCAB)
            return el_fail(err, "metadata tokenizer.ggml.tokens holds %llu tokens (1..%d allowed)",
                           (unsigned long long)tokens->arr_len, MAX_VOCAB);
        hp->n_vocab = (int)tokens->arr_len;
        return 0;
    }
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd)
        return el_fail(err, "no vocabulary: neither tokenizer.ggml.tokens nor token_embd.weight is present");
    if (embd->ne[1] < 1 || embd->ne[1] > MAX_VOCAB)
        return el_fail(err, "tensor token_embd.weight has %lld rows (1..%d allowed)", (long long)embd->ne[1],
                       MAX_VOCAB);
    hp->n_vocab = (int)embd->ne[1];
    return 0;
}

/* rope.scaling.type defaults to linear; "none" disables the factor. */
static int read_rope_scaling(key_reader *r, model_hparams *hp, el_err *err)
{
    float factor = 0.0f;
    if (read_float(r, "rope.scaling.factor", false, 0.0, 1e6, &factor, err) < 0)
        return -1;
    gguf_str type = {"linear", 6};
    const char *key = arch_key(r, "rope.scaling.type");
    if (gguf_get_str(r->f, key, &type, err) < 0)
        return el_wrap(err, "metadata %s", key);
    if (gguf_str_eq(type, "none")) {
        hp->rope_freq_scale = 1.0f;
    } else if (gguf_str_eq(type, "linear")) {
        hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    } else {
        int n = type.len > 32 ? 32 : (int)type.len;
        return el_fail(err, "metadata %s = '%.*s' is not supported (none or linear)", key, n, type.ptr);
    }
    hp->rope_freq_scale_swa = hp->rope_freq_scale;
    return 0;
}

static int read_arch(const gguf_file *f, model_hparams *hp, el_err *err)
{
    gguf_str name;
    int rc = gguf_get_str(f, "general.architecture", &name, err);
    if (rc < 0)
        return el_wrap(err, "metadata general.architecture");
    if (rc == 1)
        return el_fail(err, "metadata key general.architecture is missing");
    int arch = model_arch_from_name(name.ptr, name.len);
    if (arch < 0) {
        int n = name.len > 64 ? 64 : (int)name.len;
        return el_fail(err, "architecture '%.*s' is not supported (llama, gemma, gemma2, gemma3, gemma3n, gemma4, gemma-embedding)", n,
                       name.ptr);
    }
    hp->arch = (enum model_arch)arch;
    return 0;
}

/* Per-layer sizes read before the rest: KV heads and FFN widths. */
typedef struct layer_sizes {
    int n_head_kv[MODEL_MAX_LAYERS];
    int n_ff[MODEL_MAX_LAYERS];
} layer_sizes;

static int read_attention(key_reader *r, model_hparams *hp, layer_sizes *ls, el_err *err)
{
    if (read_int(r, "attention.head_count", true, 1, MAX_HEADS, &hp->n_head, err) < 0)
        return -1;
    for (int il = 0; il < hp->n_layer; il++)
        ls->n_head_kv[il] = hp->n_head;
    if (read_per_layer(r, "attention.head_count_kv", false, 1, MAX_HEADS, hp->n_layer, ls->n_head_kv, err) < 0)
        return -1;
    for (int il = 0; il < hp->n_layer; il++)
        if (hp->n_head % ls->n_head_kv[il] != 0)
            return el_fail(err, "metadata %s.attention.head_count_kv = %d does not divide head_count = %d", r->arch,
                           ls->n_head_kv[il], hp->n_head);
    if (hp->arch != MODEL_ARCH_GEMMA4 && hp->arch != MODEL_ARCH_GEMMA3N &&
        require_uniform(r, "attention.head_count_kv", ls->n_head_kv, hp->n_layer, err) < 0)
        return -1;
    hp->n_head_kv = max_of(ls->n_head_kv, hp->n_layer);
    if (hp->n_embd % hp->n_head != 0 && !gguf_find(r->f, arch_key(r, "attention.key_length")))
        return el_fail(err, "metadata %s.attention.head_count = %d does not divide embedding_length = %d", r->arch,
                       hp->n_head, hp->n_embd);
    hp->head_dim_k = hp->n_embd / hp->n_head;
    hp->head_dim_v = hp->head_dim_k;
    if (read_int(r, "attention.key_length", false, 1, MAX_HEAD_DIM, &hp->head_dim_k, err) < 0 ||
        read_int(r, "attention.value_length", false, 1, MAX_HEAD_DIM, &hp->head_dim_v, err) < 0)
        return -1;
    if (hp->head_dim_k < 1 || hp->head_dim_v < 1)
        return el_fail(err, "metadata: head dimension is zero");
    if (read_float(r, "attention.layer_norm_rms_epsilon", true, 1e-12, 1.0, &hp->rms_eps, err) < 0)
        return -1;
    return 0;
}

static int read_rope(key_reader *r, model_hparams *hp, el_err *err)
{
    hp->n_rot = hp->head_dim_k;
    if (read_int(r, "rope.dimension_count", false, 2, MAX_HEAD_DIM, &hp->n_rot, err) < 0)
        return -1;
    if (hp->n_rot % 2 != 0 || hp->n_rot > hp->head_dim_k)
        return el_fail(err, "metadata %s.rope.dimension_count = %d must be even and at most the head size %d",
                       r->arch, hp->n_rot, hp->head_dim_k);
    hp->rope_base = 10000.0f;
    if (read_float(r, "rope.freq_base", false, 1e-3, 1e12, &hp->rope_base, err) < 0)
        return -1;
    if (read_rope_scaling(r, hp, err) < 0)
        return -1;
    hp->rope_base_swa = hp->rope_base;
    if (hp->arch == MODEL_ARCH_GEMMA3 || hp->arch == MODEL_ARCH_GEMMA_EMBEDDING || hp->arch == MODEL_ARCH_GEMMA3N) {
        /* Gemma 3's local layers keep the original base and no scaling. */
        hp->rope_base_swa = 10000.0f;
        hp->rope_freq_scale_swa = 1.0f;
    }
    return read_float(r, "rope.freq_base_swa", false, 1e-3, 1e12, &hp->rope_base_swa, err);
}

/* Gemma 2/3 27B scale queries by n_embd / n_head instead of the head size. */
static float attention_scale(const model_hparams *hp)
{
    bool is_27b = (hp->arch == MODEL_ARCH_GEMMA2 && hp->n_layer == 46) ||
                  (hp->arch == MODEL_ARCH_GEMMA3 && hp->n_layer == 62);
    if (is_27b)
        return 1.0f / sqrtf((float)hp->n_embd / (float)hp->n_head);
    return 1.0f / sqrtf((float)hp->head_dim_k);
}

/* Gemma 4: the layer pattern and each layer's sizes. */
static int read_gemma4_layers(key_reader *r, model_hparams *hp, const layer_sizes *ls, el_err *err)
{
    int swa[MODEL_MAX_LAYERS];
    if (read_per_layer(r, "attention.sliding_window_pattern", true, 0, 1, hp->n_layer, swa, err) < 0)
        return -1;
    int dk_swa = 0, dv_swa = 0;
    if (read_int(r, "attention.key_length_swa", true, 1, MAX_HEAD_DIM, &dk_swa, err) < 0 ||
        read_int(r, "attention.value_length_swa", true, 1, MAX_HEAD_DIM, &dv_swa, err) < 0)
        return -1;
    if (dk_swa != dv_swa || hp->head_dim_k != hp->head_dim_v)
        return el_fail(err, "metadata: %s needs keys and values of one size (%d/%d full, %d/%d sliding)", r->arch,
                       hp->head_dim_k, hp->head_dim_v, dk_swa, dv_swa);
    hp->n_rot_swa = dk_swa;
    if (read_int(r, "rope.dimension_count_swa", false, 2, MAX_HEAD_DIM, &hp->n_rot_swa, err) < 0)
        return -1;
    if (hp->n_rot_swa % 2 != 0 || hp->n_rot_swa > dk_swa)
        return el_fail(err, "metadata %s.rope.dimension_count_swa = %d must be even and at most the head size %d",
                       r->arch, hp->n_rot_swa, dk_swa);
    int shared = 0;
    if (read_int(r, "attention.shared_kv_layers", false, 0, hp->n_layer - 1, &shared, err) < 0)
        return -1;
    hp->n_layer_kv = hp->n_layer - shared;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer_hparams *l = &hp->layer[il];
        l->swa = swa[il] != 0;
        l->n_head_kv = ls->n_head_kv[il];
        l->head_dim_k = l->head_dim_v = l->swa ? dk_swa : hp->head_dim_k;
        l->n_ff = ls->n_ff[il];
        l->n_rot = l->swa ? hp->n_rot_swa : hp->n_rot;
        l->kv_layer = il;
        if (!l->swa)
            hp->rope_freq_factors = true;
    }
    return 0;
}

/* Layers past n_layer_kv read the cache of the last earlier layer of their kind
 * (llama.cpp: n_layer_kv - 2 for sliding layers, n_layer_kv - 1 for full ones). */
static int link_shared_kv(key_reader *r, model_hparams *hp, el_err *err)
{
    for (int il = hp->n_layer_kv; il < hp->n_layer; il++) {
        model_layer_hparams *l = &hp->layer[il];
        int src = hp->n_layer_kv - (l->swa ? 2 : 1);
        if (src < 0)
            return el_fail(err, "metadata %s.attention.shared_kv_layers: layer %d has no earlier layer to share with",
                           r->arch, il);
        const model_layer_hparams *s = &hp->layer[src];
        if (s->swa != l->swa || s->n_head_kv != l->n_head_kv || s->head_dim_k != l->head_dim_k)
            return el_fail(err, "metadata: layer %d would share the KV cache of layer %d, which has another shape",
                           il, src);
        l->kv_layer = src;
    }
    return 0;
}

static int read_gemma4(key_reader *r, model_hparams *hp, const layer_sizes *ls, el_err *err)
{
    hp->final_softcap = 30.0f;
    if (read_int(r, "attention.sliding_window", true, 0, MAX_CTX, &hp->sliding_window, err) < 0 ||
        read_float(r, "final_logit_softcapping", false, 0.0, 1e6, &hp->final_softcap, err) < 0 ||
        read_int(r, "embedding_length_per_layer_input", true, 0, MAX_EMBD, &hp->n_embd_per_layer, err) < 0 ||
        read_int(r, "expert_count", false, 0, 4096, &hp->n_expert, err) < 0 ||
        read_int(r, "expert_used_count", false, 0, 4096, &hp->n_expert_used, err) < 0 ||
        read_int(r, "expert_feed_forward_length", false, 0, MAX_FF, &hp->n_ff_exp, err) < 0)
        return -1;
    if (read_gemma4_layers(r, hp, ls, err) < 0 || link_shared_kv(r, hp, err) < 0)
        return -1;
    hp->v_norm = true;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer_hparams *l = &hp->layer[il];
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", il);
        l->v_from_k = l->kv_layer == il && !gguf_find_tensor(r->f, name);
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", il);
        l->moe = gguf_find_tensor(r->f, name) != NULL;
        if (l->moe && (hp->n_expert < 1 || hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert ||
                       hp->n_ff_exp < 1))
            return el_fail(err, "layer %d has a mixture of experts, but metadata %s.expert_count = %d, "
                                "expert_used_count = %d, expert_feed_forward_length = %d do not describe one",
                           il, r->arch, hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    }
    return 0;
}

/* EmbeddingGemma: bidirectional, pooled, optionally projected by two dense layers
 * (n_embd -> n_dense -> n_embd; llama.cpp asserts those widths). */
static int read_embedding(key_reader *r, model_hparams *hp, el_err *err)
{
    hp->causal = false;
    if (read_int(r, "attention.sliding_window_pattern", false, 1, MAX_LAYERS, &hp->swa_pattern, err) < 0)
        return -1;
    int pooling = 0;
    if (read_int(r, "pooling_type", true, 0, 3, &pooling, err) < 0)
        return -1;
    hp->pooling = (enum model_pooling)pooling;
    int d2_in = 0, d2_out = 0, d3_in = 0, d3_out = 0;
    if (read_int(r, "dense_2_feat_in", false, 0, MAX_FF, &d2_in, err) < 0 ||
        read_int(r, "dense_2_feat_out", false, 0, MAX_FF, &d2_out, err) < 0 ||
        read_int(r, "dense_3_feat_in", false, 0, MAX_FF, &d3_in, err) < 0 ||
        read_int(r, "dense_3_feat_out", false, 0, MAX_FF, &d3_out, err) < 0)
        return -1;
    if ((d2_in && d2_in != hp->n_embd) || (d3_out && d3_out != hp->n_embd) || d2_out != d3_in)
        return el_fail(err, "metadata %s.dense_*_feat_*: %d -> %d, %d -> %d do not chain from and back to "
                            "embedding_length %d", r->arch, d2_in, d2_out, d3_in, d3_out, hp->n_embd);
    hp->n_dense = d2_out;
    return 0;
}

/* Gemma 3n as llama.cpp loads it: the sliding pattern from the metadata (4 sliding
 * layers of every 5 without it), KV for the first 20 layers (or as shared_kv_layers
 * says), activation sparsity on the first 10 layers at mean + 1.6448533 std (the
 * normal 95th percentile; fixed in llama.cpp), AltUp streams and the per-layer input
 * width from the metadata, the LAuReL rank from its tensor. */
static int read_gemma3n(key_reader *r, model_hparams *hp, const layer_sizes *ls, el_err *err)
{
    hp->final_softcap = 30.0f;
    hp->n_altup = 4;
    hp->n_embd_per_layer = 256;
    if (read_int(r, "attention.sliding_window", true, 0, MAX_CTX, &hp->sliding_window, err) < 0 ||
        read_float(r, "final_logit_softcapping", false, 0.0, 1e6, &hp->final_softcap, err) < 0 ||
        read_int(r, "altup.num_inputs", false, 2, 16, &hp->n_altup, err) < 0 ||
        read_int(r, "altup.active_idx", false, 0, 15, &hp->altup_active, err) < 0 ||
        read_int(r, "embedding_length_per_layer_input", false, 1, MAX_EMBD, &hp->n_embd_per_layer, err) < 0)
        return -1;
    if (hp->altup_active >= hp->n_altup)
        return el_fail(err, "metadata %s.altup.active_idx = %d is not one of the %d streams", r->arch,
                       hp->altup_active, hp->n_altup);
    const gguf_tensor *laurel = gguf_find_tensor(r->f, "blk.0.laurel_l.weight");
    hp->n_laurel = laurel && laurel->ne[1] >= 1 && laurel->ne[1] <= MAX_EMBD ? (int)laurel->ne[1] : 64;
    hp->n_layer_sparse = hp->n_layer < 10 ? hp->n_layer : 10;
    hp->sparsity_std_mul = 1.6448533535003662f;
    int shared = hp->n_layer > 20 ? hp->n_layer - 20 : 0;
    if (read_int(r, "attention.shared_kv_layers", false, 0, hp->n_layer - 1, &shared, err) < 0)
        return -1;
    hp->n_layer_kv = hp->n_layer - shared;
    hp->attn_scale = 1.0f;
    hp->v_norm = true;
    hp->n_rot_swa = hp->n_rot;
    int swa[MODEL_MAX_LAYERS];
    for (int il = 0; il < hp->n_layer; il++)
        swa[il] = il % 5 < 4;
    if (read_per_layer(r, "attention.sliding_window_pattern", false, 0, 1, hp->n_layer, swa, err) < 0)
        return -1;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer_hparams *l = &hp->layer[il];
        memset(l, 0, sizeof *l);
        l->swa = swa[il] != 0;
        l->n_head_kv = ls->n_head_kv[il];
        l->head_dim_k = hp->head_dim_k;
        l->head_dim_v = hp->head_dim_v;
        l->n_ff = ls->n_ff[il];
        l->n_rot = hp->n_rot;
        l->kv_layer = il;
    }
    return link_shared_kv(r, hp, err);
}

static int read_gemma_extras(key_reader *r, model_hparams *hp, el_err *err)
{
    if (hp->arch == MODEL_ARCH_GEMMA2) {
        hp->sliding_window = 4096;
        hp->swa_pattern = 2;
        hp->attn_softcap = 50.0f;
        hp->final_softcap = 30.0f;
        if (read_int(r, "attention.sliding_window", false, 0, MAX_CTX, &hp->sliding_window, err) < 0 ||
            read_float(r, "attn_logit_softcapping", false, 0.0, 1e6, &hp->attn_softcap, err) < 0 ||
            read_float(r, "final_logit_softcapping", false, 0.0, 1e6, &hp->final_softcap, err) < 0)
            return -1;
    } else if (hp->arch == MODEL_ARCH_GEMMA3 || hp->arch == MODEL_ARCH_GEMMA_EMBEDDING) {
        hp->swa_pattern = 6;
        if (read_int(r, "attention.sliding_window", true, 0, MAX_CTX, &hp->sliding_window, err) < 0)
            return -1;
    }
    if (hp->arch == MODEL_ARCH_GEMMA_EMBEDDING)
        return read_embedding(r, hp, err);
    return 0;
}

int model_hparams_from_gguf(const gguf_file *f, model_hparams *hp, el_err *err)
{
    memset(hp, 0, sizeof *hp);
    hp->swa_pattern = 1;
    hp->causal = true;
    if (read_arch(f, hp, err) < 0)
        return -1;
    key_reader r = {.f = f, .arch = model_arch_name(hp->arch)};
    layer_sizes ls;
    if (read_int(&r, "context_length", true, 1, MAX_CTX, &hp->n_ctx_train, err) < 0 ||
        read_int(&r, "embedding_length", true, 1, MAX_EMBD, &hp->n_embd, err) < 0 ||
        read_int(&r, "block_count", true, 1, MAX_LAYERS, &hp->n_layer, err) < 0 ||
        read_per_layer(&r, "feed_forward_length", true, 1, MAX_FF, hp->n_layer, ls.n_ff, err) < 0)
        return -1;
    bool per_layer_sizes = hp->arch == MODEL_ARCH_GEMMA4 || hp->arch == MODEL_ARCH_GEMMA3N;
    if (!per_layer_sizes && require_uniform(&r, "feed_forward_length", ls.n_ff, hp->n_layer, err) < 0)
        return -1;
    hp->n_ff = max_of(ls.n_ff, hp->n_layer);
    if (read_attention(&r, hp, &ls, err) < 0 || read_rope(&r, hp, err) < 0 || read_gemma_extras(&r, hp, err) < 0)
        return -1;
    if (hp->arch == MODEL_ARCH_GEMMA4) {
        if (read_gemma4(&r, hp, &ls, err) < 0)
            return -1;
    } else if (hp->arch == MODEL_ARCH_GEMMA3N) {
        if (read_gemma3n(&r, hp, &ls, err) < 0)
            return -1;
    } else {
        model_hparams_uniform_layers(hp);
    }
    if ((int64_t)hp->n_head * hp->head_dim_k > MAX_EMBD * 4 || (int64_t)hp->n_head * hp->head_dim_v > MAX_EMBD * 4 ||
        (int64_t)hp->n_embd_per_layer * hp->n_layer > MAX_FF)
        return el_fail(err, "metadata: %d heads of %d values are too many", hp->n_head, hp->head_dim_k);
    hp->attn_scale = hp->arch == MODEL_ARCH_GEMMA4 || hp->arch == MODEL_ARCH_GEMMA3N ? 1.0f : attention_scale(hp);
    return read_vocab_size(f, hp, err);
}

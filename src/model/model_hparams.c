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
    return hp->sliding_window > 0 && hp->swa_pattern > 1 && il % hp->swa_pattern < hp->swa_pattern - 1;
}

/* Limits well above any real model, so that sizes derived from them cannot overflow. */
enum {
    MAX_EMBD = 65536,
    MAX_LAYERS = 1024,
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
        return el_fail(err, "architecture '%.*s' is not supported (llama, gemma, gemma2, gemma3)", n, name.ptr);
    }
    hp->arch = (enum model_arch)arch;
    return 0;
}

static int read_attention(key_reader *r, model_hparams *hp, el_err *err)
{
    if (read_int(r, "attention.head_count", true, 1, MAX_HEADS, &hp->n_head, err) < 0)
        return -1;
    hp->n_head_kv = hp->n_head;
    if (read_int(r, "attention.head_count_kv", false, 1, MAX_HEADS, &hp->n_head_kv, err) < 0)
        return -1;
    if (hp->n_head % hp->n_head_kv != 0)
        return el_fail(err, "metadata %s.attention.head_count_kv = %d does not divide head_count = %d", r->arch,
                       hp->n_head_kv, hp->n_head);
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
    if (hp->arch == MODEL_ARCH_GEMMA3) {
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
    } else if (hp->arch == MODEL_ARCH_GEMMA3) {
        hp->swa_pattern = 6;
        if (read_int(r, "attention.sliding_window", true, 0, MAX_CTX, &hp->sliding_window, err) < 0)
            return -1;
    }
    return 0;
}

int model_hparams_from_gguf(const gguf_file *f, model_hparams *hp, el_err *err)
{
    memset(hp, 0, sizeof *hp);
    hp->swa_pattern = 1;
    if (read_arch(f, hp, err) < 0)
        return -1;
    key_reader r = {.f = f, .arch = model_arch_name(hp->arch)};
    if (read_int(&r, "context_length", true, 1, MAX_CTX, &hp->n_ctx_train, err) < 0 ||
        read_int(&r, "embedding_length", true, 1, MAX_EMBD, &hp->n_embd, err) < 0 ||
        read_int(&r, "block_count", true, 1, MAX_LAYERS, &hp->n_layer, err) < 0 ||
        read_int(&r, "feed_forward_length", true, 1, MAX_FF, &hp->n_ff, err) < 0)
        return -1;
    if (read_attention(&r, hp, err) < 0 || read_rope(&r, hp, err) < 0 || read_gemma_extras(&r, hp, err) < 0)
        return -1;
    if ((int64_t)hp->n_head * hp->head_dim_k > MAX_EMBD * 4 || (int64_t)hp->n_head * hp->head_dim_v > MAX_EMBD * 4)
        return el_fail(err, "metadata: %d heads of %d values are too many", hp->n_head, hp->head_dim_k);
    hp->attn_scale = attention_scale(hp);
    return read_vocab_size(f, hp, err);
}

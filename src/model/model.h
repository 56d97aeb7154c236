/* Transformer architectures over GGUF weights: Gemma 1/2/3 and llama.
 *
 * A model is loaded once (weights stay memory-mapped) and then evaluated on
 * batches of tokens that may belong to different sequences: each token carries
 * its position and sequence id, and the KV cache keeps one row of cells per
 * sequence. Prompt processing and multi-user decoding are the same call. */
#ifndef ELLIOTT_MODEL_H
#define ELLIOTT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "gguf/gguf.h"

enum model_arch {
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_GEMMA,
    MODEL_ARCH_GEMMA2,
    MODEL_ARCH_GEMMA3,
    MODEL_ARCH_COUNT
};

/* "gemma2" -> MODEL_ARCH_GEMMA2; -1 if unknown. */
int model_arch_from_name(const char *name, size_t len);
const char *model_arch_name(enum model_arch arch);

/* Everything the forward pass reads from the metadata, after llama.cpp's defaults
 * for absent keys have been applied. */
typedef struct model_hparams {
    enum model_arch arch;
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim_k; /* attention.key_length */
    int head_dim_v; /* attention.value_length */
    int n_ff;
    int n_rot;      /* rope.dimension_count */
    float rms_eps;
    float rope_base;      /* global layers */
    float rope_base_swa;  /* sliding-window layers (gemma3) */
    float rope_freq_scale;/* 1 / linear scaling factor, global layers */
    float rope_freq_scale_swa; /* the same for sliding-window layers (gemma3: 1) */
    float attn_scale;     /* multiplies q k^T */
    float attn_softcap;   /* 0: none */
    float final_softcap;  /* 0: none */
    int sliding_window;   /* 0: none */
    int swa_pattern;      /* layer l uses the window iff l % swa_pattern < swa_pattern - 1 */
} model_hparams;

/* Reads the hyperparameters from "<arch>.*" metadata, applying llama.cpp's defaults,
 * and checks them for sanity (positive, bounded, head counts dividing). n_vocab comes
 * from tokenizer.ggml.tokens, else from token_embd.weight. */
int model_hparams_from_gguf(const gguf_file *f, model_hparams *hp, el_err *err);
/* Whether layer il attends through the sliding window. */
bool model_layer_is_swa(const model_hparams *hp, int il);

typedef struct model model;

typedef struct model_load_options {
    bool mlock; /* pin the weights in memory */
} model_load_options;

/* Opens, validates (every expected tensor present with the right shape and a
 * supported type) and prepares a model. options may be NULL. */
model *model_load(const char *path, const model_load_options *options, el_err *err);
/* The same for a GGUF image in memory that outlives the model (an embedded model). */
model *model_load_memory(const void *data, size_t size, el_err *err);
void model_free(model *m);

const model_hparams *model_hparams_of(const model *m);
/* The file the model came from: the tokenizer and chat template read its metadata. */
const gguf_file *model_gguf(const model *m);
/* Bytes of weights a single decode step reads (for bandwidth figures). */
uint64_t model_weight_bytes(const model *m);

/* Tensors an architecture expects, for the loader's validation and for writing
 * new models: calls fn once per tensor with its name and shape (ne[0] contiguous).
 * `quantizable` is false for norms, which stay F32. */
typedef int (*model_tensor_fn)(void *ctx, const char *name, int n_dims, const int64_t *ne,
                               bool quantizable, el_err *err);
int model_for_each_tensor(const model_hparams *hp, model_tensor_fn fn, void *ctx, el_err *err);

/* ---- KV cache ----------------------------------------------------------------- */

typedef struct kv_cache kv_cache;

/* n_seq sequences of up to n_ctx positions each, F16. */
kv_cache *kv_cache_create(const model *m, int n_seq, int n_ctx, el_err *err);
void kv_cache_free(kv_cache *kv);
int kv_cache_n_ctx(const kv_cache *kv);
int kv_cache_n_seq(const kv_cache *kv);
/* Forgets positions >= n_keep of a sequence (n_keep 0 clears it). Memory that held
 * forgotten positions is zeroed when wipe is true. */
void kv_cache_truncate(kv_cache *kv, int seq, int n_keep, bool wipe);
/* Positions a sequence currently holds. */
int kv_cache_seq_len(const kv_cache *kv, int seq);
/* Makes sequence dst hold positions [0, n) of src (n <= src's length), as if it
 * had evaluated the same tokens: how several answers share one prompt evaluation. */
int kv_cache_copy_prefix(kv_cache *kv, int src, int dst, int n, el_err *err);

/* ---- evaluation ---------------------------------------------------------------- */

typedef struct model_batch {
    int n_tokens;
    const int32_t *token;
    const int32_t *pos;     /* a sequence's tokens come in order, and its first token in
                               this batch is at kv_cache_seq_len(seq) */
    const int32_t *seq;     /* 0 <= seq < kv_cache_n_seq */
    const bool *want_logits;/* NULL: only the batch's last token */
} model_batch;

/* Scratch for evaluating batches of up to max_batch tokens with a given pool. */
typedef struct model_ctx model_ctx;

model_ctx *model_ctx_create(const model *m, int max_batch, threadpool *pool, el_err *err);
void model_ctx_free(model_ctx *ctx);

/* Evaluates a batch: appends its keys and values to the cache and writes one row of
 * n_vocab logits for each token that wants them, in batch order. Fails (cache
 * untouched) on a token id, position or sequence out of range. */
int model_forward(model_ctx *ctx, kv_cache *kv, const model_batch *batch, float *logits, el_err *err);

/* ---- random-weight models (tests, benchmarks) ----------------------------------- */

/* Real model shapes ("gemma-2b", "gemma3-1b", ...) and small test shapes ("tiny",
 * "tiny-mha"), by index; NULL past the end. */
const char *model_shape_name(int i);

typedef struct model_random_options {
    enum model_arch arch;
    const char *shape;      /* model_shape_name */
    uint32_t type;          /* weight type (enum gguf_type); norms stay F32 */
    const char *vocab_path; /* GGUF whose tokenizer.* keys are copied; NULL: no tokenizer */
    int n_vocab;            /* vocabulary size when vocab_path is NULL */
    uint64_t seed;          /* same seed, same bytes */
    int sliding_window;     /* 0: the shape's default */
} model_random_options;

/* Writes a model with random weights (scaled so that activations stay near unit size),
 * streaming tensor by tensor. */
int model_write_random(const char *path, const model_random_options *opt, el_err *err);

#endif

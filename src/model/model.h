/* Transformer architectures over GGUF weights: Gemma 1/2/3/3n/4, EmbeddingGemma and llama.
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
    MODEL_ARCH_GEMMA4,
    MODEL_ARCH_GEMMA_EMBEDDING,
    MODEL_ARCH_GEMMA3N,
    MODEL_ARCH_COUNT
};

/* "gemma2" -> MODEL_ARCH_GEMMA2; -1 if unknown. */
int model_arch_from_name(const char *name, size_t len);
const char *model_arch_name(enum model_arch arch);

enum { MODEL_MAX_LAYERS = 512 };

/* How an embedding is pooled from a sequence's hidden states (llama.cpp's
 * pooling_type values). */
enum model_pooling {
    MODEL_POOLING_NONE = 0,
    MODEL_POOLING_MEAN = 1,
    MODEL_POOLING_CLS = 2,  /* the first token */
    MODEL_POOLING_LAST = 3, /* the last token */
};

/* What may differ from one layer to the next (Gemma 4: sliding and full layers of
 * different head sizes and KV head counts, double-wide MLPs, layers that read an
 * earlier layer's keys and values, mixture-of-experts FFNs). */
typedef struct model_layer_hparams {
    bool swa;       /* attends through the sliding window */
    bool v_from_k;  /* no attn_v: the values are the keys' projection (Gemma 4 full layers) */
    bool moe;       /* a mixture-of-experts FFN beside the dense one */
    int n_head_kv;
    int head_dim_k;
    int head_dim_v;
    int n_ff;
    int n_rot;      /* dimensions rotated by RoPE */
    int kv_layer;   /* the layer whose cache this layer reads: itself unless KV is shared */
} model_layer_hparams;

/* Everything the forward pass reads from the metadata, after llama.cpp's defaults
 * for absent keys have been applied. Scalars describing layers (n_head_kv, head_dim_*,
 * n_ff, n_rot) are those of the full-attention layers; layer[] has every layer's own. */
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
    int swa_pattern;      /* layer l uses the window iff l % swa_pattern < swa_pattern - 1 (gemma2/3) */
    int n_rot_swa;        /* rope.dimension_count_swa (gemma4) */
    bool rope_freq_factors; /* rope_freqs.weight divides the full layers' angles (gemma4) */
    bool v_norm;          /* values RMS-normalized without weight (gemma4) */
    int n_layer_kv;       /* layers from the start that own a KV cache; later ones share */
    int n_embd_per_layer; /* per-layer input width (gemma4 E2B/E4B); 0: none */
    int n_expert;         /* mixture of experts: experts, experts per token, expert FFN width */
    int n_expert_used;
    int n_ff_exp;
    bool causal;          /* false: a token attends to its whole sequence (gemma-embedding) */
    enum model_pooling pooling; /* the GGUF's pooling_type; NONE for generative models */
    int n_dense;          /* width of EmbeddingGemma's dense projection (dense_2 out); 0: none */
    int n_altup;          /* gemma3n: AltUp streams; 0: none */
    int altup_active;     /* the stream that goes through attention and FFN */
    int n_laurel;         /* LAuReL rank */
    int n_layer_sparse;   /* the first layers' FFN gates keep only values above mean + k std */
    float sparsity_std_mul; /* k */
    model_layer_hparams layer[MODEL_MAX_LAYERS];
} model_hparams;

/* Reads the hyperparameters from "<arch>.*" metadata, applying llama.cpp's defaults,
 * and checks them for sanity (positive, bounded, head counts dividing). n_vocab comes
 * from tokenizer.ggml.tokens, else from token_embd.weight. */
int model_hparams_from_gguf(const gguf_file *f, model_hparams *hp, el_err *err);
/* Whether layer il attends through the sliding window. */
bool model_layer_is_swa(const model_hparams *hp, int il);
/* Fills layer[] for an architecture whose layers all have the global sizes (every
 * one but gemma4), the sliding-window layers from swa_pattern. */
void model_hparams_uniform_layers(model_hparams *hp);

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

enum model_tensor_kind {
    MODEL_TENSOR_MATRIX, /* a matmul weight: quantizable */
    MODEL_TENSOR_TABLE,  /* rows looked up by token id (embeddings): quantizable */
    MODEL_TENSOR_ROUTER, /* a mixture-of-experts router: a matmul weight kept F32, as the converter keeps it */
    MODEL_TENSOR_VECTOR, /* norms, scales, rope factors: F32 */
};

typedef struct model_tensor_desc {
    const char *name;
    int n_dims;
    int64_t ne[4]; /* ne[0] contiguous; unused dimensions 1 */
    enum model_tensor_kind kind;
    bool optional; /* llama.cpp loads a model without it */
} model_tensor_desc;

/* Tensors an architecture expects (hp->layer[] filled), for the loader's validation
 * and for writing new models: calls fn once per tensor. */
typedef int (*model_tensor_fn)(void *ctx, const model_tensor_desc *t, el_err *err);
int model_for_each_tensor(const model_hparams *hp, model_tensor_fn fn, void *ctx, el_err *err);
/* The kind of a tensor by its name ("blk.3.ffn_gate_inp.weight"), whatever the
 * architecture: what quantize and inspect need to know. */
enum model_tensor_kind model_tensor_kind_of(const char *name);

/* ---- KV cache ----------------------------------------------------------------- */

typedef struct kv_cache kv_cache;

/* How the cache stores keys and values: half floats, or ggml's Q8_0 blocks (32
 * values sharing a half scale; about half the memory, with attention computed as
 * llama.cpp computes it for `-ctk q8_0 -ctv q8_0`). */
enum model_cache_type { MODEL_CACHE_F16, MODEL_CACHE_Q8_0 };

/* "f16" or "q8_0". */
const char *model_cache_type_name(enum model_cache_type type);
/* Parses a name model_cache_type_name gives; -1 with a message for another. */
int model_cache_type_parse(const char *name, enum model_cache_type *out, el_err *err);

/* n_seq sequences of up to n_ctx positions each. A Q8_0 cache needs every head
 * size to be a multiple of 32 (refused otherwise). */
kv_cache *kv_cache_create(const model *m, enum model_cache_type type, int n_seq, int n_ctx, el_err *err);
void kv_cache_free(kv_cache *kv);
enum model_cache_type kv_cache_type(const kv_cache *kv);
/* Bytes one position of one sequence takes in a cache of this model and type
 * (every layer that owns its keys and values); 0 where the type cannot hold the
 * model's heads (Q8_0 and a head size that is not a multiple of 32). */
size_t kv_cache_bytes_per_token(const model *m, enum model_cache_type type);
int kv_cache_n_ctx(const kv_cache *kv);
int kv_cache_n_seq(const kv_cache *kv);
/* Forgets positions >= n_keep of a sequence (n_keep 0 clears it). Memory that held
 * forgotten positions is zeroed when wipe is true, and its whole pages are given
 * back to the system (resident memory follows what the sequences hold). seq must be
 * one of the cache's sequences, here and in kv_cache_seq_len (an invariant:
 * base/invariant.h). */
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

/* Embeddings: for every sequence of the batch, its final hidden states (after the
 * output norm) pooled (MODEL_POOLING_NONE: as the model's GGUF says, which an embedding
 * model does and a generative one does not), through EmbeddingGemma's dense projection
 * when the model has one, and L2-normalized when normalize is true. Row s of out
 * (model_embedding_size floats) is sequence s; rows of sequences not in the batch are
 * untouched. Each sequence must be whole in the batch, starting at position 0 (its
 * cache row empty): a model without causal attention cannot continue a sequence. */
int model_embed(model_ctx *ctx, kv_cache *kv, const model_batch *batch, enum model_pooling pooling, bool normalize,
                float *out, el_err *err);
int model_embedding_size(const model *m);

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
    bool code_vocab;        /* CodeGemma's vocabulary: Gemma's <unused60>..<unused63> become the
                               fill-in-the-middle markers and the file separator */
} model_random_options;

/* Writes a model with random weights (scaled so that activations stay near unit size),
 * streaming tensor by tensor. */
int model_write_random(const char *path, const model_random_options *opt, el_err *err);

#endif

/* Inside the model layer only: the loaded model, the KV cache layout and the
 * table of tensors each architecture uses. */
#ifndef ELLIOTT_MODEL_INTERNAL_H
#define ELLIOTT_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/model.h"

typedef struct model_layer {
    kernels_matrix wq, wk, wv, wo;
    kernels_matrix ffn_gate, ffn_up, ffn_down;
    const float *attn_norm;
    const float *q_norm;         /* gemma3, gemma4 */
    const float *k_norm;         /* gemma3, gemma4 */
    const float *post_attn_norm; /* gemma2, gemma3, gemma4 */
    const float *ffn_norm;
    const float *post_ffw_norm;  /* gemma2, gemma3, gemma4 */
    const float *out_scale;      /* gemma4 layer_output_scale: one value; NULL: none */
    /* gemma4 mixture of experts, beside the dense FFN */
    kernels_matrix router;       /* ffn_gate_inp [n_embd -> n_expert] */
    const float *router_scale;   /* ffn_gate_inp.scale [n_embd] */
    const float *pre_ffw_norm_2, *post_ffw_norm_1, *post_ffw_norm_2;
    kernels_matrix gate_up_exps; /* n_expert matrices of 2 * n_ff_exp rows, gate rows first */
    kernels_matrix down_exps;    /* n_expert matrices of n_embd rows */
    const float *down_exps_scale;/* [n_expert] */
    /* gemma3n AltUp and LAuReL */
    kernels_matrix altup_correct_coef; /* [n_altup -> n_altup] */
    kernels_matrix altup_predict_coef; /* [n_altup -> n_altup^2] */
    kernels_matrix altup_router;       /* [n_embd -> n_altup] */
    const float *altup_correct_scale, *altup_router_norm;
    kernels_matrix laurel_l, laurel_r; /* [n_embd -> rank -> n_embd] */
    const float *laurel_post_norm;
    /* gemma3n and gemma4 per-layer inputs */
    kernels_matrix ple_gate;     /* inp_gate [n_embd -> n_embd_per_layer] */
    kernels_matrix ple_proj;     /* proj [n_embd_per_layer -> n_embd] */
    const float *ple_post_norm;
} model_layer;

struct model {
    gguf_file *file;
    model_hparams hp;
    /* token_embd: read a row per token; when tied it is also the output matrix and may
     * be repacked with it (then rows come through kernels_unpack_row) */
    kernels_matrix tok_embd;
    kernels_matrix output; /* output.weight, or token_embd when tied */
    const float *output_norm;
    const float *rope_freqs;          /* gemma4: divides the full layers' rope angles */
    const gguf_tensor *ple_tok_embd;  /* gemma4 per_layer_token_embd [n_embd_per_layer * n_layer] per token */
    size_t ple_tok_embd_row_bytes;
    kernels_matrix ple_model_proj;    /* per_layer_model_proj [n_embd -> n_embd_per_layer * n_layer] */
    const float *ple_proj_norm;
    kernels_matrix dense_2, dense_3;  /* EmbeddingGemma's projection after pooling */
    kernels_matrix altup_proj;        /* gemma3n: n_altup - 1 matrices [n_embd -> n_embd] */
    kernels_matrix altup_unembd_proj;
    model_layer *layers;
    float *norm_data; /* F32 copies of every vector weight, whatever their stored type */
    uint64_t weight_bytes;
};

/* Cells of one (layer, sequence, kv head) are contiguous by position, so that the
 * attention of one head streams its keys and values. Only layers that own a cache
 * (kv_layer == itself) have storage. */
typedef struct kv_layer {
    int n_head_kv, head_dim_k, head_dim_v; /* 0 heads: no storage (a layer sharing another's) */
    size_t k_row_bytes, v_row_bytes;       /* one position's keys or values of one head */
    size_t k_off, v_off;                   /* in bytes, into k and v */
} kv_layer;

struct kv_cache {
    enum model_cache_type type;
    int n_layer, n_seq, n_ctx;
    kv_layer *layers;
    uint8_t *k;
    uint8_t *v;
    size_t k_bytes, v_bytes; /* the mappings' sizes */
    int *len;  /* positions held, per sequence */
    int *next; /* model_forward's scratch for validating a batch */
};

static inline size_t kv_cell_index(const struct kv_cache *kv, int layer, int seq, int head, int pos)
{
    return ((size_t)seq * (size_t)kv->layers[layer].n_head_kv + (size_t)head) * (size_t)kv->n_ctx + (size_t)pos;
}

static inline void *kv_k_at(const struct kv_cache *kv, int layer, int seq, int head, int pos)
{
    return kv->k + kv->layers[layer].k_off + kv_cell_index(kv, layer, seq, head, pos) * kv->layers[layer].k_row_bytes;
}

static inline void *kv_v_at(const struct kv_cache *kv, int layer, int seq, int head, int pos)
{
    return kv->v + kv->layers[layer].v_off + kv_cell_index(kv, layer, seq, head, pos) * kv->layers[layer].v_row_bytes;
}

#endif

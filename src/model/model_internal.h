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
    const float *q_norm;         /* gemma3 */
    const float *k_norm;         /* gemma3 */
    const float *post_attn_norm; /* gemma2, gemma3 */
    const float *ffn_norm;
    const float *post_ffw_norm;  /* gemma2, gemma3 */
} model_layer;

struct model {
    gguf_file *file;
    model_hparams hp;
    const gguf_tensor *tok_embd;
    size_t tok_embd_row_bytes;
    kernels_matrix output; /* output.weight, or token_embd when tied */
    const float *output_norm;
    model_layer *layers;
    float *norm_data; /* F32 copies of every norm weight, whatever their stored type */
    uint64_t weight_bytes;
};

/* Cells of one (layer, sequence, kv head) are contiguous by position, so that the
 * attention of one head streams its keys and values. */
struct kv_cache {
    int n_layer, n_seq, n_ctx, n_head_kv, head_dim_k, head_dim_v;
    uint16_t *k;
    uint16_t *v;
    int *len;  /* positions held, per sequence */
    int *next; /* model_forward's scratch for validating a batch */
};

static inline size_t kv_cell_index(const struct kv_cache *kv, int layer, int seq, int head, int pos)
{
    return (((size_t)layer * (size_t)kv->n_seq + (size_t)seq) * (size_t)kv->n_head_kv + (size_t)head) *
               (size_t)kv->n_ctx + (size_t)pos;
}

static inline uint16_t *kv_k_at(const struct kv_cache *kv, int layer, int seq, int head, int pos)
{
    return kv->k + kv_cell_index(kv, layer, seq, head, pos) * (size_t)kv->head_dim_k;
}

static inline uint16_t *kv_v_at(const struct kv_cache *kv, int layer, int seq, int head, int pos)
{
    return kv->v + kv_cell_index(kv, layer, seq, head, pos) * (size_t)kv->head_dim_v;
}

#endif

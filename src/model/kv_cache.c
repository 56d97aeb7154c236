/* The key/value cache, F16 or Q8_0: one row of n_ctx cells per (layer, sequence, kv head). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model_internal.h"
#include "base/invariant.h"

/* Far above what fits in memory anyway; keeps the size arithmetic exact. */
enum { MAX_KV_SEQ = 4096, MAX_KV_CTX = 1 << 22 };

static void *kv_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void kv_unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

const char *model_cache_type_name(enum model_cache_type type)
{
    return type == MODEL_CACHE_Q8_0 ? "q8_0" : "f16";
}

int model_cache_type_parse(const char *name, enum model_cache_type *out, el_err *err)
{
    if (strcmp(name, "f16") == 0)
        *out = MODEL_CACHE_F16;
    else if (strcmp(name, "q8_0") == 0)
        *out = MODEL_CACHE_Q8_0;
    else
        return el_fail(err, "unknown KV cache type '%s' (f16 or q8_0)", name);
    return 0;
}

/* Bytes one position of one head takes: a half per value, or a Q8_0 block (a half
 * scale and 32 bytes) per 32 values; 0 where Q8_0 cannot hold head_dim values. */
static size_t row_bytes(enum model_cache_type type, int head_dim)
{
    if (type == MODEL_CACHE_F16)
        return (size_t)head_dim * sizeof(uint16_t);
    return head_dim % 32 == 0 ? kernels_q8_0_row_bytes(head_dim) : 0;
}

size_t kv_cache_bytes_per_token(const model *m, enum model_cache_type type)
{
    const model_hparams *hp = &m->hp;
    size_t bytes = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer_hparams *l = &hp->layer[il];
        if (l->kv_layer == il)
            bytes += (size_t)l->n_head_kv * (row_bytes(type, l->head_dim_k) + row_bytes(type, l->head_dim_v));
    }
    return bytes;
}

enum model_cache_type kv_cache_type(const kv_cache *kv)
{
    return kv->type;
}

/* Hands the whole pages inside [p, p + bytes) back to the kernel (they read as
 * zeros when touched again), so that a sequence cut short stops costing memory. */
static void release_pages(void *p, size_t bytes)
{
    long ps = sysconf(_SC_PAGESIZE);
    size_t page = ps > 0 ? (size_t)ps : 4096;
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

kv_cache *kv_cache_create(const model *m, enum model_cache_type type, int n_seq, int n_ctx, el_err *err)
{
    if (type != MODEL_CACHE_F16 && type != MODEL_CACHE_Q8_0)
        return el_fail(err, "KV cache: unknown type %d", (int)type), NULL;
    if (n_seq < 1 || n_seq > MAX_KV_SEQ)
        return el_fail(err, "KV cache: %d sequences is out of range [1, %d]", n_seq, MAX_KV_SEQ), NULL;
    if (n_ctx < 1 || n_ctx > MAX_KV_CTX)
        return el_fail(err, "KV cache: context of %d is out of range [1, %d]", n_ctx, MAX_KV_CTX), NULL;
    const model_hparams *hp = &m->hp;
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv)
        return el_fail(err, "out of memory"), NULL;
    kv->type = type;
    kv->n_layer = hp->n_layer;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->layers = calloc((size_t)hp->n_layer, sizeof *kv->layers);
    if (!kv->layers) {
        kv_cache_free(kv);
        return el_fail(err, "out of memory"), NULL;
    }
    /* Each term is below 2^12 * 2^10 * 2^22 * 2^13 = 2^57, so the running sums are
     * checked as they grow. */
    uint64_t k_total = 0, v_total = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer_hparams *l = &hp->layer[il];
        if (l->kv_layer != il)
            continue;
        kv_layer *c = &kv->layers[il];
        c->n_head_kv = l->n_head_kv;
        c->head_dim_k = l->head_dim_k;
        c->head_dim_v = l->head_dim_v;
        c->k_row_bytes = row_bytes(type, l->head_dim_k);
        c->v_row_bytes = row_bytes(type, l->head_dim_v);
        if (!c->k_row_bytes || !c->v_row_bytes) {
            el_fail(err, "KV cache: type %s needs head sizes that are multiples of 32; layer %d has %d and %d",
                    model_cache_type_name(type), il, l->head_dim_k, l->head_dim_v);
            kv_cache_free(kv);
            return NULL;
        }
        c->k_off = (size_t)k_total;
        c->v_off = (size_t)v_total;
        uint64_t cells = (uint64_t)n_seq * (uint64_t)l->n_head_kv * (uint64_t)n_ctx;
        k_total += cells * (uint64_t)c->k_row_bytes;
        v_total += cells * (uint64_t)c->v_row_bytes;
        if (k_total > SIZE_MAX / 8 || v_total > SIZE_MAX / 8) {
            kv_cache_free(kv);
            return el_fail(err, "KV cache: %d sequences of %d positions is too large", n_seq, n_ctx), NULL;
        }
    }
    /* Mapped, not reserved: untouched cells cost no memory until a sequence reaches
     * them, so that every sequence may be given the whole context while only what
     * the sequences hold is resident (and the kernel does not refuse a map larger
     * than memory that will never be filled). */
    kv->k_bytes = (size_t)k_total + sizeof(uint16_t);
    kv->v_bytes = (size_t)v_total + sizeof(uint16_t);
    kv->k = kv_map(kv->k_bytes);
    kv->v = kv_map(kv->v_bytes);
    kv->len = calloc((size_t)n_seq, sizeof *kv->len);
    kv->next = calloc((size_t)n_seq, sizeof *kv->next);
    if (!kv->k || !kv->v || !kv->len || !kv->next) {
        kv_cache_free(kv);
        el_fail(err, "KV cache: out of memory for %llu MiB", (unsigned long long)((k_total + v_total) >> 20));
        return NULL;
    }
    return kv;
}

void kv_cache_free(kv_cache *kv)
{
    if (!kv)
        return;
    free(kv->layers);
    kv_unmap(kv->k, kv->k_bytes);
    kv_unmap(kv->v, kv->v_bytes);
    free(kv->len);
    free(kv->next);
    free(kv);
}

int kv_cache_n_ctx(const kv_cache *kv)
{
    return kv->n_ctx;
}

int kv_cache_n_seq(const kv_cache *kv)
{
    return kv->n_seq;
}

int kv_cache_seq_len(const kv_cache *kv, int seq)
{
    if (NEVER(seq < 0 || seq >= kv->n_seq))
        return 0;
    return kv->len[seq];
}

void kv_cache_truncate(kv_cache *kv, int seq, int n_keep, bool wipe)
{
    if (NEVER(seq < 0 || seq >= kv->n_seq || n_keep < 0))
        return;
    if (n_keep >= kv->len[seq]) /* nothing to forget */
        return;
    if (wipe) {
        int n_drop = kv->len[seq] - n_keep;
        for (int il = 0; il < kv->n_layer; il++) {
            const kv_layer *c = &kv->layers[il];
            for (int h = 0; h < c->n_head_kv; h++) {
                size_t k_bytes = (size_t)n_drop * c->k_row_bytes;
                size_t v_bytes = (size_t)n_drop * c->v_row_bytes;
                /* explicit_bzero: the bytes are gone before the pages go back */
                explicit_bzero(kv_k_at(kv, il, seq, h, n_keep), k_bytes);
                explicit_bzero(kv_v_at(kv, il, seq, h, n_keep), v_bytes);
                release_pages(kv_k_at(kv, il, seq, h, n_keep), k_bytes);
                release_pages(kv_v_at(kv, il, seq, h, n_keep), v_bytes);
            }
        }
    }
    kv->len[seq] = n_keep;
}

int kv_cache_copy_prefix(kv_cache *kv, int src, int dst, int n, el_err *err)
{
    if (src < 0 || src >= kv->n_seq || dst < 0 || dst >= kv->n_seq || src == dst)
        return el_fail(err, "kv cache: cannot copy sequence %d to %d", src, dst);
    if (n < 0 || n > kv->len[src])
        return el_fail(err, "kv cache: sequence %d holds %d positions, not %d", src, kv->len[src], n);
    for (int il = 0; il < kv->n_layer; il++) {
        const kv_layer *c = &kv->layers[il];
        for (int h = 0; h < c->n_head_kv; h++) {
            memcpy(kv_k_at(kv, il, dst, h, 0), kv_k_at(kv, il, src, h, 0),
                   (size_t)n * c->k_row_bytes);
            memcpy(kv_v_at(kv, il, dst, h, 0), kv_v_at(kv, il, src, h, 0),
                   (size_t)n * c->v_row_bytes);
        }
    }
    /* what dst held beyond n is stale: forget it (wiped) */
    kv_cache_truncate(kv, dst, n, true);
    kv->len[dst] = n;
    return 0;
}

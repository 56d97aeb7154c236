/* Q4_0 repacked into groups of 16 rows (kernels_repack_matrix): the layout, the
 * repacking itself and the scalar reference kernels over it.
 *
 * With the GGUF layout a vector lane holds part of one block of one row, so every
 * block of every row ends in its own int-to-float conversion and scaling. Here a
 * lane is a row: 16 rows' block b sit side by side, so that one vpdpbusd multiplies
 * four values of 16 rows by the same four (broadcast) activations, and one
 * conversion and FMA finish a block of 16 rows (kernels_q4_0_r16_avx512.c).
 *
 * A group of 16 rows keeps the bytes the 16 rows had (16 * row_bytes), as nb group
 * blocks of 288 bytes, group block b holding block b of each row in two parts, laid
 * out in pairs of blocks so that the nibbles start cache lines (kernels_r16_pairs.h):
 *   body: uint8 qs[4][16][4]   qs[i][r] = row r's nibble bytes 4i..4i+3
 *   tail: uint16 d[16]         row r's half scale in d[r]
 * Nibble byte j of a row holds value j (low nibble) and value j + 16 (high one).
 *
 * Activation record per block (40 bytes): int8 qs[32] (the Q8_0 values), int32 off
 * (-8 times their sum: turns the unsigned nibbles u into u - 8), float d (the Q8_0
 * scale, rounded to half as Q8_0 stores it). */
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_q4_0_r16.h"
#include "kernels/kernels_r16_pairs.h"

_Static_assert(sizeof(kq_r16_act) == 40, "activation record is 40 bytes");
_Static_assert(KQ_R16_GROUP_BLOCK_BYTES == KQ_R16_ROWS * sizeof(kq_block_q4_0), "a group block is 16 blocks");
_Static_assert((int)KQ_R16_SCALE_BYTES == (int)R16_TAIL_BYTES && KQ_R16_QS_BYTES % 64 == 0, "nibbles in whole lines, scales a tail");

size_t kq_r16_act_row_bytes(int64_t n)
{
    return (size_t)(n / KQ_QK) * sizeof(kq_r16_act);
}

static void act_fill(kq_r16_act *rec, const kq_block_q8_0 *q)
{
    int32_t sum = 0;
    for (int j = 0; j < KQ_QK; j++) {
        rec->qs[j] = q->qs[j];
        sum += q->qs[j];
    }
    rec->off = -8 * sum;
    rec->d = el_fp16_to_f32(q->d);
}

/* Each block quantized as Q8_0 by the selected implementation (the same bytes on every
 * one), then spread into its record. */
void kq_r16_convert(const float *src, void *dst, int64_t n)
{
    kq_r16_act *rec = dst;
    for (int64_t b = 0; b < n / KQ_QK; b++) {
        kq_block_q8_0 q;
        kq_act_convert(GGUF_TYPE_Q8_0, src + b * KQ_QK, &q, KQ_QK);
        act_fill(&rec[b], &q);
    }
}

/* ---- layout ------------------------------------------------------------------------ */

static void block_to_group(const kq_block_q4_0 *blk, int r, uint8_t *body, uint8_t *tail)
{
    memcpy(tail + 2 * r, &blk->d, 2);
    for (int i = 0; i < 4; i++)
        memcpy(body + 64 * i + 4 * r, blk->qs + 4 * i, 4);
}

/* Row r's block b of a group of nb blocks. */
static void group_to_block(const uint8_t *group, int64_t nb, int64_t b, int r, kq_block_q4_0 *blk)
{
    size_t body, tail;
    r16_block_offsets(r16_lead(group), KQ_R16_QS_BYTES, nb, b, &body, &tail);
    memcpy(&blk->d, group + tail + 2 * r, 2);
    for (int i = 0; i < 4; i++)
        memcpy(blk->qs + 4 * i, group + body + 64 * i + 4 * r, 4);
}

/* Block by block in the group's byte order: the writes (into the file mapping's
 * copy-on-write pages) go out nearly in order. */
void kq_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group)
{
    size_t lead = r16_lead(group);
    for (int64_t b = 0; b < nb; b++) {
        size_t body, tail;
        r16_block_offsets(lead, KQ_R16_QS_BYTES, nb, b, &body, &tail);
        for (int r = 0; r < KQ_R16_ROWS; r++) {
            const kq_block_q4_0 *row = (const kq_block_q4_0 *)((const uint8_t *)rows + (size_t)r * row_bytes);
            block_to_group(&row[b], r, (uint8_t *)group + body, (uint8_t *)group + tail);
        }
    }
}

void kq_r16_unpack_row(const void *group, int64_t nb, int r, void *row)
{
    kq_block_q4_0 *out = row;
    for (int64_t b = 0; b < nb; b++)
        group_to_block(group, nb, b, r, &out[b]);
}

/* ---- scalar reference kernels --------------------------------------------------------- */

/* One Q4_0 x Q8_0 block sum, scaled as the GGUF layout's scalar dot does. */
static float block_dot(const kq_block_q4_0 *blk, const kq_r16_act *x)
{
    int32_t s = x->off;
    for (int j = 0; j < KQ_QK / 2; j++) {
        s += (blk->qs[j] & 0x0f) * x->qs[j];
        s += (blk->qs[j] >> 4) * x->qs[j + KQ_QK / 2];
    }
    return (float)s * (el_fp16_to_f32(blk->d) * x->d);
}

#define R16_BLOCK kq_block_q4_0
#define R16_ACT kq_r16_act
#define R16_BLOCK_VALUES KQ_QK
#define R16_GROUP_BLOCK_BYTES KQ_R16_GROUP_BLOCK_BYTES
#define R16_GROUP_TO_BLOCK(group, nb, b, r, blk) group_to_block((group), (nb), (b), (r), (blk))
#include "kernels/kernels_r16_scalar.h"

static kq_type_ops r16_ops = {
    .type = GGUF_TYPE_Q4_0,
    .act_type = GGUF_TYPE_Q8_0,
    .scalar =
        {
            .dot = dot_scalar,
            .dot_tile = tile_scalar,
            .act_convert = kq_r16_convert,
            .act_row_bytes = kq_r16_act_row_bytes,
            .tile_cols = 4,
        },
};
static pthread_once_t r16_once = PTHREAD_ONCE_INIT;

static void r16_fill_simd(void)
{
    r16_ops.avx512 = kq_q4_0_r16_avx512();
    r16_ops.avx_vnni = kq_q4_0_r16_avx_vnni();
    r16_ops.avx2 = kq_q4_0_r16_avx2();
}

const kq_type_ops *kq_ops_q4_0_r16(void)
{
    pthread_once(&r16_once, r16_fill_simd);
    return &r16_ops;
}

/* Q8_0 repacked into groups of 16 rows (kernels_repack_matrix): the layout, the
 * repacking itself and the scalar reference kernels over it.
 *
 * In the GGUF layout a block is 34 bytes, so a row's blocks straddle cache lines and
 * every block of every row ends in its own int-to-float conversion and scaling. Here,
 * as for Q4_0 (kernels_q4_0_r16.c), a vector lane is a row: 16 rows' block b sit side
 * by side, so that one vpdpbusd multiplies four values of 16 rows by the same four
 * (broadcast) activations, and one conversion and one FMA finish a block of 16 rows.
 *
 * The values are stored plus 128, as unsigned bytes: vpdpbusd multiplies unsigned by
 * signed bytes, and (w + 128) * x summed over a block is the block's dot product plus
 * 128 times the sum of x, which the activation record carries (negated) as the sum's
 * starting value. The weights then go into vpdpbusd as loaded, with no sign trick.
 *
 * A group of 16 rows keeps the bytes the rows had (16 * row_bytes = 544 * nb). A
 * group block b is a body of 8 lines and a 32-byte tail:
 *   uint8  qs[8][16][4]    qs[i][r] = row r's values 4i..4i+3, + 128
 *   uint16 d[16]           row r's half scale in d[r]
 * and the blocks go in pairs of 1088 bytes, 17 lines, the bodies on whole lines
 * whether the group starts a line or 32 bytes into one (GGUF aligns tensors to 32
 * bytes only): the orders of kernels_r16_pairs.h, as for Q4_0.
 *
 * Activation record per block (40 bytes): int8 qs[32] (the Q8_0 values), int32 off
 * (-128 times their sum), float d (the Q8_0 scale, rounded to half as Q8_0 stores it). */
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_q8_0_r16.h"

_Static_assert(sizeof(k8_r16_act) == 40, "activation record is 40 bytes");
_Static_assert(K8_R16_PAIR_BYTES == 2 * K8_R16_ROWS * sizeof(kq_block_q8_0), "a pair is 32 blocks");
_Static_assert(K8_R16_PAIR_BYTES % 64 == 0 && K8_R16_QS_BYTES % 64 == 0 && (int)K8_R16_SCALE_BYTES == (int)R16_TAIL_BYTES,
               "a block is a body of whole lines and a tail of kernels_r16_pairs.h");

size_t k8_r16_act_row_bytes(int64_t n)
{
    return (size_t)(n / KQ_QK) * sizeof(k8_r16_act);
}

static void act_fill(k8_r16_act *rec, const kq_block_q8_0 *q)
{
    int32_t sum = 0;
    for (int j = 0; j < KQ_QK; j++) {
        rec->qs[j] = q->qs[j];
        sum += q->qs[j];
    }
    rec->off = -K8_R16_OFFSET * sum;
    rec->d = el_fp16_to_f32(q->d);
}

/* Each block quantized as Q8_0 by the selected implementation (the same bytes on every
 * one), then spread into its record. */
void k8_r16_convert(const float *src, void *dst, int64_t n)
{
    k8_r16_act *rec = dst;
    for (int64_t b = 0; b < n / KQ_QK; b++) {
        kq_block_q8_0 q;
        kq_act_convert(GGUF_TYPE_Q8_0, src + b * KQ_QK, &q, KQ_QK);
        act_fill(&rec[b], &q);
    }
}

/* ---- layout ------------------------------------------------------------------------ */

/* Adding 128 to four int8 values, or taking it off four stored bytes, modulo 256: the
 * top bit of each byte flipped. */
static uint32_t flip_offset(uint32_t four)
{
    return four ^ 0x80808080u;
}

static void block_to_group(const kq_block_q8_0 *blk, int r, uint8_t *scales, uint8_t *values)
{
    memcpy(scales + 2 * r, &blk->d, 2);
    for (int i = 0; i < KQ_QK / 4; i++) {
        uint32_t four;
        memcpy(&four, blk->qs + 4 * i, 4);
        four = flip_offset(four);
        memcpy(values + 64 * i + 4 * r, &four, 4);
    }
}

static void group_to_block(const uint8_t *scales, const uint8_t *values, int r, kq_block_q8_0 *blk)
{
    memcpy(&blk->d, scales + 2 * r, 2);
    for (int i = 0; i < KQ_QK / 4; i++) {
        uint32_t four;
        memcpy(&four, values + 64 * i + 4 * r, 4);
        four = flip_offset(four);
        memcpy(blk->qs + 4 * i, &four, 4);
    }
}

static void block_of_group(const uint8_t *group, int64_t nb, int64_t b, int r, kq_block_q8_0 *blk)
{
    size_t values, scales;
    r16_block_offsets(r16_lead(group), K8_R16_QS_BYTES, nb, b, &values, &scales);
    group_to_block(group + scales, group + values, r, blk);
}

/* Block by block: the writes (into the file mapping's copy-on-write pages) go out
 * nearly in order. */
void k8_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group)
{
    uint8_t *g = group;
    const size_t lead = r16_lead(group);
    for (int64_t b = 0; b < nb; b++) {
        size_t values_at, scales_at;
        r16_block_offsets(lead, K8_R16_QS_BYTES, nb, b, &values_at, &scales_at);
        uint8_t *scales = g + scales_at, *values = g + values_at;
        for (int r = 0; r < K8_R16_ROWS; r++) {
            const kq_block_q8_0 *row = (const kq_block_q8_0 *)((const uint8_t *)rows + (size_t)r * row_bytes);
            block_to_group(&row[b], r, scales, values);
        }
    }
}

void k8_r16_unpack_row(const void *group, int64_t nb, int r, void *row)
{
    kq_block_q8_0 *out = row;
    for (int64_t b = 0; b < nb; b++)
        block_of_group(group, nb, b, r, &out[b]);
}

/* ---- scalar reference kernels --------------------------------------------------------- */

/* One block as the GGUF layout's scalar dot product computes it (the same bits). */
static float block_dot(const kq_block_q8_0 *blk, const k8_r16_act *x)
{
    int32_t s = 0;
    for (int j = 0; j < KQ_QK; j++)
        s += blk->qs[j] * x->qs[j];
    return (float)s * (el_fp16_to_f32(blk->d) * x->d);
}

#define R16_BLOCK kq_block_q8_0
#define R16_ACT k8_r16_act
#define R16_BLOCK_VALUES KQ_QK
#define R16_GROUP_BLOCK_BYTES (K8_R16_SCALE_BYTES + K8_R16_QS_BYTES)
#define R16_GROUP_TO_BLOCK(group, nb, b, r, blk) block_of_group((group), (nb), (b), (r), (blk))
#include "kernels/kernels_r16_scalar.h"

static kq_type_ops r16_ops = {
    .type = GGUF_TYPE_Q8_0,
    .act_type = GGUF_TYPE_Q8_0,
    .scalar =
        {
            .dot = dot_scalar,
            .dot_tile = tile_scalar,
            .act_convert = k8_r16_convert,
            .act_row_bytes = k8_r16_act_row_bytes,
            .tile_cols = 4,
        },
};
static pthread_once_t r16_once = PTHREAD_ONCE_INIT;

static void r16_fill_simd(void)
{
    r16_ops.avx512 = kq_q8_0_r16_avx512();
    r16_ops.avx_vnni = kq_q8_0_r16_avx_vnni();
    r16_ops.avx2 = kq_q8_0_r16_avx2();
}

const kq_type_ops *kq_ops_q8_0_r16(void)
{
    pthread_once(&r16_once, r16_fill_simd);
    return &r16_ops;
}

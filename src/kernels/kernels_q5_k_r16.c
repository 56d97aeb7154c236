/* Q5_K repacked into groups of 16 rows (kernels_repack_matrix): the layout, the
 * repacking itself and the scalar reference kernels over it.
 *
 * Q5_K is Q4_K with a fifth bit per value, so the layout is Q4_K's
 * (kernels_q4_k_r16.c) with the fifth bits between the scale words and the nibbles: a
 * vector lane is a row, and the scales and mins are decoded once per group block for
 * all 16 rows and every token of a tile (kernels_q5_k_r16_avx512.c).
 *
 * A group of 16 rows keeps the bytes the rows had (16 * row_bytes), as nb group
 * blocks of 2816 bytes (44 lines), group block b holding super-block b of each row:
 *   uint16 d[16], dmin[16]     row r's half scales in element r
 *   uint32 scales[3][16]       scales[k][r] = row r's packed scale bytes 4k..4k+3
 *   uint8  qh[8][16][4]        qh[i][r] = row r's fifth-bit bytes 4i..4i+3
 *   uint8  qs[4][8][16][4]     qs[c][i][r] = row r's nibble bytes 32c+4i..32c+4i+3
 * As in GGUF, nibble byte 32c + j holds value 64c + j (low nibble) and 64c + 32 + j
 * (high one), whose fifth bits are bits 2c and 2c + 1 of fifth-bit byte j: line i of
 * the fifth bits serves line i of every 64-value chunk. A group 32 bytes into a cache
 * line puts dmin last instead, as Q4_K's does (k5_r16_places_of), so that the scale
 * words, fifth bits and nibbles still lie on whole lines. */
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"
#include "kernels/kernels_q5_k_r16.h"

_Static_assert(K5_R16_GROUP_BLOCK_BYTES == K5_R16_ROWS * sizeof(kq_block_q5_K), "a group block is 16 blocks");
_Static_assert(K5_R16_GROUP_BLOCK_BYTES % 64 == 0 && K5_R16_QH % 64 == 0 && K5_R16_QS % 64 == 0,
               "a group block's parts are whole lines");

/* ---- layout ------------------------------------------------------------------------ */

static void block_to_group(const kq_block_q5_K *blk, int r, uint8_t *group_block)
{
    const kk_r16_places at = k5_r16_places_of(group_block);
    memcpy(group_block + KK_R16_D + 2 * r, &blk->d, 2);
    memcpy(group_block + at.dmin + 2 * r, &blk->dmin, 2);
    for (int k = 0; k < 3; k++)
        memcpy(group_block + at.scales + 4 * (K5_R16_ROWS * k + r), blk->scales + 4 * k, 4);
    for (int i = 0; i < KQ_QK_K / 32; i++)
        memcpy(group_block + at.qs + 4 * (K5_R16_ROWS * i + r), blk->qh + 4 * i, 4);
    for (int q = 0; q < KQ_QK_K / 8; q++) /* q = 8c + i: nibble bytes 4q..4q+3 */
        memcpy(group_block + at.qs + K5_R16_QH_BYTES + 4 * (K5_R16_ROWS * q + r), blk->qs + 4 * q, 4);
}

static void group_to_block(const uint8_t *group_block, int r, kq_block_q5_K *blk)
{
    const kk_r16_places at = k5_r16_places_of(group_block);
    memcpy(&blk->d, group_block + KK_R16_D + 2 * r, 2);
    memcpy(&blk->dmin, group_block + at.dmin + 2 * r, 2);
    for (int k = 0; k < 3; k++)
        memcpy(blk->scales + 4 * k, group_block + at.scales + 4 * (K5_R16_ROWS * k + r), 4);
    for (int i = 0; i < KQ_QK_K / 32; i++)
        memcpy(blk->qh + 4 * i, group_block + at.qs + 4 * (K5_R16_ROWS * i + r), 4);
    for (int q = 0; q < KQ_QK_K / 8; q++)
        memcpy(blk->qs + 4 * q, group_block + at.qs + K5_R16_QH_BYTES + 4 * (K5_R16_ROWS * q + r), 4);
}

/* Group block by group block: the writes (into the file mapping's copy-on-write
 * pages) go out in order. */
void k5_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group)
{
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *group_block = (uint8_t *)group + (size_t)b * K5_R16_GROUP_BLOCK_BYTES;
        for (int r = 0; r < K5_R16_ROWS; r++) {
            const kq_block_q5_K *row = (const kq_block_q5_K *)((const uint8_t *)rows + (size_t)r * row_bytes);
            block_to_group(&row[b], r, group_block);
        }
    }
}

void k5_r16_unpack_row(const void *group, int64_t nb, int r, void *row)
{
    kq_block_q5_K *out = row;
    for (int64_t b = 0; b < nb; b++)
        group_to_block((const uint8_t *)group + (size_t)b * K5_R16_GROUP_BLOCK_BYTES, r, &out[b]);
}

/* ---- scalar reference kernels --------------------------------------------------------- */

/* Row r's super-block against one record: integer sums per sub-block, scaled once per
 * super-block, as the GGUF layout's scalar dot (kernels_kquant.c) does; the same
 * float operations in the same order, so the two agree bit for bit. */
static float block_dot(const kq_block_q5_K *blk, const kk_r16_act *x)
{
    int32_t isum = 0, imins = 0;
    for (int s = 0; s < KK_R16_SUBS; s++) {
        uint8_t sc, m;
        kq_scale_min_k4(s, blk->scales, &sc, &m);
        int32_t dot = 0, sum = 0;
        for (int j = 0; j < 32; j++) {
            const uint8_t byte = blk->qs[32 * (s / 2) + j];
            const int nibble = s % 2 ? byte >> 4 : byte & 0x0f;
            const int code = nibble | ((blk->qh[j] >> s) & 1) << 4;
            dot += code * x->qs[32 * s + j];
            sum += x->qs[32 * s + j];
        }
        isum += sc * dot;
        imins += m * sum;
    }
    const float d = el_fp16_to_f32(blk->d) * x->d;
    const float dmin = el_fp16_to_f32(blk->dmin) * x->d;
    return d * (float)isum - dmin * (float)imins;
}

#define R16_BLOCK kq_block_q5_K
#define R16_ACT kk_r16_act
#define R16_BLOCK_VALUES KQ_QK_K
#define R16_GROUP_BLOCK_BYTES K5_R16_GROUP_BLOCK_BYTES
#include "kernels/kernels_r16_scalar.h"

static kq_type_ops r16_ops = {
    .type = GGUF_TYPE_Q5_K,
    .act_type = GGUF_TYPE_Q8_K,
    .scalar =
        {
            .dot = dot_scalar,
            .dot_tile = tile_scalar,
            .act_convert = kk_r16_convert,
            .act_row_bytes = kk_r16_act_row_bytes,
            .tile_cols = 4,
        },
};
static pthread_once_t r16_once = PTHREAD_ONCE_INIT;

static void r16_fill_simd(void)
{
    r16_ops.avx512 = kq_q5_k_r16_avx512();
    r16_ops.avx_vnni = kq_q5_k_r16_avx_vnni();
    r16_ops.avx2 = kq_q5_k_r16_avx2();
}

const kq_type_ops *kq_ops_q5_k_r16(void)
{
    pthread_once(&r16_once, r16_fill_simd);
    return &r16_ops;
}

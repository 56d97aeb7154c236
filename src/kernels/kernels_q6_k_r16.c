/* Q6_K repacked into groups of 16 rows (kernels_repack_matrix): the layout, the
 * repacking itself and the scalar reference kernels over it.
 *
 * As for Q4_0 and Q4_K (kernels_q4_0_r16.c, kernels_q4_k_r16.c) a vector lane is a
 * row, so that one vpdpbusd multiplies four values of 16 rows by the same four
 * broadcast activations, and the sixteen scales are decoded once per group block
 * (kernels_q6_k_r16_avx512.c).
 *
 * A group of 16 rows keeps the bytes the rows had (16 * row_bytes), as nb group
 * blocks of 3360 bytes, group block b holding super-block b of each row in two parts,
 * laid out in pairs of blocks so that the bodies start cache lines
 * (kernels_r16_pairs.h):
 *   body: uint8  ql[32][16][4]       ql[k][r] = row r's low-bit bytes 4k..4k+3
 *         uint8  qh[16][16][4]       qh[m][r] = row r's high-bit bytes 4m..4m+3
 *         int8   scales[4][16][4]    scales[k][r] = row r's scales 4k..4k+3
 *   tail: uint16 d[16]               row r's half scale in d[r]
 * In each 128-value half h of a row, low-bit byte 64h + l (l < 32) holds values
 * 128h + l (low nibble) and 128h + 64 + l (high one), byte 64h + 32 + l values
 * 128h + 32 + l and 128h + 96 + l, and high-bit byte 32h + l the top two bits of
 * 128h + l, + 32, + 64 and + 96 (bits 0-1, 2-3, 4-5, 6-7). */
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"
#include "kernels/kernels_q6_k_r16.h"
#include "kernels/kernels_r16_pairs.h"

_Static_assert(sizeof(k6_r16_act) == 384, "activation record is six cache lines");
_Static_assert(K6_R16_GROUP_BLOCK_BYTES == K6_R16_ROWS * sizeof(kq_block_q6_K), "a group block is 16 blocks");
_Static_assert(K6_R16_D % 64 == 0 && K6_R16_GROUP_BLOCK_BYTES - K6_R16_D == R16_TAIL_BYTES,
               "a body of whole lines (ql, qh, scales), the scales d a tail");

size_t k6_r16_act_row_bytes(int64_t n)
{
    return (size_t)(n / KQ_QK_K) * sizeof(k6_r16_act);
}

static void act_fill(k6_r16_act *rec, const kq_block_q8_K *q)
{
    memcpy(rec->qs, q->qs, sizeof rec->qs);
    for (int s = 0; s < K6_R16_SUBS; s++)
        rec->start[s] = K6_R16_DOTS_START - 32 * q->bsums[s];
    rec->d = q->d;
    memset(rec->pad, 0, sizeof rec->pad);
}

/* Each super-block quantized as Q8_K by the selected implementation (the same bytes
 * on every one), then spread into its record. */
void k6_r16_convert(const float *src, void *dst, int64_t n)
{
    k6_r16_act *rec = dst;
    for (int64_t b = 0; b < n / KQ_QK_K; b++) {
        kq_block_q8_K q;
        kq_act_convert(GGUF_TYPE_Q8_K, src + b * KQ_QK_K, &q, KQ_QK_K);
        act_fill(&rec[b], &q);
    }
}

/* ---- layout ------------------------------------------------------------------------ */

/* Word w of row r in a section of words laid out [w][16 rows]. */
static size_t word_at(size_t section, int w, int r)
{
    return section + 4 * (size_t)(K6_R16_ROWS * w + r);
}

/* Row r's block into a group block's body (ql, qh, scales) and tail (d). */
static void block_to_group(const kq_block_q6_K *blk, int r, uint8_t *body, uint8_t *tail)
{
    for (int k = 0; k < KQ_QK_K / 8; k++)
        memcpy(body + word_at(K6_R16_QL, k, r), blk->ql + 4 * k, 4);
    for (int m = 0; m < KQ_QK_K / 16; m++)
        memcpy(body + word_at(K6_R16_QH, m, r), blk->qh + 4 * m, 4);
    for (int k = 0; k < K6_R16_SUBS / 4; k++)
        memcpy(body + word_at(K6_R16_SCALES, k, r), blk->scales + 4 * k, 4);
    memcpy(tail + 2 * r, &blk->d, 2);
}

/* Row r's block b of a group of nb blocks. */
static void group_to_block(const uint8_t *group, int64_t nb, int64_t b, int r, kq_block_q6_K *blk)
{
    size_t body_at, tail_at;
    r16_block_offsets(r16_lead(group), K6_R16_D, nb, b, &body_at, &tail_at);
    const uint8_t *body = group + body_at;
    for (int k = 0; k < KQ_QK_K / 8; k++)
        memcpy(blk->ql + 4 * k, body + word_at(K6_R16_QL, k, r), 4);
    for (int m = 0; m < KQ_QK_K / 16; m++)
        memcpy(blk->qh + 4 * m, body + word_at(K6_R16_QH, m, r), 4);
    for (int k = 0; k < K6_R16_SUBS / 4; k++)
        memcpy(blk->scales + 4 * k, body + word_at(K6_R16_SCALES, k, r), 4);
    memcpy(&blk->d, group + tail_at + 2 * r, 2);
}

/* Block by block in the group's byte order: the writes (into the file mapping's
 * copy-on-write pages) go out nearly in order. */
void k6_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group)
{
    size_t lead = r16_lead(group);
    for (int64_t b = 0; b < nb; b++) {
        size_t body_at, tail_at;
        r16_block_offsets(lead, K6_R16_D, nb, b, &body_at, &tail_at);
        for (int r = 0; r < K6_R16_ROWS; r++) {
            const kq_block_q6_K *row = (const kq_block_q6_K *)((const uint8_t *)rows + (size_t)r * row_bytes);
            block_to_group(&row[b], r, (uint8_t *)group + body_at, (uint8_t *)group + tail_at);
        }
    }
}

void k6_r16_unpack_row(const void *group, int64_t nb, int r, void *row)
{
    kq_block_q6_K *out = row;
    for (int64_t b = 0; b < nb; b++)
        group_to_block(group, nb, b, r, &out[b]);
}

/* ---- scalar reference kernels --------------------------------------------------------- */

/* Value v's code (0..63: the value plus 32) in a GGUF block. */
static int code_of(const kq_block_q6_K *blk, int v)
{
    const int h = v / 128, j = v % 128 / 32, l = v % 32;
    const uint8_t low = blk->ql[64 * h + 32 * (j % 2) + l];
    const int low4 = j < 2 ? low & 0x0f : low >> 4;
    return low4 | (((blk->qh[32 * h + l] >> (2 * j)) & 3) << 4);
}

/* Row r's super-block against one record: integer sums per sub-block, scaled once per
 * super-block, as the GGUF layout's scalar dot (kernels_kquant.c) does; the same
 * float operations in the same order, so the two agree bit for bit. */
static float block_dot(const kq_block_q6_K *blk, const k6_r16_act *x)
{
    int32_t isum = 0;
    for (int s = 0; s < K6_R16_SUBS; s++) {
        int32_t dot = 0;
        for (int l = 0; l < 16; l++)
            dot += (code_of(blk, 16 * s + l) - 32) * x->qs[16 * s + l];
        isum += blk->scales[s] * dot;
    }
    return el_fp16_to_f32(blk->d) * x->d * (float)isum;
}

#define R16_BLOCK kq_block_q6_K
#define R16_ACT k6_r16_act
#define R16_BLOCK_VALUES KQ_QK_K
#define R16_GROUP_BLOCK_BYTES K6_R16_GROUP_BLOCK_BYTES
#define R16_GROUP_TO_BLOCK(group, nb, b, r, blk) group_to_block((group), (nb), (b), (r), (blk))
#include "kernels/kernels_r16_scalar.h"

static kq_type_ops r16_ops = {
    .type = GGUF_TYPE_Q6_K,
    .act_type = GGUF_TYPE_Q8_K,
    .scalar =
        {
            .dot = dot_scalar,
            .dot_tile = tile_scalar,
            .act_convert = k6_r16_convert,
            .act_row_bytes = k6_r16_act_row_bytes,
            .tile_cols = 4,
        },
};
static pthread_once_t r16_once = PTHREAD_ONCE_INIT;

static void r16_fill_simd(void)
{
    r16_ops.avx512 = kq_q6_k_r16_avx512();
    r16_ops.avx_vnni = kq_q6_k_r16_avx_vnni();
    r16_ops.avx2 = kq_q6_k_r16_avx2();
}

const kq_type_ops *kq_ops_q6_k_r16(void)
{
    pthread_once(&r16_once, r16_fill_simd);
    return &r16_ops;
}

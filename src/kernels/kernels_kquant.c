/* K-quants (Q2_K..Q6_K) and their activation partner Q8_K: the scalar reference
 * dequantizers, dot products and quantizers, and the operation table.
 *
 * Everything follows ggml's reference code so that GGUF files made by llama.cpp
 * decode identically and files we write are the ones llama.cpp would write: the
 * quantizers reproduce ggml's rounding step for step (float evaluation order
 * included), and each dot product sums integers per sub-block and scales once
 * per super-block, as ggml_vec_dot_qX_K_q8_K does. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"

/* Fused multiply-adds would change the rounding the reference quantizers and the
 * golden dequantizations depend on. GCC keeps them apart in ISO C mode already. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define GROUP_MAX_EPS 1e-15f

static inline int kq_min_int(int a, int b)
{
    return a < b ? a : b;
}

static inline int kq_max_int(int a, int b)
{
    return a > b ? a : b;
}

/* Round half to even via the float mantissa, exactly as ggml's nearest_int
 * (valid for |f| <= 2^22, which every caller guarantees). */
static inline int nearest_int(float f)
{
    float biased = f + 12582912.f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* ==== Q8_K (activations) ======================================================== */

static void quant_q8_K(const float *src, void *dst, int64_t n)
{
    kq_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        /* The scale comes from the value of largest magnitude, sign included, so
         * that value maps to exactly -127 and every other one stays within range. */
        float max = kq_signed_absmax(src, KQ_QK_K);
        if (max == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < KQ_QK_K; j++)
            y[i].qs[j] = (int8_t)kq_min_int(127, nearest_int(iscale * src[j]));
        for (int g = 0; g < KQ_QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += y[i].qs[g * 16 + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

static void dequant_q8_K(const void *src, float *dst, int64_t n)
{
    const kq_block_q8_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++)
        for (int j = 0; j < KQ_QK_K; j++)
            *dst++ = x[i].d * x[i].qs[j];
}

static void dot_q8_K(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q8_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    float sum = 0;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        int32_t isum = 0;
        for (int j = 0; j < KQ_QK_K; j++)
            isum += w[i].qs[j] * x[i].qs[j];
        sum += w[i].d * x[i].d * (float)isum;
    }
    *out = sum;
}

/* ==== dequantization ============================================================ */

static void dequant_q2_K(const void *src, float *dst, int64_t n)
{
    const kq_block_q2_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = el_fp16_to_f32(x[i].d);
        const float dmin = el_fp16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF);
                    const float ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *dst++ = dl * (float)((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

static void dequant_q3_K(const void *src, float *dst, int64_t n)
{
    const kq_block_q3_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = el_fp16_to_f32(x[i].d);
        int8_t scales[16];
        kq_q3_K_scales(x[i].scales, scales);
        const uint8_t *q = x[i].qs;
        int is = 0;
        uint8_t hbit = 1;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, hbit = (uint8_t)(hbit << 1)) {
                for (int part = 0; part < 2; part++) {
                    const float dl = d * (float)scales[is++];
                    for (int l = 16 * part; l < 16 * part + 16; l++) {
                        int v = ((q[l] >> shift) & 3) - ((x[i].hmask[l] & hbit) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

static void dequant_q4_K(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = el_fp16_to_f32(x[i].d);
        const float dmin = el_fp16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            kq_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            kq_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_K(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = el_fp16_to_f32(x[i].d);
        const float dmin = el_fp16_to_f32(x[i].dmin);
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        for (int j = 0; j < 8; j += 2, ql += 32) {
            uint8_t sc, m;
            kq_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            kq_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t bit1 = (uint8_t)(1u << j), bit2 = (uint8_t)(2u << j);
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)((ql[l] & 0xF) + ((qh[l] & bit1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & bit2) ? 16 : 0)) - m2;
        }
    }
}

/* The 256 signed values (-32..31) of a Q6_K block: in each 128-value half, byte
 * l of ql/qh supplies values l, l+32, l+64 and l+96. */
static void q6_K_values(const kq_block_q6_K *b, int8_t out[KQ_QK_K])
{
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b->ql + 64 * half;
        const uint8_t *qh = b->qh + 32 * half;
        int8_t *o = out + 128 * half;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void dequant_q6_K(const void *src, float *dst, int64_t n)
{
    const kq_block_q6_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = el_fp16_to_f32(x[i].d);
        int8_t values[KQ_QK_K];
        q6_K_values(&x[i], values);
        for (int g = 0; g < 16; g++) {
            const float ds = d * (float)x[i].scales[g];
            for (int l = 0; l < 16; l++)
                *dst++ = ds * (float)values[16 * g + l];
        }
    }
}

/* ==== dot products against Q8_K ================================================= */

/* Integer dot products of 16 weight codes (already expanded into int8) with 16
 * activation bytes. */
static inline int32_t dot16(const int8_t *a, const int8_t *b)
{
    int32_t s = 0;
    for (int l = 0; l < 16; l++)
        s += a[l] * b[l];
    return s;
}

static void dot_q2_K(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q2_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    float sum = 0;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        int8_t codes[KQ_QK_K];
        int32_t isum = 0, imins = 0;
        for (int g = 0; g < 16; g++) {
            /* group g: bytes 32*(g/8) + 16*(g%2) .. +16, shifted by 2*((g/2)%4) */
            const uint8_t *q = w[i].qs + 32 * (g / 8) + 16 * (g % 2);
            int shift = 2 * ((g / 2) % 4);
            for (int l = 0; l < 16; l++)
                codes[16 * g + l] = (int8_t)((q[l] >> shift) & 3);
            isum += (w[i].scales[g] & 0xF) * dot16(codes + 16 * g, x[i].qs + 16 * g);
            imins += (w[i].scales[g] >> 4) * x[i].bsums[g];
        }
        const float d = x[i].d * el_fp16_to_f32(w[i].d);
        const float dmin = x[i].d * el_fp16_to_f32(w[i].dmin);
        sum += d * (float)isum - dmin * (float)imins;
    }
    *out = sum;
}

static void dot_q3_K(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q3_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    float sum = 0;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        int8_t scales[16], codes[16];
        kq_q3_K_scales(w[i].scales, scales);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) {
            const int offset = 16 * (g % 2);
            const uint8_t *q = w[i].qs + 32 * (g / 8) + offset;
            const uint8_t *hm = w[i].hmask + offset;
            const int shift = 2 * ((g / 2) % 4);
            const uint8_t hbit = (uint8_t)(1u << (g / 2));
            for (int l = 0; l < 16; l++)
                codes[l] = (int8_t)(((q[l] >> shift) & 3) - ((hm[l] & hbit) ? 0 : 4));
            isum += scales[g] * dot16(codes, x[i].qs + 16 * g);
        }
        sum += x[i].d * el_fp16_to_f32(w[i].d) * (float)isum;
    }
    *out = sum;
}

/* Q4_K and Q5_K share the 32-value sub-blocks with 6-bit scales and mins. */
static float dot_k4_block(const int8_t codes[KQ_QK_K], const uint8_t packed[12], uint16_t d16,
                          uint16_t dmin16, const kq_block_q8_K *x)
{
    int32_t isum = 0, imins = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kq_scale_min_k4(j, packed, &sc, &m);
        isum += sc * (dot16(codes + 32 * j, x->qs + 32 * j) +
                      dot16(codes + 32 * j + 16, x->qs + 32 * j + 16));
        imins += m * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    }
    const float d = el_fp16_to_f32(d16) * x->d;
    const float dmin = el_fp16_to_f32(dmin16) * x->d;
    return d * (float)isum - dmin * (float)imins;
}

static void dot_q4_K(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q4_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    float sum = 0;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        int8_t codes[KQ_QK_K];
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                codes[64 * c + l] = (int8_t)(w[i].qs[32 * c + l] & 0xF);
                codes[64 * c + 32 + l] = (int8_t)(w[i].qs[32 * c + l] >> 4);
            }
        sum += dot_k4_block(codes, w[i].scales, w[i].d, w[i].dmin, &x[i]);
    }
    *out = sum;
}

static void dot_q5_K(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q5_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    float sum = 0;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        int8_t codes[KQ_QK_K];
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t q = w[i].qs[32 * c + l], h = w[i].qh[l];
                codes[64 * c + l] = (int8_t)((q & 0xF) | (((h >> (2 * c)) & 1) << 4));
                codes[64 * c + 32 + l] = (int8_t)((q >> 4) | (((h >> (2 * c + 1)) & 1) << 4));
            }
        sum += dot_k4_block(codes, w[i].scales, w[i].d, w[i].dmin, &x[i]);
    }
    *out = sum;
}

static void dot_q6_K(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q6_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    float sum = 0;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        int8_t codes[KQ_QK_K];
        q6_K_values(&w[i], codes);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++)
            isum += w[i].scales[g] * dot16(codes + 16 * g, x[i].qs + 16 * g);
        sum += el_fp16_to_f32(w[i].d) * x[i].d * (float)isum;
    }
    *out = sum;
}

/* ==== reference quantizers (ggml's *_ref, without importance weights) =========== */

/* Scale and min (returned negated in *neg_min) for n values coded 0..nmax, fitted
 * by weighted least squares over a sweep of candidate scales (make_qkx2_quants). */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)kq_max_int(0, kq_min_int(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = kq_max_int(0, kq_min_int(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Symmetric scale for n values coded -nmax..nmax-1 (stored offset by nmax), with
 * x^2 weights and a sweep around nmax (make_qx_quants, rmse_type 1). */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = kq_signed_absmax(x, n), amax = fabsf(max);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = kq_max_int(-nmax, kq_min_int(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = kq_max_int(-nmax, kq_min_int(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = kq_max_int(-nmax, kq_min_int(nmax - 1, nearest_int(iscale * x[i])));
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric 3-bit codes refined one value at a time (make_q3_quants, with rmse). */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = kq_signed_absmax(x, n), amax = fabsf(max);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = kq_max_int(-nmax, kq_min_int(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = kq_max_int(-nmax, kq_min_int(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Packs four 2-bit codes per byte: byte l of each 32-byte group holds values
 * l, l+32, l+64, l+96 of its 128-value half. */
static void pack_2bit(const uint8_t L[KQ_QK_K], uint8_t qs[KQ_QK_K / 4])
{
    for (int j = 0; j < KQ_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

static void quant_q2_K(const float *src, void *dst, int64_t n)
{
    kq_block_q2_K *y = dst;
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        uint8_t L[KQ_QK_K], Laux[16];
        float weights[16], mins[16], scales[16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(src[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, src + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = el_f32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = el_f32_to_fp16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (uint8_t)(y[i].scales[j] | (nearest_int(iscale * mins[j]) << 4));
            y[i].dmin = el_f32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = el_f32_to_fp16(0.f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = el_fp16_to_f32(y[i].d) * (float)(y[i].scales[j] & 0xF);
            if (d == 0)
                continue;
            const float dm = el_fp16_to_f32(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                int q = nearest_int((src[16 * j + l] + dm) / d);
                L[16 * j + l] = (uint8_t)kq_max_int(0, kq_min_int(3, q));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

static void quant_q3_K(const float *src, void *dst, int64_t n)
{
    kq_block_q3_K *y = dst;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        int8_t L[KQ_QK_K];
        float scales[16];
        for (int j = 0; j < 16; j++)
            scales[j] = make_q3_quants(16, 4, src + 16 * j, L + 16 * j);
        float max_scale = kq_signed_absmax(scales, 16);
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale != 0) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = kq_max_int(-32, kq_min_int(31, (int8_t)nearest_int(iscale * scales[j]))) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] = (uint8_t)(y[i].scales[j - 8] | ((l & 0xF) << 4));
                y[i].scales[8 + j % 4] = (uint8_t)(y[i].scales[8 + j % 4] | ((l >> 4) << (2 * (j / 4))));
            }
            y[i].d = el_f32_to_fp16(1 / iscale);
        } else {
            y[i].d = el_f32_to_fp16(0.f);
        }
        int8_t sc[16];
        kq_q3_K_scales(y[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            const float d = el_fp16_to_f32(y[i].d) * (float)sc[j];
            if (d == 0)
                continue;
            for (int l = 0; l < 16; l++) {
                int q = kq_max_int(-4, kq_min_int(3, nearest_int(src[16 * j + l] / d)));
                L[16 * j + l] = (int8_t)(q + 4);
            }
        }
        /* The high bit of value j goes to hmask[j % 32], bit j / 32. */
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        uint8_t low[KQ_QK_K];
        for (int j = 0; j < KQ_QK_K; j++) {
            int v = L[j];
            if (v > 3) {
                y[i].hmask[j % 32] = (uint8_t)(y[i].hmask[j % 32] | (1u << (j / 32)));
                v -= 4;
            }
            low[j] = (uint8_t)v;
        }
        pack_2bit(low, y[i].qs);
    }
}

/* The Q4_K/Q5_K block header: 6-bit quantized sub-block scales and mins relative
 * to the block's largest, then each value re-coded against the stored scales. */
static void pack_k4_scales(const float scales[8], const float mins[8], float max_scale,
                           float max_min, uint8_t packed[12], uint16_t *d, uint16_t *dmin)
{
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            packed[j - 4] = (uint8_t)(packed[j - 4] | ((ls >> 4) << 6));
            packed[j] = (uint8_t)(packed[j] | ((lm >> 4) << 6));
        }
    }
    *d = el_f32_to_fp16(max_scale / 63.f);
    *dmin = el_f32_to_fp16(max_min / 63.f);
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills codes L (0..nmax) and the header. */
static void quant_k4_block(const float *x, int nmax, float rmin, int nstep, uint8_t L[KQ_QK_K],
                           uint8_t packed[12], uint16_t *d16, uint16_t *dmin16)
{
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    pack_k4_scales(scales, mins, max_scale, max_min, packed, d16, dmin16);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kq_scale_min_k4(j, packed, &sc, &m);
        const float d = el_fp16_to_f32(*d16) * (float)sc;
        if (d == 0)
            continue;
        const float dm = el_fp16_to_f32(*dmin16) * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = nearest_int((x[32 * j + l] + dm) / d);
            L[32 * j + l] = (uint8_t)kq_max_int(0, kq_min_int(nmax, q));
        }
    }
}

static void quant_q4_K(const float *src, void *dst, int64_t n)
{
    kq_block_q4_K *y = dst;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        uint8_t L[KQ_QK_K];
        memset(y[i].scales, 0, sizeof y[i].scales);
        quant_k4_block(src, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

static void quant_q5_K(const float *src, void *dst, int64_t n)
{
    kq_block_q5_K *y = dst;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        uint8_t L[KQ_QK_K];
        memset(y[i].scales, 0, sizeof y[i].scales);
        quant_k4_block(src, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                if (lo > 15) {
                    lo -= 16;
                    y[i].qh[l] = (uint8_t)(y[i].qh[l] | (1u << (2 * c)));
                }
                if (hi > 15) {
                    hi -= 16;
                    y[i].qh[l] = (uint8_t)(y[i].qh[l] | (2u << (2 * c)));
                }
                y[i].qs[32 * c + l] = (uint8_t)(lo | (hi << 4));
            }
    }
}

static void quant_q6_K(const float *src, void *dst, int64_t n)
{
    kq_block_q6_K *y = dst;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        int8_t L[KQ_QK_K];
        float scales[16];
        float max_scale = 0, max_abs_scale = 0;
        for (int g = 0; g < 16; g++) {
            scales[g] = make_qx_quants(16, 32, src + 16 * g, L + 16 * g);
            float a = fabsf(scales[g]);
            if (a > max_abs_scale) {
                max_abs_scale = a;
                max_scale = scales[g];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = el_f32_to_fp16(1 / iscale);
        for (int g = 0; g < 16; g++)
            y[i].scales[g] = (int8_t)kq_min_int(127, nearest_int(iscale * scales[g]));
        for (int g = 0; g < 16; g++) {
            const float d = el_fp16_to_f32(y[i].d) * (float)y[i].scales[g];
            if (d == 0)
                continue;
            for (int l = 0; l < 16; l++) {
                int q = kq_max_int(-32, kq_min_int(31, nearest_int(src[16 * g + l] / d)));
                L[16 * g + l] = (int8_t)(q + 32);
            }
        }
        for (int half = 0; half < 2; half++) {
            const int8_t *Lh = L + 128 * half;
            uint8_t *ql = y[i].ql + 64 * half;
            uint8_t *qh = y[i].qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

/* ==== operation table =========================================================== */

#if defined(__x86_64__)
#define KQ_AVX2(dequant, dot, tile, cols) {(dequant), (dot), (tile), NULL, NULL, (cols)}
#else
#define KQ_AVX2(dequant, dot, tile, cols) {NULL, NULL, NULL, NULL, NULL, 0}
#endif

/* The AVX-VNNI and AVX-512 members come from their files' kq_kquant_* functions,
 * filled in once (kquant_fill_vnni). */
static kq_type_ops kquant_ops[] = {
    {GGUF_TYPE_Q2_K, GGUF_TYPE_Q8_K, quant_q2_K, {dequant_q2_K, dot_q2_K, NULL, NULL, NULL, 0},
     KQ_AVX2(kq_dequant_q2_K_avx2, kq_dot_q2_K_avx2, NULL, 0), {0}, {0}},
    {GGUF_TYPE_Q3_K, GGUF_TYPE_Q8_K, quant_q3_K, {dequant_q3_K, dot_q3_K, NULL, NULL, NULL, 0},
     KQ_AVX2(kq_dequant_q3_K_avx2, kq_dot_q3_K_avx2, NULL, 0), {0}, {0}},
    {GGUF_TYPE_Q4_K, GGUF_TYPE_Q8_K, quant_q4_K, {dequant_q4_K, dot_q4_K, NULL, NULL, NULL, 0},
     KQ_AVX2(kq_dequant_q4_K_avx2, kq_dot_q4_K_avx2, kq_dot_tile_q4_K_avx2, KQ_TILE_COLS), {0}, {0}},
    {GGUF_TYPE_Q5_K, GGUF_TYPE_Q8_K, quant_q5_K, {dequant_q5_K, dot_q5_K, NULL, NULL, NULL, 0},
     KQ_AVX2(kq_dequant_q5_K_avx2, kq_dot_q5_K_avx2, kq_dot_tile_q5_K_avx2, KQ_TILE_COLS), {0}, {0}},
    {GGUF_TYPE_Q6_K, GGUF_TYPE_Q8_K, quant_q6_K, {dequant_q6_K, dot_q6_K, NULL, NULL, NULL, 0},
     KQ_AVX2(kq_dequant_q6_K_avx2, kq_dot_q6_K_avx2, kq_dot_tile_q6_K_avx2, KQ_TILE_COLS), {0}, {0}},
    {GGUF_TYPE_Q8_K, GGUF_TYPE_Q8_K, quant_q8_K, {dequant_q8_K, dot_q8_K, NULL, NULL, NULL, 0}, {NULL, NULL, NULL, NULL, NULL, 0}, {0}, {0}},
};

static pthread_once_t kquant_once = PTHREAD_ONCE_INIT;

static void kquant_fill_vnni(void)
{
    for (size_t i = 0; i < sizeof kquant_ops / sizeof kquant_ops[0]; i++) {
        kquant_ops[i].avx_vnni = kq_kquant_avx_vnni(kquant_ops[i].type);
        kquant_ops[i].avx512 = kq_kquant_avx512(kquant_ops[i].type);
    }
}

const kq_type_ops *kq_ops_kquant(uint32_t type)
{
    pthread_once(&kquant_once, kquant_fill_vnni);
    for (size_t i = 0; i < sizeof kquant_ops / sizeof kquant_ops[0]; i++)
        if (kquant_ops[i].type == type)
            return &kquant_ops[i];
    return NULL;
}

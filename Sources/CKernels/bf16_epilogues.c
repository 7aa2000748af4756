#include "ckernels.h"
#include "bf16_internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

// The bf16 encoder's row operations between its products, done on a product's tile while it is in cache: bias,
// residual, GELU and the rounding of the next product's operand in one pass, and LayerNorm with its bf16 copy in one
// more. Each spells out its float32 operations one by one (no contraction into fused multiply-adds), so the tests'
// reference loops can repeat them bit for bit.
#pragma clang fp contract(off)

#define BK_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

static inline __mmask16 lanes_left(int left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

// e^x as VectorMath.exp computes it: clamped to [−87.3, 88.37], n = ⌊x·log2(e) + 0.5⌋, Cephes' polynomial, 2ⁿ from the
// exponent bits, 0 where x < −87.3.
BK_BF16 static inline __m512 exp_vm(__m512 input) {
    __m512 x = _mm512_min_ps(_mm512_max_ps(input, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.37f));
    __m512 n = _mm512_roundscale_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _mm512_set1_ps(0.5f)),
                                    _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_add_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))), _mm512_mul_ps(n, _mm512_set1_ps(2.1219444e-4f)));
    __m512 p = _mm512_set1_ps(1.98756915e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.39819995e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.16657959e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(0.166666655f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(0.50000001f));
    __m512 y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
    __m512i integer = _mm512_cvttps_epi32(n);
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(integer, _mm512_set1_epi32(127)), 23));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(input, _mm512_set1_ps(-87.3f), _CMP_NLT_UQ), _mm512_mul_ps(y, scale));
}

// GELU(x) = 0.5·x·(1 + erf(x/√2)) with VectorMath.erf (Abramowitz–Stegun 7.1.26), operation for operation.
BK_BF16 static inline __m512 gelu_vm(__m512 x) {
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    __m512 a = _mm512_abs_ps(z);
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(_mm512_set1_ps(0.3275911f), a)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_sub_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(1.453152027f));
    p = _mm512_add_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(1.421413741f));
    p = _mm512_sub_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(0.284496736f));
    p = _mm512_add_ps(_mm512_mul_ps(p, t), _mm512_set1_ps(0.254829592f));
    __m512 square = _mm512_mul_ps(a, a);
    __m512 e = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(_mm512_mul_ps(p, t), exp_vm(_mm512_xor_ps(square, _mm512_set1_ps(-0.0f)))));
    // erf is odd: −e where z < 0.
    e = _mm512_mask_xor_ps(e, _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ), e, _mm512_set1_ps(-0.0f));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

BK_BF16 void bk_gelu_erf(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 mask = lanes_left(n - i);
        _mm512_mask_storeu_ps(y + i, mask, gelu_vm(_mm512_maskz_loadu_ps(mask, x + i)));
    }
}

// 32 floats (lo: columns 0–15, hi: 16–31) as 16 bf16 pairs, `words` of them stored.
BK_BF16 static inline void store_pairs(uint32_t *out, __m512 lo, __m512 hi, int words) {
    _mm512_mask_storeu_epi32(out, lanes_left(words), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

BK_BF16 void bk_bf16_finish(float *c, int m, int n, int ldc, const float *bias, const float *residual, int ldr, int gelu,
                            uint32_t *pairs, int ldp) {
    for (int r = 0; r < m; r++) {
        float *cr = c + (size_t)r * ldc;
        const float *rr = residual ? residual + (size_t)r * ldr : NULL;
        for (int j = 0; j < n; j += 32) {
            __m512 v[2];
            for (int h = 0; h < 2; h++) {
                int left = n - j - 16 * h;
                __mmask16 mask = left <= 0 ? 0 : lanes_left(left);
                __m512 x = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, cr + j + 16 * h), _mm512_maskz_loadu_ps(mask, bias + j + 16 * h));
                if (rr) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, rr + j + 16 * h));
                if (gelu) x = gelu_vm(x);
                // Columns past n are zero, as bk_bf16_round_rows pads an odd row.
                v[h] = _mm512_maskz_mov_ps(mask, x);
                if (!pairs) _mm512_mask_storeu_ps(cr + j + 16 * h, mask, v[h]);
            }
            if (pairs) {
                int left = n - j, words = left >= 32 ? 16 : (left + 1) / 2;
                store_pairs(pairs + (size_t)r * ldp + j / 2, v[0], v[1], words);
            }
        }
    }
}

// Σ of 16 lane sums, added pairwise: (l, l + 8), (l, l + 4), (l, l + 2), (0, 1).
BK_BF16 static inline float lane_total(__m512 sum) {
    float v[16], s8[8], s4[4];
    _mm512_storeu_ps(v, sum);
    for (int l = 0; l < 8; l++) s8[l] = v[l] + v[l + 8];
    for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

BK_BF16 void bk_layer_norm_rows(float *x, int m, int n, int ldx, const float *gamma, const float *beta, float eps,
                                uint32_t *pairs, int ldp) {
    for (int r = 0; r < m; r++) {
        float *xr = x + (size_t)r * ldx;
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < n; j += 16) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(lanes_left(n - j), xr + j));
        float mean = lane_total(sum) / (float)n;
        __m512 meanV = _mm512_set1_ps(mean), squares = _mm512_setzero_ps();
        for (int j = 0; j < n; j += 16) {
            __mmask16 mask = lanes_left(n - j);
            __m512 d = _mm512_maskz_mov_ps(mask, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, xr + j), meanV));
            squares = _mm512_add_ps(squares, _mm512_mul_ps(d, d));
        }
        float inverse = 1.0f / sqrtf(lane_total(squares) / (float)n + eps);
        __m512 inverseV = _mm512_set1_ps(inverse);
        for (int j = 0; j < n; j += 32) {
            __m512 y[2];
            for (int h = 0; h < 2; h++) {
                int left = n - j - 16 * h;
                __mmask16 mask = left <= 0 ? 0 : lanes_left(left);
                __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, xr + j + 16 * h), meanV);
                __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(d, inverseV), _mm512_maskz_loadu_ps(mask, gamma + j + 16 * h)),
                                         _mm512_maskz_loadu_ps(mask, beta + j + 16 * h));
                y[h] = _mm512_maskz_mov_ps(mask, v);
                _mm512_mask_storeu_ps(xr + j + 16 * h, mask, y[h]);
            }
            if (pairs) {
                int left = n - j, words = left >= 32 ? 16 : (left + 1) / 2;
                store_pairs(pairs + (size_t)r * ldp + j / 2, y[0], y[1], words);
            }
        }
    }
}

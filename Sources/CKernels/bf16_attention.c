#include "ckernels.h"
#include "bf16_internal.h"

#include <immintrin.h>
#include <string.h>

// DeBERTa's disentangled attention for one sequence and head with bf16 operands and float32 sums, as PyTorch's bf16
// autocast runs it (products in bf16, softmax in float32). Every product below is vdpbf16ps over k pairs in order,
// starting from zero, the arithmetic of bk_bf16_gemm; which tile computes an output never changes its bits.
//
// The relative terms are computed against position tables expanded by t = i − j + length − 1 (column t holds the row
// δ(t) of PK or PQ): c2p(i, j) = C2[i][t], p2c(i, j) = E[j][t]. For a row i and 16 consecutive keys j, C2 is then one
// contiguous run (read reversed), and E for 16 rows × 16 keys one transposed block of 16 row runs, where indexing by δ
// would need a gather for each term.

#define BK_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

enum { ROWS = 16, TABLE_SHIFT = 32 };

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

// Nearest-even bf16 of 16 floats (subnormals flushed to zero, as vdpbf16ps reads them anyway), widened to 32-bit lanes.
BK_BF16 static inline __m512i bf16_lanes(__m512 x) {
    return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x));
}

// Columns of A-layout rows (`rows`: one row of k2 words per index) as packed B blocks: column c of block b is row
// index[16·b + c]; `columns` is a multiple of 16.
BK_BF16 static void gather_columns(const uint32_t *rows, int k2, const int32_t *index, int columns, uint32_t *packed) {
    for (int b = 0; b < columns / 16; b++) {
        __m512i at = _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(index + 16 * b)), _mm512_set1_epi32(k2));
        for (int p = 0; p < k2; p++)
            _mm512_storeu_si512((void *)(packed + ((size_t)b * k2 + p) * 16), _mm512_i32gather_epi32(at, (const void *)(rows + p), 4));
    }
}

// Rows x[0..16) of 16 floats become columns: afterwards x[m][l] is what x[l][m] was.
BK_BF16 static inline void transpose16(__m512 *x) {
    __m512 t[16], u[16];
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(x[k], x[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(x[k], x[k + 1]);
    }
    // u[4g + c] holds columns c, c + 4, c + 8, c + 12 of rows 4g ..< 4g + 4.
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        x[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        x[c + 8] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        x[c + 4] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        x[c + 12] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

// e^x for x ≤ 0 (softmax arguments): Cody–Waite reduction by ln 2 and Cephes' degree-6 polynomial for expf;
// below −87.3 (and for −∞) the result is 0.
BK_BF16 static inline __m512 exp16(__m512 x) {
    __m512 clamped = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), clamped);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    y = _mm512_scalef_ps(y, n);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ), y);
}

BK_BF16 void bk_bf16_exp(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 mask = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, mask, exp16(_mm512_maskz_loadu_ps(mask, x + i)));
    }
}

// The softmax's sum of 16 lane sums: halves added pairwise, (l, l + 8), then (l, l + 4), (l, l + 2), (0, 1).
static float lane_total(const float *v) {
    float s8[8], s4[4];
    for (int l = 0; l < 8; l++) s8[l] = v[l] + v[l + 8];
    for (int l = 0; l < 4; l++) s4[l] = s8[l] + s8[l + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

int bk_bf16_attention_columns(int length) { return (int)round_up((size_t)(round_up((size_t)length, 16) + length + 80), 16); }

// The scratch regions of one call, 64-byte aligned.
struct layout {
    size_t qRows, kRows, kPacked, vPacked, pkWide, pqWide, e, scores, c2, probs, out, total;
    int d2, dBlocks, l2, l16, columns, eWidth, c2Width;
};

static struct layout layout_of(int length, int d) {
    struct layout s;
    s.d2 = (d + 1) / 2;
    s.dBlocks = (d + 15) / 16;
    s.l2 = (length + 1) / 2;
    s.l16 = (int)round_up((size_t)length, 16);
    s.columns = bk_bf16_attention_columns(length);
    s.eWidth = s.l16 + 32;
    s.c2Width = (int)round_up((size_t)length + 31, 16);
    size_t at = 0, d2 = (size_t)s.d2;
    s.qRows = at; at += round_up((size_t)s.l16 * d2 * 4, 64);
    s.kRows = at; at += round_up((size_t)s.l16 * d2 * 4, 64);
    s.kPacked = at; at += round_up((size_t)s.l16 * d2 * 4, 64);
    s.vPacked = at; at += round_up((size_t)s.dBlocks * s.l2 * 16 * 4, 64);
    s.pkWide = at; at += round_up((size_t)s.columns * d2 * 4, 64);
    s.pqWide = at; at += round_up((size_t)s.columns * d2 * 4, 64);
    s.e = at; at += round_up((size_t)s.l16 * s.eWidth * 4, 64);
    s.scores = at; at += round_up((size_t)ROWS * s.l16 * 4, 64);
    s.c2 = at; at += round_up((size_t)ROWS * s.c2Width * 4, 64);
    s.probs = at; at += round_up((size_t)ROWS * (s.l16 / 2) * 4, 64);
    s.out = at; at += round_up((size_t)ROWS * s.dBlocks * 16 * 4, 64);
    s.total = at + 64;
    return s;
}

size_t bk_bf16_attention_scratch(int length, int d) { return layout_of(length, d).total; }

// The first expanded column of E's row block j0 ..< j0 + 8: the 16-aligned column at or below t = length − 8 − j0.
static int e_start(int length, int j0) {
    int t = length - 8 - j0;
    return t >= 0 ? t / 16 * 16 : -((-t + 15) / 16 * 16);
}

BK_BF16 void bk_bf16_attention_head(const float *q, const float *k, const float *v, int ld, int length, int d,
                                    const uint32_t *pkRows, const uint32_t *pqRows, const int32_t *deltas,
                                    float scale, float *ctx, int ldctx, void *scratch) {
    if (length <= 0) return;
    struct layout s = layout_of(length, d);
    char *base = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *qRows = (uint32_t *)(base + s.qRows), *kRows = (uint32_t *)(base + s.kRows);
    uint32_t *kPacked = (uint32_t *)(base + s.kPacked), *vPacked = (uint32_t *)(base + s.vPacked);
    uint32_t *pkWide = (uint32_t *)(base + s.pkWide), *pqWide = (uint32_t *)(base + s.pqWide);
    uint32_t *probs = (uint32_t *)(base + s.probs);
    float *e = (float *)(base + s.e), *scores = (float *)(base + s.scores), *c2 = (float *)(base + s.c2);
    float *out = (float *)(base + s.out);
    const int d2 = s.d2, l2 = s.l2, l16 = s.l16, dBlocks = s.dBlocks;
    const size_t block = (size_t)d2 * 16;

    bk_bf16_round_rows_vector(q, length, d, ld, qRows, d2, l16);
    bk_bf16_round_rows_vector(k, length, d, ld, kRows, d2, l16);
    // K as the B operand of Q·Kᵀ: block b, pair p holds pair p of keys 16b ..< 16b + 16.
    const __m512i rowStep = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(d2));
    for (int b = 0; b < l16 / 16; b++)
        for (int p = 0; p < d2; p++)
            _mm512_storeu_si512((void *)(kPacked + b * block + (size_t)p * 16),
                                _mm512_i32gather_epi32(rowStep, (const void *)(kRows + (size_t)16 * b * d2 + p), 4));
    // V as the B operand of P·V: k runs over tokens, so pair p is (token 2p, token 2p + 1) of one column.
    for (int cb = 0; cb < dBlocks; cb++) {
        int left = d - 16 * cb;
        __mmask16 mask = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        for (int p = 0; p < l2; p++) {
            __m512i even = bf16_lanes(_mm512_maskz_loadu_ps(mask, v + (size_t)(2 * p) * ld + 16 * cb));
            __m512i odd = 2 * p + 1 < length ? bf16_lanes(_mm512_maskz_loadu_ps(mask, v + (size_t)(2 * p + 1) * ld + 16 * cb))
                                             : _mm512_setzero_si512();
            _mm512_storeu_si512((void *)(vPacked + ((size_t)cb * l2 + p) * 16), _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)));
        }
    }
    // The position tables expanded by t (column t + TABLE_SHIFT is row deltas[t + TABLE_SHIFT]).
    gather_columns(pkRows, d2, deltas, s.columns, pkWide);
    gather_columns(pqRows, d2, deltas, s.columns, pqWide);
    // E[j][t − start(j)] = K_j · PQ_δ(t) over the band of t that key rows j0 ..< j0 + 8 read.
    for (int j0 = 0; j0 < l16; j0 += 8) {
        int start = e_start(length, j0);
        bk_bf16_product(kRows + (size_t)j0 * d2, 8, d2, 1, d2, pqWide + (size_t)((start + TABLE_SHIFT) / 16) * block, s.eWidth / 16,
                block, e + (size_t)j0 * s.eWidth, s.eWidth);
    }

    const __m512 scaleV = _mm512_set1_ps(scale), minusInfinity = _mm512_set1_ps(-__builtin_inff());
    const __m512i reverse = _mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int i0 = 0; i0 < l16; i0 += ROWS) {
        // S[r][j] = Q_i · K_j and C2[r][t − (i0 − 16)] = Q_i · PK_δ(t) for rows i = i0 + r.
        bk_bf16_product(qRows + (size_t)i0 * d2, ROWS, d2, 1, d2, kPacked, l16 / 16, block, scores, l16);
        bk_bf16_product(qRows + (size_t)i0 * d2, ROWS, d2, 1, d2, pkWide + (size_t)((i0 + 16) / 16) * block, s.c2Width / 16, block, c2,
                s.c2Width);
        for (int jb = 0; jb < l16; jb += 16) {
            // p2c(i0 + r, jb + l) = E[jb + l][t − start] at t = i0 + r + length − 1 − jb − l: for each key l, 16
            // consecutive columns over r; the 16 × 16 block transposed gives them by row.
            __m512 p2c[16];
            for (int l = 0; l < 16; l++) {
                int j = jb + l;
                p2c[l] = _mm512_loadu_ps(e + (size_t)j * s.eWidth + (i0 + length - 1 - j - e_start(length, j / 8 * 8)));
            }
            transpose16(p2c);
            __mmask16 valid = length - jb >= 16 ? 0xFFFF : (__mmask16)((1u << (length - jb)) - 1);
            for (int r = 0; r < ROWS; r++) {
                float *sr = scores + (size_t)r * l16 + jb;
                // c2p(i, jb + l) = C2[i][t] at t = i + length − 1 − jb − l: 16 consecutive columns, reversed.
                __m512 c2p = _mm512_permutexvar_ps(reverse, _mm512_loadu_ps(c2 + (size_t)r * s.c2Width + r + length - jb));
                __m512 v0 = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(sr), c2p), p2c[r]), scaleV);
                _mm512_storeu_ps(sr, _mm512_mask_mov_ps(minusInfinity, valid, v0));
            }
        }
        // Softmax of each row in float32: lane l sums the keys j ≡ l (mod 16) in order, then lane_total.
        for (int r = 0; r < ROWS; r++) {
            float *sr = scores + (size_t)r * l16;
            __m512 top = minusInfinity;
            for (int jb = 0; jb < l16; jb += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(sr + jb));
            __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(top));
            __m512 sum = _mm512_setzero_ps();
            for (int jb = 0; jb < l16; jb += 16) {
                __m512 x = exp16(_mm512_sub_ps(_mm512_loadu_ps(sr + jb), m));
                _mm512_storeu_ps(sr + jb, x);
                sum = _mm512_add_ps(sum, x);
            }
            float lanes[16];
            _mm512_storeu_ps(lanes, sum);
            __m512 inverse = _mm512_set1_ps(1.0f / lane_total(lanes));
            uint32_t *pr = probs + (size_t)r * (l16 / 2);
            int jb = 0;
            for (; jb + 32 <= l16; jb += 32)
                _mm512_storeu_si512((void *)(pr + jb / 2),
                                    (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(_mm512_loadu_ps(sr + jb + 16), inverse),
                                                                 _mm512_mul_ps(_mm512_loadu_ps(sr + jb), inverse)));
            if (jb < l16) _mm256_storeu_si256((__m256i *)(pr + jb / 2), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(sr + jb), inverse)));
        }
        // Context rows: P · V.
        bk_bf16_product(probs, ROWS, l16 / 2, 1, l2, vPacked, dBlocks, (size_t)l2 * 16, out, (size_t)dBlocks * 16);
        int rows = length - i0 < ROWS ? length - i0 : ROWS;
        for (int r = 0; r < rows; r++) memcpy(ctx + (size_t)(i0 + r) * ldctx, out + (size_t)r * dBlocks * 16, (size_t)d * 4);
    }
}

#include "ckernels.h"
#include "bf16_internal.h"

#include <immintrin.h>
#include <string.h>

// Register tiles of vdpbf16ps products with strided operands (the attention's products), and the vector rounding of
// rows to bf16. Every output is one float32 sum over its k pairs in order from zero, as in bk_bf16_gemm, whatever tile
// computes it.

#define BK_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

// acc[r][b] = Σ_p dp(a[r·ars + p·aps], b[b·bbs + p·16]) for R rows × B blocks of 16 columns, stored at c[r·ldc + 16·b].
BK_BF16 __attribute__((always_inline))
static inline void tile(int R, int B, const uint32_t *a, size_t ars, size_t aps, int k2, const uint32_t *b, size_t bbs,
                        float *c, size_t ldc) {
    __m512 acc[8][2];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < B; j++) acc[r][j] = _mm512_setzero_ps();
    for (int p = 0; p < k2; p++) {
        __m512bh w[2];
        for (int j = 0; j < B; j++) w[j] = (__m512bh)_mm512_loadu_si512((const void *)(b + j * bbs + (size_t)p * 16));
        for (int r = 0; r < R; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r * ars + (size_t)p * aps]);
            for (int j = 0; j < B; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], x, w[j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < B; j++) _mm512_storeu_ps(c + r * ldc + 16 * j, acc[r][j]);
}

typedef void (*tile_fn)(const uint32_t *, size_t, size_t, int, const uint32_t *, size_t, float *, size_t);
#define BK_TILE(R, B)                                                                                              \
    BK_BF16 static void tile_##R##x##B(const uint32_t *a, size_t ars, size_t aps, int k2, const uint32_t *b,        \
                                       size_t bbs, float *c, size_t ldc) {                                         \
        tile(R, B, a, ars, aps, k2, b, bbs, c, ldc);                                                               \
    }
BK_TILE(8, 2) BK_TILE(4, 2) BK_TILE(2, 2) BK_TILE(1, 2) BK_TILE(8, 1) BK_TILE(4, 1) BK_TILE(2, 1) BK_TILE(1, 1)
static const tile_fn tiles[2][4] = {{tile_8x1, tile_4x1, tile_2x1, tile_1x1}, {tile_8x2, tile_4x2, tile_2x2, tile_1x2}};

void bk_bf16_product(const uint32_t *a, int m, size_t ars, size_t aps, int k2, const uint32_t *b, int blocks, size_t bbs,
                     float *c, size_t ldc) {
    static const int rowsOf[4] = {8, 4, 2, 1};
    for (int j = 0; j < blocks;) {
        int wide = blocks - j >= 2;
        int r = 0;
        for (int g = 0; g < 4; g++)
            for (; r + rowsOf[g] <= m; r += rowsOf[g])
                tiles[wide][g](a + r * ars, ars, aps, k2, b + j * bbs, bbs, c + r * ldc + 16 * j, ldc);
        j += wide ? 2 : 1;
    }
}

// Rows of m × k floats (stride ld) as bf16 pairs, (k + 1) / 2 words a row at stride ldo; rows m ..< rows are zero.
BK_BF16 void bk_bf16_round_rows_vector(const float *x, int m, int k, size_t ld, uint32_t *out, size_t ldo, int rows) {
    int k2 = (k + 1) / 2;
    for (int r = 0; r < rows; r++) {
        uint32_t *o = out + (size_t)r * ldo;
        if (r >= m) {
            memset(o, 0, (size_t)k2 * 4);
            continue;
        }
        const float *xr = x + (size_t)r * ld;
        for (int c = 0; c < k; c += 32) {
            int left = k - c;
            __mmask16 lo = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __mmask16 hi = left >= 32 ? 0xFFFF : (left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1));
            __m512bh pairs = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, xr + c + 16), _mm512_maskz_loadu_ps(lo, xr + c));
            int words = (left >= 32 ? 32 : left + 1) / 2;
            _mm512_mask_storeu_epi32(o + c / 2, (__mmask16)((1u << words) - 1), (__m512i)pairs);
        }
    }
}

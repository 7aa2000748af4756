#include "ckernels.h"
#include "bf16_internal.h"
#include "cpu_dispatch.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

int bk_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  // OSXSAVE
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6) != 0xE6) return 0;  // xmm, ymm, opmask and zmm state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 16)) && (b & (1u << 30));  // AVX512F, AVX512BW
}

int bk_has_avx512_bf16(void) {
    unsigned a, b, c, d;
    if (!bk_has_avx512() || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a & (1u << 5)) != 0;  // AVX512_BF16
}

// The row kernels' choice, made once (0: AVX2 tiles, 1: AVX-512 tiles); bk_set_row_kernels overrides it for tests.
static int row_kernels = -1;

static int use_avx512_rows(void) { return bk_latched_path(&row_kernels, bk_has_avx512); }

int bk_set_row_kernels(int avx512) {
    int v = avx512 && bk_has_avx512();
    __atomic_store_n(&row_kernels, v, __ATOMIC_RELAXED);
    return v;
}

size_t bk_bf16_packed_words(int n, int k) { return (size_t)((n + 15) / 16) * 16 * (size_t)((k + 1) / 2); }

void bk_bf16_pack(const float *w, int n, int k, uint32_t *packed) {
    int k2 = (k + 1) / 2, blocks = (n + 15) / 16;
    for (int jb = 0; jb < blocks; jb++)
        for (int p = 0; p < k2; p++)
            for (int lane = 0; lane < 16; lane++) {
                int j = jb * 16 + lane;
                uint16_t lo = 0, hi = 0;
                if (j < n) {
                    lo = bk_bf16_bits(w[(size_t)j * k + 2 * p]);
                    if (2 * p + 1 < k) hi = bk_bf16_bits(w[(size_t)j * k + 2 * p + 1]);
                }
                packed[((size_t)jb * k2 + p) * 16 + lane] = (uint32_t)lo | ((uint32_t)hi << 16);
            }
}

// Whether AVX512_BF16 is present, asked once (CPUID traps to the hypervisor on virtual machines).
static int vector_bf16(void) {
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        v = bk_has_avx512_bf16();
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}

void bk_bf16_round_rows(const float *a, int m, int k, int lda, uint32_t *out) {
    int k2 = (k + 1) / 2;
    if (vector_bf16()) {
        bk_bf16_round_rows_vector(a, m, k, (size_t)lda, out, (size_t)k2, m);
        return;
    }
    for (int r = 0; r < m; r++)
        for (int p = 0; p < k2; p++) {
            uint16_t lo = bk_bf16_bits(a[(size_t)r * lda + 2 * p]);
            uint16_t hi = 2 * p + 1 < k ? bk_bf16_bits(a[(size_t)r * lda + 2 * p + 1]) : 0;
            out[(size_t)r * k2 + p] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
}

// Up to 4 rows × 64 columns per tile; each accumulator sees the k pairs in order whatever the tile's size.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_tile(const uint32_t *a, int rows, int k2, const uint32_t *panel, size_t blockStride, int blocks,
                      float *c, int ldc, int width) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
        for (int b = 0; b < 4; b++) acc[r][b] = _mm512_setzero_ps();
    for (int p = 0; p < k2; p++) {
        __m512i w[4];
        for (int b = 0; b < blocks; b++) w[b] = _mm512_loadu_si512((const void *)(panel + b * blockStride + (size_t)p * 16));
        for (int r = 0; r < rows; r++) {
            __m512i x = _mm512_set1_epi32((int)a[(size_t)r * k2 + p]);
            for (int b = 0; b < blocks; b++) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)x, (__m512bh)w[b]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < blocks; b++) {
            int left = width - b * 16;
            __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            _mm512_mask_storeu_ps(c + (size_t)r * ldc + b * 16, mask, acc[r][b]);
        }
}

// The full 4 × 64 tile written out, so the 16 accumulators stay in registers; the same operations per
// accumulator as bf16_tile.
#define BK_ROW(r, acc0, acc1, acc2, acc3) do { \
        __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[(size_t)(r) * k2 + p]); \
        acc0 = _mm512_dpbf16_ps(acc0, x, w0); acc1 = _mm512_dpbf16_ps(acc1, x, w1); \
        acc2 = _mm512_dpbf16_ps(acc2, x, w2); acc3 = _mm512_dpbf16_ps(acc3, x, w3); } while (0)

// How far ahead (in pairs, 64 bytes a block: 3 KB) a tile streaming its weights from memory (up to 8 rows, the
// decoder step) asks for them into L2, so that the loads behind the dot products do not issue late; never past the
// block's end (the next block may be another worker's).
enum { STREAM_AHEAD = 48 };

__attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline))
static inline void bf16_tile_full_body(const uint32_t *a, int k2, const uint32_t *panel, size_t blockStride, float *c, int ldc,
                                       int streaming) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (int p = 0; p < k2; p++) {
        const uint32_t *w = panel + (size_t)p * 16;
        if (streaming && p + STREAM_AHEAD < k2)
            for (int b = 0; b < 4; b++) _mm_prefetch((const char *)(w + b * blockStride + STREAM_AHEAD * 16), _MM_HINT_T1);
        __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)w);
        __m512bh w1 = (__m512bh)_mm512_loadu_si512((const void *)(w + blockStride));
        __m512bh w2 = (__m512bh)_mm512_loadu_si512((const void *)(w + 2 * blockStride));
        __m512bh w3 = (__m512bh)_mm512_loadu_si512((const void *)(w + 3 * blockStride));
        BK_ROW(0, c00, c01, c02, c03);
        BK_ROW(1, c10, c11, c12, c13);
        BK_ROW(2, c20, c21, c22, c23);
        BK_ROW(3, c30, c31, c32, c33);
    }
    _mm512_storeu_ps(c, c00); _mm512_storeu_ps(c + 16, c01); _mm512_storeu_ps(c + 32, c02); _mm512_storeu_ps(c + 48, c03);
    c += ldc;
    _mm512_storeu_ps(c, c10); _mm512_storeu_ps(c + 16, c11); _mm512_storeu_ps(c + 32, c12); _mm512_storeu_ps(c + 48, c13);
    c += ldc;
    _mm512_storeu_ps(c, c20); _mm512_storeu_ps(c + 16, c21); _mm512_storeu_ps(c + 32, c22); _mm512_storeu_ps(c + 48, c23);
    c += ldc;
    _mm512_storeu_ps(c, c30); _mm512_storeu_ps(c + 16, c31); _mm512_storeu_ps(c + 32, c32); _mm512_storeu_ps(c + 48, c33);
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_tile_full(const uint32_t *a, int k2, const uint32_t *panel, size_t blockStride, float *c, int ldc, int streaming) {
    if (streaming) bf16_tile_full_body(a, k2, panel, blockStride, c, ldc, 1);
    else bf16_tile_full_body(a, k2, panel, blockStride, c, ldc, 0);
}

// R rows × B blocks of 16 columns with R and B known at compile time, so the accumulators stay in registers (the
// decoder's shapes: 8 rows × 2 blocks, 2 × 4, 1 × 4); the same operations per accumulator as bf16_tile.
__attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline))
static inline void bf16_tile_rb(int R, int B, const uint32_t *a, int k2, const uint32_t *panel, size_t blockStride,
                                float *c, int ldc, int streaming) {
    __m512 acc[8][4];
    for (int r = 0; r < R; r++)
        for (int b = 0; b < B; b++) acc[r][b] = _mm512_setzero_ps();
    for (int p = 0; p < k2; p++) {
        __m512bh w[4];
        for (int b = 0; b < B; b++) {
            if (streaming && p + STREAM_AHEAD < k2)
                _mm_prefetch((const char *)(panel + b * blockStride + (size_t)(p + STREAM_AHEAD) * 16), _MM_HINT_T1);
            w[b] = (__m512bh)_mm512_loadu_si512((const void *)(panel + b * blockStride + (size_t)p * 16));
        }
        for (int r = 0; r < R; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * k2 + p]);
            for (int b = 0; b < B; b++) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], x, w[b]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int b = 0; b < B; b++) _mm512_storeu_ps(c + (size_t)r * ldc + b * 16, acc[r][b]);
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_tile_8x2(const uint32_t *a, int k2, const uint32_t *panel, size_t blockStride, float *c, int ldc, int streaming) {
    if (streaming) bf16_tile_rb(8, 2, a, k2, panel, blockStride, c, ldc, 1);
    else bf16_tile_rb(8, 2, a, k2, panel, blockStride, c, ldc, 0);
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_tile_2x4(const uint32_t *a, int k2, const uint32_t *panel, size_t blockStride, float *c, int ldc, int streaming) {
    if (streaming) bf16_tile_rb(2, 4, a, k2, panel, blockStride, c, ldc, 1);
    else bf16_tile_rb(2, 4, a, k2, panel, blockStride, c, ldc, 0);
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_tile_1x4(const uint32_t *a, int k2, const uint32_t *panel, size_t blockStride, float *c, int ldc, int streaming) {
    if (streaming) bf16_tile_rb(1, 4, a, k2, panel, blockStride, c, ldc, 1);
    else bf16_tile_rb(1, 4, a, k2, panel, blockStride, c, ldc, 0);
}

// Full-width panels go by 8 rows (two 8 × 32 halves, each weight chunk loaded once for all 8 rows), then 4, 2, 1.
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void bf16_panel_avx512(const uint32_t *a, int m, int k2, const uint32_t *panel, size_t blockStride, int blocks,
                              float *c, int ldc, int width) {
    int r = 0, s = m <= 8;
    if (width == 64 && use_avx512_rows()) {
        for (; r + 8 <= m; r += 8) {
            bf16_tile_8x2(a + (size_t)r * k2, k2, panel, blockStride, c + (size_t)r * ldc, ldc, s);
            bf16_tile_8x2(a + (size_t)r * k2, k2, panel + 2 * blockStride, blockStride, c + (size_t)r * ldc + 32, ldc, s);
        }
        for (; r + 4 <= m; r += 4) bf16_tile_full(a + (size_t)r * k2, k2, panel, blockStride, c + (size_t)r * ldc, ldc, s);
        for (; r + 2 <= m; r += 2) bf16_tile_2x4(a + (size_t)r * k2, k2, panel, blockStride, c + (size_t)r * ldc, ldc, s);
        for (; r < m; r++) bf16_tile_1x4(a + (size_t)r * k2, k2, panel, blockStride, c + (size_t)r * ldc, ldc, s);
    }
    for (; r < m; r += 4) {
        int rows = m - r < 4 ? m - r : 4;
        bf16_tile(a + (size_t)r * k2, rows, k2, panel, blockStride, blocks, c + (size_t)r * ldc, ldc, width);
    }
}

// The instruction's arithmetic in scalar code: per pair, the odd then the even product added in float32.
static void bf16_tile_portable(const uint32_t *a, int rows, int k2, const uint32_t *panel, size_t blockStride,
                               int blocks, float *c, int ldc, int width) {
    for (int r = 0; r < rows; r++)
        for (int col = 0; col < width && col < blocks * 16; col++) {
            const uint32_t *w = panel + (col / 16) * blockStride + col % 16;
            float acc = 0;
            for (int p = 0; p < k2; p++) {
                uint32_t x = a[(size_t)r * k2 + p], y = w[(size_t)p * 16];
                acc += bk_bf16_float((uint16_t)(x >> 16)) * bk_bf16_float((uint16_t)(y >> 16));
                acc += bk_bf16_float((uint16_t)x) * bk_bf16_float((uint16_t)y);
            }
            c[(size_t)r * ldc + col] = acc;
        }
}

void bk_bf16_gemm(const uint32_t *a, int m, int k, const uint32_t *packed, int n0, int n1,
                  float *c, int ldc, int vector) {
    int k2 = (k + 1) / 2;
    size_t blockStride = (size_t)k2 * 16;
    for (int j = n0; j < n1; j += 64) {
        int width = n1 - j < 64 ? n1 - j : 64, blocks = (width + 15) / 16;
        const uint32_t *panel = packed + (size_t)(j / 16) * blockStride;
        if (vector) {
            bf16_panel_avx512(a, m, k2, panel, blockStride, blocks, c + j, ldc, width);
        } else {
            for (int r = 0; r < m; r += 4) {
                int rows = m - r < 4 ? m - r : 4;
                bf16_tile_portable(a + (size_t)r * k2, rows, k2, panel, blockStride, blocks, c + (size_t)r * ldc + j, ldc, width);
            }
        }
    }
}

void bk_int8_quantize(const float *w, int n, int k, int8_t *q, float *scale) {
    for (int j = 0; j < n; j++) {
        float top = 0;
        for (int i = 0; i < k; i++) top = fmaxf(top, fabsf(w[(size_t)j * k + i]));
        float s = top > 0 ? top / 127.0f : 1.0f;
        scale[j] = s;
        for (int i = 0; i < k; i++) {
            float v = nearbyintf(w[(size_t)j * k + i] / s);
            q[(size_t)j * k + i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
    }
}

enum { W_F32, W_BF16 };
static void rows512(int kind, const float *x, int m, int k, const void *w, int n0, int n1, float *y, int ldy);

// Float32 rows against float32 weights or bf16-held weights (the interleaved groups of WeightMatrix.bf16: word j of
// a 16-value group holds value j in its high half and value j + 8 in its low half): per output two 8-lane
// accumulators over k in order and one fixed reduction, alone or in tiles of four.
__attribute__((target("avx2,fma")))
static inline float lanes_sum(__m256 lo, __m256 hi) {
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(lo, hi));
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

#define BK_WIDE_ROWS(NAME, WEIGHT_T, LOAD)                                                                        \
    __attribute__((target("avx2,fma"))) static void NAME##_row(const float *xr, int k, const WEIGHT_T *w, float *out) { \
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();                                                 \
        for (int i = 0; i < k; i += 16) {                                                                          \
            __m256 w0, w1;                                                                                         \
            LOAD(w + i, w0, w1);                                                                                   \
            lo = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr + i), lo);                                                 \
            hi = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + i + 8), hi);                                             \
        }                                                                                                          \
        *out = lanes_sum(lo, hi);                                                                                  \
    }                                                                                                              \
    __attribute__((target("avx2,fma"))) static void NAME##_rows4(const float *x, int k, const WEIGHT_T *w, float *y, int ldy) { \
        const float *x0 = x, *x1 = x + k, *x2 = x + 2 * (size_t)k, *x3 = x + 3 * (size_t)k;                      \
        __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0; \
        for (int i = 0; i < k; i += 16) {                                                                          \
            __m256 w0, w1;                                                                                         \
            LOAD(w + i, w0, w1);                                                                                   \
            lo0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x0 + i), lo0); hi0 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x0 + i + 8), hi0); \
            lo1 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1 + i), lo1); hi1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + i + 8), hi1); \
            lo2 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x2 + i), lo2); hi2 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x2 + i + 8), hi2); \
            lo3 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x3 + i), lo3); hi3 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x3 + i + 8), hi3); \
        }                                                                                                          \
        y[0] = lanes_sum(lo0, hi0); y[ldy] = lanes_sum(lo1, hi1);                                                  \
        y[2 * (size_t)ldy] = lanes_sum(lo2, hi2); y[3 * (size_t)ldy] = lanes_sum(lo3, hi3);                        \
    }

#define BK_LOAD_F32(p, w0, w1) do { w0 = _mm256_loadu_ps(p); w1 = _mm256_loadu_ps((p) + 8); } while (0)
#define BK_LOAD_BF16(p, w0, w1) do {                                                                   \
        __m256i words = _mm256_loadu_si256((const __m256i *)(p));                                          \
        w0 = _mm256_castsi256_ps(_mm256_and_si256(words, _mm256_set1_epi32((int)0xFFFF0000u)));            \
        w1 = _mm256_castsi256_ps(_mm256_slli_epi32(words, 16)); } while (0)

BK_WIDE_ROWS(f32, float, BK_LOAD_F32)
BK_WIDE_ROWS(bf16w, uint16_t, BK_LOAD_BF16)

__attribute__((target("avx2,fma")))
void bk_f32_rows(const float *x, int m, int k, const float *w, int n0, int n1, float *y, int ldy) {
    // A single row streams faster through the AVX2 loop, one weight row at a time (measured interleaved: bf16-held
    // 30 against 22 GB/s on one core, f32 30 against 27); the bits are the same.
    if (use_avx512_rows() && m > 1) {
        rows512(W_F32, x, m, k, w, n0, n1, y, ldy);
        return;
    }
    for (int j = n0; j < n1; j++) {
        int r = 0;
        for (; r + 4 <= m; r += 4) f32_rows4(x + (size_t)r * k, k, w + (size_t)j * k, y + (size_t)r * ldy + j, ldy);
        for (; r < m; r++) f32_row(x + (size_t)r * k, k, w + (size_t)j * k, y + (size_t)r * ldy + j);
    }
}

__attribute__((target("avx2,fma")))
void bk_bf16w_rows(const float *x, int m, int k, const uint16_t *bits, int n0, int n1, float *y, int ldy) {
    // A single row streams faster through the AVX2 loop, one weight row at a time (measured interleaved: bf16-held
    // 30 against 22 GB/s on one core, f32 30 against 27); the bits are the same.
    if (use_avx512_rows() && m > 1) {
        rows512(W_BF16, x, m, k, bits, n0, n1, y, ldy);
        return;
    }
    for (int j = n0; j < n1; j++) {
        int r = 0;
        for (; r + 4 <= m; r += 4) bf16w_rows4(x + (size_t)r * k, k, bits + (size_t)j * k, y + (size_t)r * ldy + j, ldy);
        for (; r < m; r++) bf16w_row(x + (size_t)r * k, k, bits + (size_t)j * k, y + (size_t)r * ldy + j);
    }
}

// AVX-512 tiles of R rows × C weight rows (outputs), each weight chunk loaded once per tile and used by all R rows;
// C streams of weights in flight hide the FMA latency at one row. One zmm accumulator per output holds exactly the
// AVX2 kernels' two 8-lane accumulators (lanes 0–7 the first, 8–15 the second: values i…i+7 and i+8…i+15 of each
// block of 16), and the same finish code reduces it, so every output has the same bits on either path, whatever the
// tile, row count or position.
__attribute__((target("avx512f,avx512bw"), always_inline))
static inline __m512 weights16(int kind, const void *w, int i) {
    if (kind == W_F32) return _mm512_loadu_ps((const float *)w + i);
    // A group of 16 bf16 values is 8 words: high halves are values 0…7, low halves 8…15 (WeightMatrix.bf16).
    __m512i words = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
    __m512i high = _mm512_and_si512(words, _mm512_set1_epi32((int)0xFFFF0000u));
    return _mm512_castsi512_ps(_mm512_mask_slli_epi32(high, (__mmask16)0xFF00, words, 16));
}

__attribute__((target("avx512f,avx512bw"), always_inline))
static inline void tile512(int kind, int R, int C, const float *x, int k, const void *w, int j, float *y, int ldy) {
    size_t unit = kind == W_F32 ? 4 : 2;
    const char *wj = (const char *)w + (size_t)j * k * unit;
    __m512 acc[8][8];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= k; i += 16) {
        __m512 wv[8];
        for (int c = 0; c < C; c++) wv[c] = weights16(kind, wj + (size_t)c * k * unit, i);
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)r * k + i);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(wv[c], xv, acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            __m256 lo = _mm512_castps512_ps256(acc[r][c]);
            __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][c]), 1));
            y[(size_t)r * ldy + j + c] = lanes_sum(lo, hi);
        }
}

#define BK_TILE512(KIND, R, C)                                                                                   \
    __attribute__((target("avx512f,avx512bw"))) static void tile512_##KIND##_##R##x##C(                           \
        const float *x, int k, const void *w, int j, float *y, int ldy) {                                         \
        tile512(KIND, R, C, x, k, w, j, y, ldy);                                                                 \
    }
#define BK_TILES512(KIND) BK_TILE512(KIND, 8, 2) BK_TILE512(KIND, 4, 4) BK_TILE512(KIND, 2, 8) BK_TILE512(KIND, 1, 8) \
    BK_TILE512(KIND, 8, 1) BK_TILE512(KIND, 4, 1) BK_TILE512(KIND, 2, 1) BK_TILE512(KIND, 1, 1)
BK_TILES512(W_F32)
BK_TILES512(W_BF16)

typedef void (*tile512_fn)(const float *, int, const void *, int, float *, int);
#define BK_TILE_TABLE(KIND) { tile512_##KIND##_8x2, tile512_##KIND##_4x4, tile512_##KIND##_2x8, tile512_##KIND##_1x8, \
                              tile512_##KIND##_8x1, tile512_##KIND##_4x1, tile512_##KIND##_2x1, tile512_##KIND##_1x1 }
static const tile512_fn tiles512[2][8] = { BK_TILE_TABLE(W_F32), BK_TILE_TABLE(W_BF16) };

// Outputs in strips of up to 8 weight rows; within a strip the rows go by 8, 4, 2, 1, each group with the widest tile
// that fits in registers (8×2, 4×4, 2×8, 1×8), a narrower strip's remainder by single weight rows.
static void rows512(int kind, const float *x, int m, int k, const void *w, int n0, int n1, float *y, int ldy) {
    static const int rowsOf[4] = {8, 4, 2, 1}, columnsOf[4] = {2, 4, 8, 8};
    for (int j = n0; j < n1; j += 8) {
        int strip = n1 - j < 8 ? n1 - j : 8;
        int r = 0;
        for (int g = 0; g < 4; g++) {
            int R = rowsOf[g], C = columnsOf[g];
            for (; r + R <= m; r += R) {
                const float *xr = x + (size_t)r * k;
                float *yr = y + (size_t)r * ldy;
                int c = 0;
                for (; c + C <= strip; c += C) tiles512[kind][g](xr, k, w, j + c, yr, ldy);
                for (; c < strip; c++) tiles512[kind][4 + g](xr, k, w, j + c, yr, ldy);
            }
        }
    }
}

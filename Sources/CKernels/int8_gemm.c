#include "ckernels.h"
#include "cpu_dispatch.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

// int8 × int8 products with int32 sums. Weights sit in the dot-product layout: blocks of 16 columns, k in groups of
// four bytes, so one 64-byte vector holds one k-group of 16 columns, as vpdpbusd reads it. Activations are quantized
// per row and stored shifted by +128 (vpdpbusd multiplies unsigned by signed bytes); the VNNI path starts each sum at
// −128 · Σ_k w[j][k] to take the shift back out, the AVX2 path undoes it on the bytes, the portable path in scalar
// code. Integer sums are exact, so every path, tile and split gives the same int32, and each output is then the same
// float expression, (float)sum · (rowScale · scale[j]).

enum { PATH_PORTABLE, PATH_AVX2, PATH_VNNI };

int bk_i8_best_path(void) {
    unsigned a, b, c, d;
    if (bk_has_avx512() && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11))) return PATH_VNNI;  // AVX512_VNNI
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 5))) return PATH_AVX2;
    return PATH_PORTABLE;
}

static int i8_path = -1;

static int current_path(void) { return bk_latched_path(&i8_path, bk_i8_best_path); }

int bk_i8_set_path(int path) { return bk_set_latched_path(&i8_path, bk_i8_best_path, path); }

size_t bk_i8_packed_bytes(int n, int k) { return (size_t)((n + 15) / 16) * 16 * (size_t)((k + 3) / 4 * 4); }

void bk_i8_pack(const int8_t *q, int n, int k, int8_t *packed, int32_t *colsum) {
    int groups = (k + 3) / 4, blocks = (n + 15) / 16;
    for (int jb = 0; jb < blocks; jb++)
        for (int lane = 0; lane < 16; lane++) {
            int j = jb * 16 + lane;
            int32_t sum = 0;
            for (int g = 0; g < groups; g++)
                for (int t = 0; t < 4; t++) {
                    int i = 4 * g + t;
                    int8_t v = j < n && i < k ? q[(size_t)j * k + i] : 0;
                    packed[((size_t)jb * groups + g) * 64 + lane * 4 + t] = v;
                    sum += v;
                }
            colsum[j] = sum;
        }
}

// Per row: amax = max |x| (exact in any order), q = round-to-nearest-even(x · (127 / amax)) clamped to ±127, stored
// as q + 128; the tail past k up to the group of four holds 128 (q = 0). The vector and scalar parts compute the
// same float product and the same rounding, so a row quantizes the same whatever its length.
__attribute__((target("avx2,fma")))
void bk_i8_quantize_rows(const float *x, int m, int k, int ldx, uint8_t *a, float *rowScale) {
    int k4 = (k + 3) / 4 * 4;
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)r * ldx;
        uint8_t *ar = a + (size_t)r * k4;
        __m256 top = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= k; i += 8) top = _mm256_max_ps(top, _mm256_and_ps(_mm256_loadu_ps(xr + i), magnitude));
        float lanes[8], amax = 0;
        _mm256_storeu_ps(lanes, top);
        for (int t = 0; t < 8; t++) amax = fmaxf(amax, lanes[t]);
        for (; i < k; i++) amax = fmaxf(amax, fabsf(xr[i]));
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        rowScale[r] = amax / 127.0f;
        const __m256 vinv = _mm256_set1_ps(inv);
        const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127), shift = _mm256_set1_epi32(128);
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        i = 0;
        for (; i + 32 <= k; i += 32) {
            __m256i v[4];
            for (int p = 0; p < 4; p++) {
                __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + i + 8 * p), vinv));
                v[p] = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), shift);
            }
            __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            _mm256_storeu_si256((__m256i *)(ar + i), _mm256_permutevar8x32_epi32(bytes, order));
        }
        for (; i < k; i++) {
            float q = nearbyintf(xr[i] * inv);
            q = q > 127 ? 127 : (q < -127 ? -127 : q);
            ar[i] = (uint8_t)((int)q + 128);
        }
        for (; i < k4; i++) ar[i] = 128;
    }
}

// ---- AVX512-VNNI: tiles of R rows × B blocks of 16 columns, all accumulators in registers ----

// How far ahead (in k-groups of 64 bytes, 3 KB) a tile that streams its weights from memory asks for them into L2.
// Without it the dot products fill the core's window and the loads behind them issue late: at 8 rows the weights
// streamed at about half the rate of one row (measured on Zen 4, 2 cores).
enum { STREAM_AHEAD = 48 };

__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline void vnni_tile(int R, int B, const uint8_t *a, int lda, int groups, const int8_t *w, size_t blockStride,
                             const int32_t *colsum, const float *scale, const float *rowScale, int width,
                             float *y, int ldy, int32_t *sums, int streaming, int nextBlocks) {
    __m512i acc[8][4];
    for (int b = 0; b < B; b++) {
        __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512((const void *)(colsum + 16 * b)), 7));
        for (int r = 0; r < R; r++) acc[r][b] = start;
    }
    for (int g = 0; g < groups; g++) {
        __m512i wv[4];
        for (int b = 0; b < B; b++) {
            // Past the block's end only into the next panel of this call (`nextBlocks` of its blocks): a block
            // beyond the call may go to another worker, and would cost a stray 3 KB read. Carrying on into the next
            // panel keeps its first groups from starting at memory latency.
            if (streaming) {
                if (g + STREAM_AHEAD < groups) _mm_prefetch((const char *)(w + b * blockStride + (size_t)(g + STREAM_AHEAD) * 64), _MM_HINT_T1);
                else if (b < nextBlocks)
                    _mm_prefetch((const char *)(w + (size_t)(B + b) * blockStride + (size_t)(g + STREAM_AHEAD - groups) * 64), _MM_HINT_T1);
            }
            wv[b] = _mm512_loadu_si512((const void *)(w + b * blockStride + (size_t)g * 64));
        }
        for (int r = 0; r < R; r++) {
            int32_t word;
            memcpy(&word, a + (size_t)r * lda + 4 * g, 4);
            __m512i xv = _mm512_set1_epi32(word);
            for (int b = 0; b < B; b++) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], xv, wv[b]);
        }
    }
    for (int b = 0; b < B; b++) {
        int left = width - 16 * b;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 columnScale = _mm512_loadu_ps(scale + 16 * b);
        for (int r = 0; r < R; r++) {
            if (sums) {
                _mm512_mask_storeu_epi32(sums + (size_t)r * ldy + 16 * b, mask, acc[r][b]);
            } else {
                __m512 factor = _mm512_mul_ps(_mm512_set1_ps(rowScale[r]), columnScale);
                _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16 * b, mask, _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][b]), factor));
            }
        }
    }
}

typedef void (*i8_tile_fn)(const uint8_t *, int, int, const int8_t *, size_t, const int32_t *, const float *, const float *,
                           int, float *, int, int32_t *, int, int);

#define BK_VNNI_TILE(R, B)                                                                                          \
    __attribute__((target("avx512f,avx512bw,avx512vnni"))) static void vnni_##R##x##B(                              \
        const uint8_t *a, int lda, int groups, const int8_t *w, size_t blockStride, const int32_t *colsum,          \
        const float *scale, const float *rowScale, int width, float *y, int ldy, int32_t *sums, int streaming,        \
        int nextBlocks) {                                                                                            \
        if (streaming)                                                                                               \
            vnni_tile(R, B, a, lda, groups, w, blockStride, colsum, scale, rowScale, width, y, ldy, sums, 1, nextBlocks); \
        else                                                                                                         \
            vnni_tile(R, B, a, lda, groups, w, blockStride, colsum, scale, rowScale, width, y, ldy, sums, 0, 0);     \
    }
#define BK_VNNI_ROWS(R) BK_VNNI_TILE(R, 1) BK_VNNI_TILE(R, 2) BK_VNNI_TILE(R, 3) BK_VNNI_TILE(R, 4)
BK_VNNI_ROWS(1) BK_VNNI_ROWS(2) BK_VNNI_ROWS(3) BK_VNNI_ROWS(4) BK_VNNI_ROWS(5) BK_VNNI_ROWS(6)
BK_VNNI_TILE(7, 1) BK_VNNI_TILE(7, 2) BK_VNNI_TILE(8, 1) BK_VNNI_TILE(8, 2)

// [R − 1][B − 1]; 7 and 8 rows stop at 2 blocks (see bk_i8_gemm).
static const i8_tile_fn vnni_tiles[8][4] = {
    {vnni_1x1, vnni_1x2, vnni_1x3, vnni_1x4}, {vnni_2x1, vnni_2x2, vnni_2x3, vnni_2x4},
    {vnni_3x1, vnni_3x2, vnni_3x3, vnni_3x4}, {vnni_4x1, vnni_4x2, vnni_4x3, vnni_4x4},
    {vnni_5x1, vnni_5x2, vnni_5x3, vnni_5x4}, {vnni_6x1, vnni_6x2, vnni_6x3, vnni_6x4},
    {vnni_7x1, vnni_7x2, NULL, NULL},         {vnni_8x1, vnni_8x2, NULL, NULL},
};

// ---- AVX2: 4 rows × 16 columns; the shift is undone on the bytes and the sign moved onto the weight, so that
// vpmaddubsw's pair sums (at most 2 · 127 · 127) never saturate ----

__attribute__((target("avx2"), always_inline))
static inline void avx2_tile(int R, const uint8_t *a, int lda, int groups, const int8_t *w, const float *scale,
                             const float *rowScale, int width, float *y, int ldy, int32_t *sums) {
    __m256i acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
    for (int g = 0; g < groups; g++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + (size_t)g * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + (size_t)g * 64 + 32));
        for (int r = 0; r < R; r++) {
            int32_t word;
            memcpy(&word, a + (size_t)r * lda + 4 * g, 4);
            __m256i xs = _mm256_xor_si256(_mm256_set1_epi32(word), flip);
            __m256i xa = _mm256_abs_epi8(xs);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(w0, xs)), ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(w1, xs)), ones));
        }
    }
    for (int r = 0; r < R; r++)
        for (int h = 0; h < 2; h++) {
            int32_t out[8];
            float values[8];
            _mm256_storeu_si256((__m256i *)out, acc[r][h]);
            __m256 factor = _mm256_mul_ps(_mm256_set1_ps(rowScale[r]), _mm256_loadu_ps(scale + 8 * h));
            _mm256_storeu_ps(values, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][h]), factor));
            for (int c = 0; c < 8 && 8 * h + c < width; c++) {
                if (sums) sums[(size_t)r * ldy + 8 * h + c] = out[c];
                else y[(size_t)r * ldy + 8 * h + c] = values[c];
            }
        }
}

#define BK_AVX2_TILE(R)                                                                                             \
    __attribute__((target("avx2"))) static void avx2_##R(const uint8_t *a, int lda, int groups, const int8_t *w,   \
        const float *scale, const float *rowScale, int width, float *y, int ldy, int32_t *sums) {                    \
        avx2_tile(R, a, lda, groups, w, scale, rowScale, width, y, ldy, sums);                                       \
    }
BK_AVX2_TILE(1) BK_AVX2_TILE(2) BK_AVX2_TILE(3) BK_AVX2_TILE(4)
typedef void (*i8_avx2_fn)(const uint8_t *, int, int, const int8_t *, const float *, const float *, int, float *, int, int32_t *);
static const i8_avx2_fn avx2_tiles[4] = {avx2_1, avx2_2, avx2_3, avx2_4};

// ---- The same sums in scalar code ----

static void portable_block(const uint8_t *a, int rows, int lda, int groups, const int8_t *w, const float *scale,
                           const float *rowScale, int width, float *y, int ldy, int32_t *sums) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < width; c++) {
            int32_t sum = 0;
            for (int g = 0; g < groups; g++)
                for (int t = 0; t < 4; t++) sum += ((int32_t)a[(size_t)r * lda + 4 * g + t] - 128) * w[(size_t)g * 64 + c * 4 + t];
            if (sums) sums[(size_t)r * ldy + c] = sum;
            else y[(size_t)r * ldy + c] = (float)sum * (rowScale[r] * scale[c]);
        }
}

// Column panels of B blocks, each panel's weights reused by every row tile while they are in cache. Up to 8 rows
// (decoder steps) make a single row tile, so the weights stream once, prefetched ahead; more rows go in tiles of
// 6 × 4 blocks. 7 and 8 rows take panels of 2 blocks: with the prefetch they streamed 1.3–2× faster than panels of 3
// (whose 64-column chunks also left a 1-block panel, 8 broadcasts per 8 dot products).
void bk_i8_gemm(const uint8_t *a, int m, int k, const int8_t *packed, const int32_t *colsum, const float *scale,
                const float *rowScale, int n0, int n1, float *y, int ldy, int32_t *sums) {
    int groups = (k + 3) / 4, lda = 4 * groups, path = current_path();
    size_t blockStride = (size_t)groups * 64;
    int tileRows = m <= 8 ? m : 6, streaming = m <= 8;
    int panelBlocks = path == PATH_VNNI ? (tileRows <= 6 ? 4 : 2) : 1;
    for (int j = n0; j < n1; j += 16 * panelBlocks) {
        int width = n1 - j < 16 * panelBlocks ? n1 - j : 16 * panelBlocks, blocks = (width + 15) / 16;
        int after = n1 - (j + 16 * panelBlocks), nextBlocks = after <= 0 ? 0 : ((after + 15) / 16 < blocks ? (after + 15) / 16 : blocks);
        const int8_t *w = packed + (size_t)(j / 16) * blockStride;
        for (int r = 0; r < m; r += tileRows) {
            int rows = m - r < tileRows ? m - r : tileRows;
            const uint8_t *ar = a + (size_t)r * lda;
            float *yr = y ? y + (size_t)r * ldy + j : NULL;
            int32_t *sr = sums ? sums + (size_t)r * ldy + j : NULL;
            if (path == PATH_VNNI) {
                vnni_tiles[rows - 1][blocks - 1](ar, lda, groups, w, blockStride, colsum + j, scale + j, rowScale + r, width, yr, ldy, sr,
                                                 streaming, nextBlocks);
            } else if (path == PATH_AVX2) {
                for (int q = 0; q < rows; q += 4) {
                    int part = rows - q < 4 ? rows - q : 4;
                    avx2_tiles[part - 1](ar + (size_t)q * lda, lda, groups, w, scale + j, rowScale + r + q, width,
                                         yr ? yr + (size_t)q * ldy : NULL, ldy, sr ? sr + (size_t)q * ldy : NULL);
                }
            } else {
                portable_block(ar, rows, lda, groups, w, scale + j, rowScale + r, width, yr, ldy, sr);
            }
        }
    }
}

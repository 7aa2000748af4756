#include "ckernels.h"
#include "cpu_dispatch.h"

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>

// Single-query attention of decoder rows against one head's keys and values (the decoder step's cross-attention).
// Keys are held dim-major in blocks of 16 positions (dimension i of position j at ((j / 16)·d + i)·16 + j % 16), so the
// scores of 16 consecutive positions are one broadcast-FMA per dimension over a contiguous run, with no horizontal
// sums, and a block is one contiguous run of memory (a plain [d][length] layout read 16 positions at a time made d
// strided streams, which measured at half the bandwidth of the values' single stream); values are held position-major
// (element j·d + i). Every output is one fused multiply-add chain in a fixed order from zero:
//   score[j] = fma(q[d−1], K[d−1][j], … fma(q[0], K[0][j], 0)),   out[i] = fma(p[length−1], V[length−1][i], … 0),
// on every path and whatever rows share a call, so a row's result depends on its own inputs only. bf16-held keys
// and values are widened in registers (zero-extend, shift by 16), which is exact. int8-held ones carry one scale per
// position: a score is its chain over the integers times the position's key scale, score[j] = chain_j · ks[j], and a
// context sums the integers with each probability first multiplied by the position's value scale,
// out[i] = fma((p[length−1] · vs[length−1]), V[length−1][i], …); integers widen to float exactly.

enum { PATH_PORTABLE, PATH_AVX2, PATH_AVX512 };
enum { HELD_F32, HELD_BF16, HELD_I8 };

int bk_query_attention_best_path(void) {
    unsigned a, b, c, d;
    if (bk_has_avx512() && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 31))) return PATH_AVX512;  // AVX512VL
    int fma = __get_cpuid_count(1, 0, &a, &b, &c, &d) && (c & (1u << 12));
    if (fma && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 5))) return PATH_AVX2;
    return PATH_PORTABLE;
}

static int attention_path = -1;

static int current_path(void) { return bk_latched_path(&attention_path, bk_query_attention_best_path); }

int bk_query_attention_set_path(int path) { return bk_set_latched_path(&attention_path, bk_query_attention_best_path, path); }

// Where dimension i of position j sits among a head's keys.
static inline size_t key_at(int d, int j, int i) { return ((size_t)(j >> 4) * d + i) * 16 + (j & 15); }

static inline float element(const void *p, int format, size_t at) {
    if (format == HELD_F32) return ((const float *)p)[at];
    if (format == HELD_I8) return (float)((const int8_t *)p)[at];
    uint32_t u = (uint32_t)((const uint16_t *)p)[at] << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

// The scalar chains, positions j0 ..< j1 or output columns i0 ..< i1 of one row; inlined into each path's code, so
// fmaf becomes the instruction where the path has it.
__attribute__((always_inline))
static inline void scores_scalar(const float *q, const void *k, int format, const float *scales, int d, int j0, int j1, float *s) {
    for (int j = j0; j < j1; j++) {
        float acc = 0;
        for (int i = 0; i < d; i++) acc = fmaf(q[i], element(k, format, key_at(d, j, i)), acc);
        s[j] = format == HELD_I8 ? acc * scales[j] : acc;
    }
}

// The weight of position j in a context chain: the probability, times the value scale for int8.
static inline float weight_at(const float *p, int format, const float *scales, int j) {
    return format == HELD_I8 ? p[j] * scales[j] : p[j];
}

__attribute__((always_inline))
static inline void context_scalar(const float *p, const void *v, int format, const float *scales, int length, int d, int i0,
                                  int i1, float *out) {
    for (int i = i0; i < i1; i++) {
        float acc = 0;
        for (int j = 0; j < length; j++) acc = fmaf(weight_at(p, format, scales, j), element(v, format, (size_t)j * d + i), acc);
        out[i] = acc;
    }
}

// Memory the caller reads right after this call (the values after the scores, the next job's keys after a
// context), prefetched a few lines per loop iteration: each job's head is a fresh 16–64 KB region, and the hardware
// prefetcher only ramps up inside a region, so without this every region starts at memory latency. No value
// depends on it.
typedef struct {
    const char *next, *end;
    int per;
} ahead_t;

static inline void ahead_step(ahead_t *a) {
    for (int n = 0; n < a->per && a->next < a->end; n++, a->next += 64) _mm_prefetch(a->next, _MM_HINT_T1);
}

static inline ahead_t ahead_over(const void *p, size_t bytes) {
    ahead_t a = {(const char *)p, (const char *)p + (p ? bytes : 0), -1};
    return a;
}

// The first kernel of a call spreads the lines over its own loop's iterations; later ones go on at that pace.
static inline void ahead_pace(ahead_t *a, long iterations) {
    if (a->per >= 0) return;
    long lines = (long)((a->end - a->next + 63) / 64);
    a->per = iterations > 0 ? (int)((lines + iterations - 1) / iterations) : 0;
}

// MARK: AVX-512

#define BK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

BK_AVX512 __attribute__((always_inline)) static inline __m512 load16(const void *p, int format, size_t at, __mmask16 mask) {
    if (format == HELD_F32) return _mm512_maskz_loadu_ps(mask, (const float *)p + at);
    if (format == HELD_I8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, (const int8_t *)p + at)));
    __m256i half = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)p + at);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

static inline __mmask16 lanes16(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : (left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0);
}

// R rows × C vectors of 16 positions from j0; each key vector is loaded once and used by all R rows.
BK_AVX512 __attribute__((always_inline))
static inline void scores512_tile(int format, int R, int C, const float *const *q, const void *k, const float *scales, int length,
                                  int d, int j0, float *const *s, ahead_t *ahead) {
    __m512 acc[4][8];
    __mmask16 mask[8];
    for (int c = 0; c < C; c++) mask[c] = lanes16(length - j0 - 16 * c);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int i = 0; i < d; i++) {
        ahead_step(ahead);
        __m512 kv[8];
        for (int c = 0; c < C; c++) kv[c] = load16(k, format, key_at(d, j0 + 16 * c, i), mask[c]);
        for (int r = 0; r < R; r++) {
            __m512 qb = _mm512_set1_ps(q[r][i]);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(qb, kv[c], acc[r][c]);
        }
    }
    if (format == HELD_I8)
        for (int c = 0; c < C; c++) {
            __m512 scale = _mm512_maskz_loadu_ps(mask[c], scales + j0 + 16 * c);
            for (int r = 0; r < R; r++) acc[r][c] = _mm512_mul_ps(acc[r][c], scale);
        }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(s[r] + j0 + 16 * c, mask[c], acc[r][c]);
}

// R rows × C vectors of 16 output columns from i0; each value vector is loaded once and used by all R rows.
BK_AVX512 __attribute__((always_inline))
static inline void context512_tile(int format, int R, int C, const float *const *p, const void *v, const float *scales,
                                   int length, int d, int i0, float *const *out, ahead_t *ahead) {
    __m512 acc[4][4];
    __mmask16 mask[4];
    for (int c = 0; c < C; c++) mask[c] = lanes16(d - i0 - 16 * c);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int j = 0; j < length; j++) {
        ahead_step(ahead);
        __m512 vv[4];
        for (int c = 0; c < C; c++) vv[c] = load16(v, format, (size_t)j * d + i0 + 16 * c, mask[c]);
        for (int r = 0; r < R; r++) {
            __m512 pb = _mm512_set1_ps(weight_at(p[r], format, scales, j));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(out[r] + i0 + 16 * c, mask[c], acc[r][c]);
}

// One function per (format, rows) so the tiles' accumulators stay in registers: a lone row takes 8 score vectors (8
// independent chains hide the FMA latency), groups of 2–4 take 4.
#define BK_GROUP512(F, R, SC)                                                                                         \
    BK_AVX512 static void scores512_##F##_##R(const float *const *q, const void *k, const float *scales, int length, int d, \
                                              float *const *s, ahead_t *a) {                                          \
        ahead_pace(a, (long)((length + 16 * SC - 1) / (16 * SC)) * d);                                                \
        for (int j0 = 0; j0 < length; j0 += 16 * SC) scores512_tile(F, R, SC, q, k, scales, length, d, j0, s, a);     \
    }                                                                                                                 \
    BK_AVX512 static void context512_##F##_##R(const float *const *p, const void *v, const float *scales, int length, int d, \
                                               float *const *o, ahead_t *a) {                                         \
        ahead_pace(a, (long)((d + 63) / 64) * length);                                                                \
        for (int i0 = 0; i0 < d; i0 += 64) context512_tile(F, R, 4, p, v, scales, length, d, i0, o, a);               \
    }
#define BK_GROUPS512(F) BK_GROUP512(F, 1, 8) BK_GROUP512(F, 2, 4) BK_GROUP512(F, 3, 4) BK_GROUP512(F, 4, 4)
BK_GROUPS512(0)
BK_GROUPS512(1)
BK_GROUPS512(2)

typedef void (*group_fn)(const float *const *, const void *, const float *, int, int, float *const *, ahead_t *);
static const group_fn scores512[3][4] = {{scores512_0_1, scores512_0_2, scores512_0_3, scores512_0_4},
                                         {scores512_1_1, scores512_1_2, scores512_1_3, scores512_1_4},
                                         {scores512_2_1, scores512_2_2, scores512_2_3, scores512_2_4}};
static const group_fn context512[3][4] = {{context512_0_1, context512_0_2, context512_0_3, context512_0_4},
                                          {context512_1_1, context512_1_2, context512_1_3, context512_1_4},
                                          {context512_2_1, context512_2_2, context512_2_3, context512_2_4}};

// MARK: AVX2

#define BK_AVX2 __attribute__((target("avx2,fma")))

BK_AVX2 __attribute__((always_inline)) static inline __m256 load8(const void *p, int format, size_t at) {
    if (format == HELD_F32) return _mm256_loadu_ps((const float *)p + at);
    if (format == HELD_I8)
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)p + at))));
    __m128i half = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + at));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

// Rows in pairs, 32 positions or output columns per tile (8 accumulators of 16 registers); tails by the scalar chain.
BK_AVX2 __attribute__((always_inline))
static inline void scores_avx2_group(int format, int R, const float *const *q, const void *k, const float *scales, int length,
                                     int d, float *const *s, ahead_t *ahead) {
    ahead_pace(ahead, (long)(length / 32) * d);
    int j0 = 0;
    for (; j0 + 32 <= length; j0 += 32) {
        __m256 acc[2][4];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
        for (int i = 0; i < d; i++) {
            ahead_step(ahead);
            __m256 kv[4];
            for (int c = 0; c < 4; c++) kv[c] = load8(k, format, key_at(d, j0 + 8 * c, i));
            for (int r = 0; r < R; r++) {
                __m256 qb = _mm256_broadcast_ss(q[r] + i);
                for (int c = 0; c < 4; c++) acc[r][c] = _mm256_fmadd_ps(qb, kv[c], acc[r][c]);
            }
        }
        if (format == HELD_I8)
            for (int c = 0; c < 4; c++) {
                __m256 scale = _mm256_loadu_ps(scales + j0 + 8 * c);
                for (int r = 0; r < R; r++) acc[r][c] = _mm256_mul_ps(acc[r][c], scale);
            }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) _mm256_storeu_ps(s[r] + j0 + 8 * c, acc[r][c]);
    }
    for (int r = 0; r < R; r++) scores_scalar(q[r], k, format, scales, d, j0, length, s[r]);
}

BK_AVX2 __attribute__((always_inline))
static inline void context_avx2_group(int format, int R, const float *const *p, const void *v, const float *scales, int length,
                                      int d, float *const *out, ahead_t *ahead) {
    ahead_pace(ahead, (long)(d / 32) * length);
    int i0 = 0;
    for (; i0 + 32 <= d; i0 += 32) {
        __m256 acc[2][4];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
        for (int j = 0; j < length; j++) {
            ahead_step(ahead);
            __m256 vv[4];
            for (int c = 0; c < 4; c++) vv[c] = load8(v, format, (size_t)j * d + i0 + 8 * c);
            for (int r = 0; r < R; r++) {
                __m256 pb = _mm256_set1_ps(weight_at(p[r], format, scales, j));
                for (int c = 0; c < 4; c++) acc[r][c] = _mm256_fmadd_ps(pb, vv[c], acc[r][c]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) _mm256_storeu_ps(out[r] + i0 + 8 * c, acc[r][c]);
    }
    for (int r = 0; r < R; r++) context_scalar(p[r], v, format, scales, length, d, i0, d, out[r]);
}

#define BK_GROUP2(F, R)                                                                                               \
    BK_AVX2 static void scores2_##F##_##R(const float *const *q, const void *k, const float *scales, int length, int d,  \
                                          float *const *s, ahead_t *a) {                                              \
        scores_avx2_group(F, R, q, k, scales, length, d, s, a);                                                      \
    }                                                                                                                 \
    BK_AVX2 static void context2_##F##_##R(const float *const *p, const void *v, const float *scales, int length, int d, \
                                           float *const *o, ahead_t *a) {                                             \
        context_avx2_group(F, R, p, v, scales, length, d, o, a);                                                     \
    }
BK_GROUP2(0, 1) BK_GROUP2(0, 2) BK_GROUP2(1, 1) BK_GROUP2(1, 2) BK_GROUP2(2, 1) BK_GROUP2(2, 2)

static const group_fn scores2[3][2] = {{scores2_0_1, scores2_0_2}, {scores2_1_1, scores2_1_2}, {scores2_2_1, scores2_2_2}};
static const group_fn context2[3][2] = {{context2_0_1, context2_0_2}, {context2_1_1, context2_1_2}, {context2_2_1, context2_2_2}};

// MARK: Portable

static void scores_portable(const float *const *q, const void *k, int format, const float *scales, int length, int d,
                            float *const *s) {
    scores_scalar(q[0], k, format, scales, d, 0, length, s[0]);
}

static void context_portable(const float *const *p, const void *v, int format, const float *scales, int length, int d,
                             float *const *out) {
    context_scalar(p[0], v, format, scales, length, d, 0, d, out[0]);
}

// MARK: Entry points

void bk_prefetch_l2(const void *p, size_t bytes) {
    for (size_t at = 0; at < bytes; at += 64) _mm_prefetch((const char *)p + at, _MM_HINT_T1);
}

// An unknown format reads as float32 (callers pass only the three), so a table index never leaves its bounds.
static inline int held_format(int format) { return format == HELD_BF16 || format == HELD_I8 ? format : HELD_F32; }

void bk_query_attention_scores(const float *q, int ldq, const int32_t *rows, int count, const void *keys, int format,
                               const float *scales, int length, int d, float *scores, int lds, const void *ahead,
                               size_t aheadBytes) {
    if (length <= 0) return;
    int path = current_path(), group = path == PATH_AVX512 ? 4 : (path == PATH_AVX2 ? 2 : 1), kind = held_format(format);
    ahead_t next = ahead_over(ahead, aheadBytes);
    for (int g = 0; g < count; g += group) {
        int n = count - g < group ? count - g : group;
        const float *qr[4];
        float *sr[4];
        for (int r = 0; r < n; r++) {
            qr[r] = q + (size_t)rows[g + r] * ldq;
            sr[r] = scores + (size_t)(g + r) * lds;
        }
        if (path == PATH_AVX512) scores512[kind][n - 1](qr, keys, scales, length, d, sr, &next);
        else if (path == PATH_AVX2) scores2[kind][n - 1](qr, keys, scales, length, d, sr, &next);
        else scores_portable(qr, keys, kind, scales, length, d, sr);
    }
}

void bk_query_attention_context(const float *probabilities, int ldp, const void *values, int format, const float *scales,
                                int length, int d, const int32_t *rows, int count, float *out, int ldo, const void *ahead,
                                size_t aheadBytes) {
    if (d <= 0) return;
    int path = current_path(), group = path == PATH_AVX512 ? 4 : (path == PATH_AVX2 ? 2 : 1), kind = held_format(format);
    ahead_t next = ahead_over(ahead, aheadBytes);
    for (int g = 0; g < count; g += group) {
        int n = count - g < group ? count - g : group;
        const float *pr[4];
        float *outRows[4];
        for (int r = 0; r < n; r++) {
            pr[r] = probabilities + (size_t)(g + r) * ldp;
            outRows[r] = out + (size_t)rows[g + r] * ldo;
        }
        if (path == PATH_AVX512) context512[kind][n - 1](pr, values, scales, length, d, outRows, &next);
        else if (path == PATH_AVX2) context2[kind][n - 1](pr, values, scales, length, d, outRows, &next);
        else context_portable(pr, values, kind, scales, length, d, outRows);
    }
}

#ifndef BLENDD_CKERNELS_H
#define BLENDD_CKERNELS_H
// Reduced-precision kernels for blendd's models, with runtime CPU dispatch. Every output element is one
// accumulation in a fixed order, so a row's result never depends on how many rows share a call or where
// the row sits (the same guarantee the fp32 paths give).
#include <stddef.h>
#include <stdint.h>

/// 1 when AVX512F and AVX512BW are present and the OS saves the zmm state.
int bk_has_avx512(void);
/// 1 when AVX512F, AVX512BW and AVX512_BF16 are present and the OS saves the zmm state.
int bk_has_avx512_bf16(void);
/// Chooses the tiles of bk_f32_rows / bk_bf16w_rows and of bk_bf16_gemm's panels: nonzero for the
/// AVX-512 row tiles and the 8-, 2- and 1-row bf16 tiles (where AVX-512 is present, the default), 0 for the earlier
/// AVX2 row tiles and 4-row bf16 tiles. Returns the choice in effect. Both give identical bits; tests compare them.
int bk_set_row_kernels(int avx512);

/// bf16 weights in the dot-product layout: columns (weight rows) in groups of 16, k in pairs, so that one
/// 512-bit load holds the pair (k, k+1) of 16 consecutive columns. `n` is padded to 16, `k` to 2 (zeros).
size_t bk_bf16_packed_words(int n, int k);
void bk_bf16_pack(const float *w, int n, int k, uint32_t *packed);
/// Rows of `a` rounded to bf16 pairs (round to nearest even), `k` padded to 2: `m` rows of (k+1)/2 words. With
/// AVX512_BF16 by vcvtne2ps2bf16, which turns subnormals into zero (as vdpbf16ps reads them anyway).
void bk_bf16_round_rows(const float *a, int m, int k, int lda, uint32_t *out);
/// c[r][j] = Σ_k a[r][k]·w[j][k] for columns j in [n0, n1) (n0 a multiple of 16) from bf16 operands with
/// float32 accumulation: `a` from bk_bf16_round_rows, `packed` from bk_bf16_pack. Uses AVX512_BF16 when
/// `vector` is nonzero (the caller checked bk_has_avx512_bf16), else a portable loop with the same
/// arithmetic up to the instruction's flush of subnormals.
void bk_bf16_gemm(const uint32_t *a, int m, int k, const uint32_t *packed, int n0, int n1,
                  float *c, int ldc, int vector);

/// One head of DeBERTa's disentangled attention over one sequence of `length` tokens with bf16 operands and float32
/// sums (AVX512_BF16 only; the caller checked bk_has_avx512_bf16):
///   s(i, j) = ((Q_i·K_j + Q_i·PK_δ) + K_j·PQ_δ) · scale, δ = deltas[i − j + length − 1 + 32],
///   P = softmax_j(s) in float32 (exp as bk_bf16_exp; lane l of 16 sums the keys j ≡ l mod 16 in order, the lane sums
///   are added pairwise: (l, l + 8), (l, l + 4), (l, l + 2), (0, 1)), rounded to bf16; ctx_i = Σ_j P(i, j)·V_j.
/// q, k, v: the head's `d` columns of float32 rows at stride `ld`, rounded to bf16 here (subnormals become 0, which the
/// dot products would read them as). pkRows, pqRows: the head's position keys and queries as bk_bf16_round_rows rows,
/// one per δ. deltas: bk_bf16_attention_columns(length) entries, δ of the relative position t − 32 − (length − 1) for
/// t = 0, 1, …, clamped as the model clamps it. Every dot product sums its k pairs in order from zero, so each context
/// row depends on its own sequence only. `scratch` holds bk_bf16_attention_scratch(length, d) bytes.
void bk_bf16_attention_head(const float *q, const float *k, const float *v, int ld, int length, int d,
                            const uint32_t *pkRows, const uint32_t *pqRows, const int32_t *deltas,
                            float scale, float *ctx, int ldctx, void *scratch);
size_t bk_bf16_attention_scratch(int length, int d);
int bk_bf16_attention_columns(int length);
/// y[i] = e^x[i] for x[i] ≤ 0 as the attention's softmax computes it (AVX-512; 0 below −87.3).
void bk_bf16_exp(const float *x, float *y, int n);

/// The bf16 encoder's row operations (bf16_epilogues.c; AVX512_BF16 only), float32 operations one by one in the order
/// written, so that reference loops repeat them bit for bit.
/// bk_gelu_erf: y = 0.5·x·(1 + erf(x·√½)) with VectorMath.erf and VectorMath.exp, operation for operation.
void bk_gelu_erf(const float *x, float *y, int n);
/// For a product tile c[r][j], r < m, j < n (stride ldc): v = c + bias[j]; with `residual`, v = v + residual[r·ldr + j];
/// with `gelu`, v = bk_gelu_erf(v). Then c = v, or, with `pairs`, v as bf16 pairs (bk_bf16_round_rows' rounding, an odd
/// row padded with zero) into pairs[r·ldp + j/2] and c untouched.
void bk_bf16_finish(float *c, int m, int n, int ldc, const float *bias, const float *residual, int ldr, int gelu,
                    uint32_t *pairs, int ldp);
/// LayerNorm of rows x[r][0 ..< n] (stride ldx) in place, and with `pairs` the result as bf16 pairs (stride ldp words):
/// mean = S(x) / n, variance = S((x − mean)²) / n, y = ((x − mean) · (1 / sqrt(variance + eps))) · γ + β, where S sums in
/// 16 lanes (lane l: the columns ≡ l mod 16 in order) and adds the lane sums pairwise: (l, l + 8), (l, l + 4), (l, l + 2),
/// (0, 1).
void bk_layer_norm_rows(float *x, int m, int n, int ldx, const float *gamma, const float *beta, float eps,
                        uint32_t *pairs, int ldp);
/// vdpbf16ps's rate on the calling thread as GFLOP/s (64 per instruction: 32 products, 32 sums), from independent
/// accumulators over about `seconds` of the thread's CPU time (bf16_peak.c); 0 without AVX512_BF16.
double bk_bf16_instruction_gflops(double seconds);

/// y[r][j] = Σ_k x[r][k]·w[j][k] for j in [n0, n1) with float32 weights (k a multiple of 16), and the same
/// with bf16-held weights in WeightMatrix's interleaved groups of 16 (AVX2 + FMA). Decoder steps use these.
void bk_f32_rows(const float *x, int m, int k, const float *w, int n0, int n1, float *y, int ldy);
void bk_bf16w_rows(const float *x, int m, int k, const uint16_t *bits, int n0, int n1, float *y, int ldy);
/// Per-row symmetric quantization: scale[j] = max|w[j]| / 127, q = round(w / scale).
void bk_int8_quantize(const float *w, int n, int k, int8_t *q, float *scale);

/// Single-query attention of decoder rows against one head's keys and values (query_attention.c), the arithmetic
/// fixed whatever the path or the rows sharing a call: every output is one fused multiply-add chain from zero.
/// Scores: for r < count, scores[r·lds + j] = Σ_i q[rows[r]·ldq + i] · K(i, j) for j < length, summed over i in order;
/// `keys` holds the head's keys dim-major in blocks of 16 positions, K(i, j) at ((j / 16)·d + i)·16 + j % 16 (the last
/// block's lanes past `length` are not read into any result).
/// Context: out[rows[r]·ldo + i] = Σ_j probabilities[r·ldp + j] · V[j·d + i] for i < d, summed over j in order; `values`
/// is the head's [length][d] block (position-major).
/// `format`: 0 float, 1 bf16 bits, 2 int8 with one float scale per position in `scales` (NULL otherwise): a score is
/// the chain over the integers times scales[j], and a context chain takes probabilities[j] · scales[j] as its weights.
/// Paths: 2 AVX-512 (rows in groups of up to 4, each key or value vector loaded once per group), 1 AVX2 + FMA (groups
/// of 2), 0 portable; all give identical bits. bk_query_attention_set_path caps `path` at what the CPU has (−1: the
/// best) and returns the path in effect. `ahead` (may be NULL): `aheadBytes` the caller reads next, prefetched into L2
/// across the call's loop; no result depends on it.
int bk_query_attention_best_path(void);
int bk_query_attention_set_path(int path);
void bk_query_attention_scores(const float *q, int ldq, const int32_t *rows, int count, const void *keys, int format,
                               const float *scales, int length, int d, float *scores, int lds, const void *ahead,
                               size_t aheadBytes);
void bk_query_attention_context(const float *probabilities, int ldp, const void *values, int format, const float *scales,
                                int length, int d, const int32_t *rows, int count, float *out, int ldo, const void *ahead,
                                size_t aheadBytes);
/// Prefetches `bytes` from `p` into L2, a line at a time (before a product whose end would wait for them).
void bk_prefetch_l2(const void *p, size_t bytes);

// Allocator settings while a model loads (1) and afterwards (0); see LoadingMemory.swift.
void bk_allocator_loading(int loading);

/// int8 × int8 products with int32 sums (int8_gemm.c): activations quantized per row on the fly, as CTranslate2's
/// int8 does, weights per output channel (bk_int8_quantize). Paths: 2 AVX512-VNNI, 1 AVX2, 0 portable; all give
/// identical int32 sums and identical floats. bk_i8_set_path caps `path` at what the CPU has (−1: the best) and
/// returns the path in effect.
int bk_i8_best_path(void);
int bk_i8_set_path(int path);
/// Weights in the dot-product layout: columns in blocks of 16, k in groups of 4 bytes (zero padded).
size_t bk_i8_packed_bytes(int n, int k);
/// Packs row-major `q` [n][k]; `colsum` (n padded to 16) receives Σ_k q[j][k], 0 for the padding columns.
void bk_i8_pack(const int8_t *q, int n, int k, int8_t *packed, int32_t *colsum);
/// Per row: q = round(x · 127 / max|x|) in ±127, stored as q + 128 in rows of k padded to 4 (padding 128);
/// rowScale[r] = max|x[r]| / 127 (0 for a zero row). Finite inputs only.
void bk_i8_quantize_rows(const float *x, int m, int k, int ldx, uint8_t *a, float *rowScale);
/// For j in [n0, n1), n0 a multiple of 16: y[r][j] = (float)s · (rowScale[r] · scale[j]) with s = Σ_k q_x[r][k] ·
/// q_w[j][k] in int32; `colsum` and `scale` padded to 16 columns. With `sums` non-null, s itself goes to sums[r][j]
/// (stride ldy) and `y` is not written (tests).
void bk_i8_gemm(const uint8_t *a, int m, int k, const int8_t *packed, const int32_t *colsum, const float *scale,
                const float *rowScale, int n0, int n1, float *y, int ldy, int32_t *sums);

// The worker team's counters (NumericsThreading).
#include "bk_atomics.h"

#endif

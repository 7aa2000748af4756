#ifndef BLENDD_BF16_INTERNAL_H
#define BLENDD_BF16_INTERNAL_H
// bf16 pieces shared by the kernels' C files (not part of the module's interface).
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Nearest-even bf16 bits of f; a NaN stays a (quiet) NaN.
static inline uint16_t bk_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu)) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bk_bf16_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// bk_bf16_round_rows with vcvtne2ps2bf16 (AVX512_BF16): the same bits except that subnormals become zero, which
// vdpbf16ps reads them as anyway. Rows are at stride ld (floats) and ldo (words); rows m ..< rows are written as zeros.
void bk_bf16_round_rows_vector(const float *x, int m, int k, size_t ld, uint32_t *out, size_t ldo, int rows);

// c[r][0 ..< 16·blocks] for r < m from A rows at a + r·ars (pair p at + p·aps) and B column blocks at b + block·bbs
// (pair p of a block at + 16·p): AVX512_BF16 register tiles, each sum over the k2 pairs in order from zero.
void bk_bf16_product(const uint32_t *a, int m, size_t ars, size_t aps, int k2, const uint32_t *b, int blocks, size_t bbs,
                     float *c, size_t ldc);

#endif

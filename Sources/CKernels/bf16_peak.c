#include "ckernels.h"

#include <immintrin.h>
#include <time.h>

// The dot-product instruction's own rate, the ceiling no bf16 GEMM on this core can pass: vdpbf16ps on independent
// accumulators (more than its latency × throughput), timed in thread CPU time so that other processes' share of the
// core does not count.

static double thread_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static double instruction_gflops(double seconds) {
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x3F803F80);
    long instructions = 0;
    double start = thread_seconds(), elapsed;
    do {
        for (int rep = 0; rep < 4096; rep++) {
            for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
            // Keeps the accumulators in registers and the loop from being folded.
            __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]), "+v"(acc[6]),
                             "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]), "+v"(acc[12]), "+v"(acc[13]),
                             "+v"(acc[14]), "+v"(acc[15]));
        }
        instructions += 4096 * 16;
        elapsed = thread_seconds() - start;
    } while (elapsed < seconds);
    return (double)instructions * 64 / elapsed / 1e9;
}

double bk_bf16_instruction_gflops(double seconds) { return bk_has_avx512_bf16() ? instruction_gflops(seconds) : 0; }

#ifndef BLENDD_BK_ATOMICS_H
#define BLENDD_BK_ATOMICS_H
// Atomic counters in plain memory for NumericsThreading's worker team: one pair of counters per phase of a step,
// in an array the team reuses, which Swift's Atomic type (a single non-copyable value) cannot index.
#include <stdint.h>

static inline int32_t bk_atomic_fetch_add(int32_t *p, int32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline int32_t bk_atomic_load(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void bk_atomic_store(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/// A hint that the caller is spinning (PAUSE on x86), so the sibling hardware thread and the memory bus are spared.
static inline void bk_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif

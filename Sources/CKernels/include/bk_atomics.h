#ifndef BLENDD_BK_ATOMICS_H
#define BLENDD_BK_ATOMICS_H
// Atomic counters in plain memory for NumericsThreading's worker team: counters per phase of a step, in an array the
// team reuses, which Swift's Atomic type (a single non-copyable value) cannot index. Sequentially consistent, because
// a waiter's "I sleep" flag and a finisher's last increment are checked against each other (each sees the other's).
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static inline int32_t bk_atomic_fetch_add(int32_t *p, int32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline int32_t bk_atomic_load(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void bk_atomic_store(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

/// A hint that the caller is spinning (PAUSE on x86), so the sibling hardware thread and the memory bus are spared.
static inline void bk_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Sleeps while *p == expected (returns at once if it differs, and may return spuriously): a blocked waiter is woken
/// as soon as bk_futex_wake_all runs, where a yielding one could wait a whole time slice behind other processes.
static inline void bk_futex_wait(int32_t *p, int32_t expected) {
#ifdef __linux__
    syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)p;
    (void)expected;
    sched_yield();
#endif
}

static inline void bk_futex_wake_all(int32_t *p) {
#ifdef __linux__
    syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)p;
#endif
}

#endif

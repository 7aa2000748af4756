// The kernels' choice of code path, detected once on first use and overridable by tests and benches.
#ifndef BK_CPU_DISPATCH_H
#define BK_CPU_DISPATCH_H

// `*slot` < 0 means not chosen yet: `detect()` picks, and the pick is kept. A racing first use only runs
// `detect` twice, with the same answer.
static inline int bk_latched_path(int *slot, int (*detect)(void)) {
    int v = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (v < 0) {
        v = detect();
        __atomic_store_n(slot, v, __ATOMIC_RELAXED);
    }
    return v;
}

// Sets `*slot` to `path` capped at what `detect()` says the CPU runs (paths are ordered, slowest first), or to
// the best path for `path` < 0; returns the path in effect.
static inline int bk_set_latched_path(int *slot, int (*detect)(void), int path) {
    int best = detect(), v = path < 0 ? best : (path < best ? path : best);
    __atomic_store_n(slot, v, __ATOMIC_RELAXED);
    return v;
}

#endif

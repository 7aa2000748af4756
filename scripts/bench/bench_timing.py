"""Timing shared by the baseline scripts, measured as blendd times itself."""
import time


def best_of(fn, repeats=3):
    """Seconds of the fastest of `repeats` calls: one run is at the mercy of load on a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best

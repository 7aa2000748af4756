import COpenBLAS
import Dispatch
import Foundation

/// How compute is split over cores. Our row-wise kernels run rows in parallel with
/// `concurrentPerform`; OpenBLAS runs its own threads inside each GEMM. The two never run at
/// the same time (a forward pass alternates GEMMs and row kernels on one task), so both may
/// use every core: OpenBLAS is given `threads` and so is our pool. Small jobs stay on the
/// calling thread, since waking workers costs more than a few thousand floats of work.
public enum NumericsThreading {
    /// Rows of work below which a kernel does not fan out.
    static let minimumRowsPerThread = 8

    public static var threads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Sets OpenBLAS's thread count (0 = one per core); called once at start-up.
    public static func configure(threads requested: Int) {
        openblas_set_num_threads(Int32(requested > 0 ? requested : threads))
    }

    static func forEachRow(_ rows: Int, _ body: (Int) -> Void) {
        let workers = min(threads, rows / minimumRowsPerThread)
        guard workers > 1 else {
            for r in 0..<rows { body(r) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // Each worker touches its own rows only, so sharing the (non-Sendable) closure is race-free.
            nonisolated(unsafe) let perRow = body
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let start = rows * w / workers, end = rows * (w + 1) / workers
                for r in start..<end { perRow(r) }
            }
        }
    }
}

import CKernels
import COpenBLAS
import Dispatch
import Foundation
import Synchronization

/// How compute is split over cores: by us, never by OpenBLAS. OpenBLAS runs single-threaded in
/// whichever thread calls it, and we split every GEMM (into fixed-shape blocks, see `Kernels.sgemm`)
/// and every row kernel over `threads` workers with `concurrentPerform`. With two thread
/// pools, OpenBLAS's workers spin between GEMMs while ours run the row kernels and attention, and
/// on a small machine they steal each other's cores (measured: ~7% of the time in sched_yield and
/// a slower encoder). One pool also lets attention run heads in parallel, each head's small GEMMs
/// on one core, which is faster than splitting a 128×128 product over threads. Decoder steps, ~100 short
/// products and attention passes each, run instead on one `WorkerTeam` of as many workers (`team`).
public enum NumericsThreading {
    /// Rows of work below which a kernel does not fan out.
    static let minimumRowsPerThread = 8

    private static let configured = Atomic<Int>(0)
    private static let blasSingleThreaded: Void = { openblas_set_num_threads(1) }()

    /// Workers for compute; one per core unless `configure` chose otherwise.
    public static var threads: Int {
        _ = blasSingleThreaded
        let n = configured.load(ordering: .relaxed)
        return n > 0 ? n : max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The OpenBLAS kernels in use ("Haswell", "SkylakeX", …), as `OPENBLAS_CORETYPE` or detection chose them.
    public static var blasCore: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    private static let teams = Mutex<[Int: WorkerTeam]>([:])

    /// The team of `threads` workers that runs decoder steps (created on first use, kept for the process).
    static var team: WorkerTeam {
        let size = threads
        return teams.withLock { teams in
            if let team = teams[size] { return team }
            let team = WorkerTeam(size: size)
            teams[size] = team
            return team
        }
    }

    /// Sets the number of compute workers (0 = one per core); called once at start-up.
    public static func configure(threads requested: Int) {
        _ = blasSingleThreaded
        configured.store(max(0, requested), ordering: .relaxed)
    }

    /// Runs `body(worker)` for `workers` workers in parallel (inline when there is one).
    static func parallel(_ workers: Int, _ body: (Int) -> Void) {
        guard workers > 1 else {
            body(0)
            return
        }
        withoutActuallyEscaping(body) { body in
            // Workers touch disjoint data only, so sharing the (non-Sendable) closure is race-free.
            nonisolated(unsafe) let perWorker = body
            DispatchQueue.concurrentPerform(iterations: workers) { perWorker($0) }
        }
    }

    static func forEachRow(_ rows: Int, _ body: (Int) -> Void) {
        let workers = max(1, min(threads, rows / minimumRowsPerThread))
        parallel(workers) { w in
            for r in (rows * w / workers)..<(rows * (w + 1) / workers) { body(r) }
        }
    }

    /// `body(item)` for items 0..<count, strided over the workers (items of similar cost).
    static func forEachItem(_ count: Int, _ body: (Int) -> Void) {
        let workers = max(1, min(threads, count))
        parallel(workers) { w in
            for item in stride(from: w, to: count, by: workers) { body(item) }
        }
    }

    /// `body(item, scratch)` for items 0..<count as `forEachItem` strides them, with one buffer of `scratchBytes`
    /// per worker reused across its items (no allocation per item).
    static func forEachItem(_ count: Int, scratchBytes: Int, _ body: (Int, UnsafeMutableRawPointer) -> Void) {
        let workers = max(1, min(threads, count))
        parallel(workers) { w in
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(1, scratchBytes), alignment: 64)
            defer { scratch.deallocate() }
            for item in stride(from: w, to: count, by: workers) { body(item, scratch) }
        }
    }
}

extension NumericsThreading {
    /// `body(item, scratch)` for items 0..<count, each worker claiming the next unclaimed item, with one buffer of
    /// `scratchBytes` per worker: a worker that another process delays takes fewer items instead of holding up the rest.
    /// Which worker runs an item must not change its result (the bf16 products' tiles do not depend on it).
    static func forEachClaimedItem(_ count: Int, scratchBytes: Int = 0, _ body: (Int, UnsafeMutableRawPointer) -> Void) {
        let workers = max(1, min(threads, count))
        let next = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        next.initialize(to: 0)
        defer { next.deallocate() }
        parallel(workers) { _ in
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(1, scratchBytes), alignment: 64)
            defer { scratch.deallocate() }
            while true {
                let item = Int(bk_atomic_fetch_add(next, 1))
                guard item < count else { break }
                body(item, scratch)
            }
        }
    }
}

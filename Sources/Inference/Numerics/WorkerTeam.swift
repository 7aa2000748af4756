import CKernels
import Foundation
import Synchronization

/// Workers that stay alive for a whole decoder step. The step is a fixed sequence of phases, each a set of independent
/// chunks (column blocks of a product, attention heads): every worker walks the same phases, takes chunks from the
/// phase's shared counter, and waits for the phase's last chunk before starting the next. That is one wake-up per step
/// instead of one thread dispatch per product (a decoder step has ~100 phases), and a worker that the OS stalls holds
/// the others up only until the phase's other chunks are taken, since whoever runs takes them. Each output is written
/// by exactly one chunk with the same code, so results never depend on which worker ran it or how many there are.
///
/// Helper threads are dedicated (never Dispatch's pool, which may run a "parallel" loop serially and so deadlock a
/// phase wait); they spin briefly after a step, then park. One caller at a time: `run` serializes callers.
final class WorkerTeam: @unchecked Sendable {
    let size: Int
    /// Serializes callers of `run`.
    private let entry = Mutex<Void>(())
    /// Parks idle helpers; `generation` (under the lock) numbers the steps.
    private let parking = NSCondition()
    private var generation = 0
    private let published = Atomic<Int>(0)
    private let checkedOut = Atomic<Int>(0)
    /// The running step's body and its phase counters (two per phase: next chunk, chunks done); written by the caller
    /// before `published` moves, read by helpers after they see it move.
    private var job: ((inout Phases) -> Void)?
    private var counters: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private var stepPhases = 0

    /// Pauses before a waiting worker yields its core to other processes (~20–50 µs of PAUSE).
    static let spinsBeforeYield = 1_000
    /// Pauses an idle helper spins for the next step before it parks (~0.1–0.3 ms).
    static let spinsBeforeParking = 5_000

    init(size: Int) {
        self.size = max(1, size)
        capacity = 256
        counters = .allocate(capacity: 2 * capacity)
        counters.initialize(repeating: 0, count: 2 * capacity)
        for worker in 1..<self.size {
            let thread = Thread { [self] in helperLoop(worker) }
            thread.name = "blendd-team-\(worker)"
            thread.stackSize = 1 << 21
            thread.start()
        }
    }

    /// One worker's view of a step: call `phase` for the step's phases in the same order on every worker.
    struct Phases {
        let worker: Int
        let workers: Int
        fileprivate let counters: UnsafeMutablePointer<Int32>
        fileprivate let capacity: Int
        fileprivate var index = 0

        /// Runs chunks 0..<count of the next phase, each on exactly one worker, and returns when all are done.
        /// `prepare` runs on this worker before its first chunk of the phase (its private copy of the phase's input).
        mutating func phase(_ count: Int, prepare: () -> Void = {}, _ work: (Int) -> Void) {
            precondition(index < capacity, "a step ran more phases than WorkerTeam.run was given")
            let next = counters + 2 * index, done = next + 1
            index += 1
            var prepared = false
            while true {
                let chunk = Int(bk_atomic_fetch_add(next, 1))
                guard chunk < count else { break }
                if !prepared {
                    prepare()
                    prepared = true
                }
                work(chunk)
                _ = bk_atomic_fetch_add(done, 1)
            }
            var spins = 0
            while Int(bk_atomic_load(done)) < count { WorkerTeam.wait(&spins) }
        }
    }

    @inline(__always)
    static func wait(_ spins: inout Int) {
        spins += 1
        if spins < spinsBeforeYield { bk_spin_pause() } else { sched_yield() }
    }

    /// Runs `body` on every worker (the caller is worker 0) for a step of at most `phases` phases.
    func run(phases: Int, _ body: (inout Phases) -> Void) {
        entry.withLock { _ in
            if phases > capacity {
                // Helpers are all checked out of the previous step, so the counters can move.
                counters.deallocate()
                capacity = phases
                counters = .allocate(capacity: 2 * capacity)
            }
            counters.initialize(repeating: 0, count: 2 * phases)
            stepPhases = phases
            var mine = Phases(worker: 0, workers: size, counters: counters, capacity: phases)
            guard size > 1 else {
                body(&mine)
                return
            }
            withoutActuallyEscaping(body) { body in
                job = body
                checkedOut.store(0, ordering: .relaxed)
                parking.lock()
                generation += 1
                published.store(generation, ordering: .releasing)
                parking.broadcast()
                parking.unlock()
                body(&mine)
                // Helpers may still be walking the last phases; the body must outlive them.
                var spins = 0
                while checkedOut.load(ordering: .acquiring) < size - 1 { Self.wait(&spins) }
                job = nil
            }
        }
    }

    private func helperLoop(_ worker: Int) {
        var seen = 0
        while true {
            var spins = 0
            while published.load(ordering: .acquiring) == seen && spins < Self.spinsBeforeParking {
                spins += 1
                bk_spin_pause()
            }
            if published.load(ordering: .acquiring) == seen {
                parking.lock()
                while generation == seen { parking.wait() }
                parking.unlock()
            }
            seen = published.load(ordering: .acquiring)
            var mine = Phases(worker: worker, workers: size, counters: counters, capacity: stepPhases)
            job?(&mine)
            checkedOut.add(1, ordering: .releasing)
        }
    }
}

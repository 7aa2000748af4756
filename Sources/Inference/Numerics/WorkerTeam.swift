import CKernels
import Dispatch
import Foundation
import Synchronization

/// Workers that stay alive for a whole decoder step. The step is a fixed sequence of phases, each a set of independent
/// chunks (column blocks of a product, attention heads): every worker walks the same phases, takes chunks from the
/// phase's shared counter, and waits for the phase's last chunk before starting the next. That is one wake-up per step
/// instead of one thread dispatch per product (a decoder step has ~100 phases), and a worker that the OS stalls holds
/// the others up only for the chunk it has taken: whoever runs takes the rest of the phase. A worker waiting for a
/// phase's end spins briefly, then sleeps on the phase's counter (a futex), so under load it is woken at once instead
/// of yielding its core for a time slice. Each output is written
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
    /// The running step's body and its counters: three per phase (next chunk, chunks done, a waiter sleeps), then
    /// three for helpers leaving the step; written by the caller before `published` moves, read by helpers after.
    private var job: ((inout Phases) -> Void)?
    private var counters: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private var stepPhases = 0

    /// Pauses a waiting worker spins before it sleeps until the phase ends (~20–100 µs of PAUSE).
    static let spinsBeforeSleep = 2_000
    /// Pauses an idle helper spins for the next step before it parks (~0.1–0.3 ms).
    static let spinsBeforeParking = 5_000

    init(size: Int) {
        self.size = max(1, size)
        capacity = 256
        counters = .allocate(capacity: 3 * (capacity + 1))
        counters.initialize(repeating: 0, count: 3 * (capacity + 1))
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
        fileprivate let counters: UnsafeMutablePointer<Int32>
        fileprivate let capacity: Int
        /// Where worker 0 writes the monotonic time (ns) each phase ended, when the caller asked for it.
        fileprivate let clock: UnsafeMutablePointer<UInt64>?
        fileprivate var index = 0

        /// Runs chunks 0..<count of the next phase, each on exactly one worker, and returns when all are done.
        /// `prepare` runs on this worker before its first chunk of the phase (its private copy of the phase's input).
        mutating func phase(_ count: Int, prepare: () -> Void = {}, _ work: (Int) -> Void) {
            precondition(index < capacity, "a step ran more phases than WorkerTeam.run was given")
            let slot = counters + 3 * index
            index += 1
            var prepared = false
            while true {
                let chunk = Int(bk_atomic_fetch_add(slot, 1))
                guard chunk < count else { break }
                if !prepared {
                    prepare()
                    prepared = true
                }
                work(chunk)
                WorkerTeam.arrive(slot, of: count)
            }
            WorkerTeam.wait(slot, for: count)
            if let clock, worker == 0 { clock[index - 1] = DispatchTime.now().uptimeNanoseconds }
        }
    }

    /// Counts one more done at `slot` (counters next, done, sleeping), waking sleepers when it is the last of `count`.
    @inline(__always)
    static func arrive(_ slot: UnsafeMutablePointer<Int32>, of count: Int) {
        if Int(bk_atomic_fetch_add(slot + 1, 1)) + 1 == count && bk_atomic_load(slot + 2) != 0 { bk_futex_wake_all(slot + 1) }
    }

    /// Returns once `count` are done at `slot`: spinning first (phases are short), then asleep on the counter.
    static func wait(_ slot: UnsafeMutablePointer<Int32>, for count: Int) {
        var spins = 0
        while true {
            let done = bk_atomic_load(slot + 1)
            if Int(done) >= count { return }
            spins += 1
            if spins < spinsBeforeSleep {
                bk_spin_pause()
                continue
            }
            bk_atomic_store(slot + 2, 1)
            let now = bk_atomic_load(slot + 1)
            if Int(now) >= count { return }
            bk_futex_wait(slot + 1, now)
        }
    }

    /// Runs `body` on every worker (the caller is worker 0) for a step of at most `phases` phases. With `clock`, the
    /// caller's worker stores there the time (`DispatchTime` ns) each phase ended, one value per phase.
    func run(phases: Int, clock: UnsafeMutablePointer<UInt64>? = nil, _ body: (inout Phases) -> Void) {
        entry.withLock { _ in
            if phases > capacity {
                // Helpers are all checked out of the previous step, so the counters can move.
                counters.deallocate()
                capacity = phases
                counters = .allocate(capacity: 3 * (capacity + 1))
            }
            counters.initialize(repeating: 0, count: 3 * (phases + 1))
            stepPhases = phases
            var mine = Phases(worker: 0, counters: counters, capacity: phases, clock: clock)
            guard size > 1 else {
                body(&mine)
                return
            }
            withoutActuallyEscaping(body) { body in
                job = body
                parking.lock()
                generation += 1
                published.store(generation, ordering: .releasing)
                parking.broadcast()
                parking.unlock()
                body(&mine)
                // Helpers may still be walking the last phases; the body must outlive them.
                Self.wait(counters + 3 * phases, for: size - 1)
                job = nil
            }
        }
    }

    /// `body(item)` for items 0..<count as a one-phase step, each item on exactly one worker.
    func forEach(_ count: Int, _ body: (Int) -> Void) {
        run(phases: 1) { team in team.phase(count, body) }
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
            var mine = Phases(worker: worker, counters: counters, capacity: stepPhases, clock: nil)
            job?(&mine)
            Self.arrive(counters + 3 * stepPhases, of: size - 1)
        }
    }
}

import Foundation

/// Computed batches on their way to the database, stored one store at a time in the order they
/// were handed over. A store takes every batch waiting when it starts (up to `maxPerStore`), so
/// while the database is slower than the compute the statements grow instead of the queue, and
/// a statement's fixed cost (the round trip, planning, the commit, the relay's wake-up, and each
/// of those waiting for a core on a busy machine) is shared by more jobs.
///
/// The compute never waits for a store unless `capacity` batches are already waiting. After a
/// store fails, nothing more is stored: `enqueue` and `finish` throw its error, and the batches
/// still waiting are handed back by `abandon()` (their offsets stay uncommitted).
final class StoreQueue<Item: Sendable>: @unchecked Sendable {
    let capacity: Int
    let maxPerStore: Int
    private let store: @Sendable ([Item]) async throws -> Void

    private let lock = NSLock()
    private var waiting: [Item] = []
    private var storing = false
    private var failure: (any Error)?
    /// `enqueue` calls waiting for room, and `finish` calls waiting for the queue to empty.
    private var roomWaiters: [CheckedContinuation<Void, Never>] = []
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    init(capacity: Int, maxPerStore: Int, store: @escaping @Sendable ([Item]) async throws -> Void) {
        precondition(capacity >= 1 && maxPerStore >= 1, "a store queue holds and stores at least one item")
        self.capacity = capacity
        self.maxPerStore = maxPerStore
        self.store = store
    }

    /// Hands `item` to the store, after waiting while `capacity` items wait. Throws the error of a
    /// failed store instead (the item is then not taken).
    func enqueue(_ item: Item) async throws {
        while true {
            let (failed, hasRoom) = lock.withLock { (failure, waiting.count < capacity) }
            if let failed { throw failed }
            if hasRoom { break }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = lock.withLock { () -> Bool in
                    if failure != nil || waiting.count < capacity { return true }
                    roomWaiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
        let start = lock.withLock { () -> Bool in
            waiting.append(item)
            guard !storing else { return false }
            storing = true
            return true
        }
        // Unstructured: a store, once started, is not cancelled with whoever handed the item over.
        if start { Task { await self.run() } }
    }

    /// Waits until everything handed over is stored; throws the error of a failed store.
    func finish() async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = lock.withLock { () -> Bool in
                if !storing { return true }
                idleWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
        if let failed = lock.withLock({ failure }) { throw failed }
    }

    /// The items no store took (after a failure), removed from the queue.
    func abandon() -> [Item] {
        lock.withLock {
            defer { waiting.removeAll() }
            return waiting
        }
    }

    /// Items waiting for a store now (the one running excluded).
    var waitingCount: Int { lock.withLock { waiting.count } }

    private func run() async {
        while true {
            // Deciding to stop and clearing `storing` happen under one lock, so an item handed over
            // meanwhile either is taken here or starts a store of its own.
            let (items, waiters) = lock.withLock { () -> ([Item], [CheckedContinuation<Void, Never>]) in
                defer { roomWaiters.removeAll() }
                guard failure == nil, !waiting.isEmpty else {
                    storing = false
                    defer { idleWaiters.removeAll() }
                    return ([], roomWaiters + idleWaiters)
                }
                let items = Array(waiting.prefix(maxPerStore))
                waiting.removeFirst(items.count)
                return (items, roomWaiters)
            }
            waiters.forEach { $0.resume() }
            guard !items.isEmpty else { return }
            do {
                try await store(items)
            } catch {
                lock.withLock { failure = error }
            }
        }
    }
}

import Foundation
import XCTest
@testable import Worker

/// The store queue between the worker's compute and its store: batches are stored in the order
/// they were handed over, those waiting while a store runs go into the next store together, the
/// compute is held back only when the queue is full, and a failed store stops everything after it.
final class StoreQueueTests: XCTestCase {
    /// What the fake store saw, and a gate that holds each store until the test opens it.
    private final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var _stores: [[Int]] = []
        private var gates: [CheckedContinuation<Void, Never>] = []
        private var open = false
        let started = AsyncStream<Void>.makeStream()

        var stores: [[Int]] { lock.withLock { _stores } }

        func store(_ items: [Int], failWith error: (any Error)? = nil) async throws {
            lock.withLock { _stores.append(items) }
            started.continuation.yield()
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = lock.withLock { () -> Bool in
                    if open { return true }
                    gates.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
            if let error { throw error }
        }

        /// Lets every store through, now and later.
        func openGate() {
            let waiting = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
                open = true
                defer { gates.removeAll() }
                return gates
            }
            waiting.forEach { $0.resume() }
        }
    }

    private struct StoreFailed: Error, Equatable {}

    private func waitForStores(_ recorder: Recorder, _ count: Int) async {
        var iterator = recorder.started.stream.makeAsyncIterator()
        for _ in 0..<count { _ = await iterator.next() }
    }

    func testBatchesWaitingDuringAStoreAreStoredTogetherInOrder() async throws {
        let recorder = Recorder()
        let queue = StoreQueue<Int>(capacity: 4, maxPerStore: 3) { try await recorder.store($0) }
        try await queue.enqueue(1)
        await waitForStores(recorder, 1)
        for item in 2...5 { try await queue.enqueue(item) }
        XCTAssertEqual(queue.waitingCount, 4)
        recorder.openGate()
        try await queue.finish()
        XCTAssertEqual(recorder.stores, [[1], [2, 3, 4], [5]])
        XCTAssertEqual(queue.waitingCount, 0)
        // An idle queue starts a store for the next item at once.
        try await queue.enqueue(6)
        try await queue.finish()
        XCTAssertEqual(recorder.stores.last, [6])
    }

    func testAFullQueueHoldsTheComputeUntilAStoreTakesItsBatches() async throws {
        let recorder = Recorder()
        let queue = StoreQueue<Int>(capacity: 1, maxPerStore: 1) { try await recorder.store($0) }
        try await queue.enqueue(1)
        await waitForStores(recorder, 1)
        try await queue.enqueue(2)
        let handedOver = Task { try await queue.enqueue(3); return Date() }
        try await Task.sleep(for: .milliseconds(200))
        let opened = Date()
        recorder.openGate()
        let returned = try await handedOver.value
        XCTAssertGreaterThanOrEqual(returned, opened, "a third batch was taken while one was stored and one waited")
        try await queue.finish()
        XCTAssertEqual(recorder.stores, [[1], [2], [3]])
    }

    func testAFailedStoreStopsTheQueueAndHandsBackWhatWaits() async throws {
        let recorder = Recorder()
        let queue = StoreQueue<Int>(capacity: 4, maxPerStore: 1) { items in
            try await recorder.store(items, failWith: items == [1] ? StoreFailed() : nil)
        }
        try await queue.enqueue(1)
        await waitForStores(recorder, 1)
        try await queue.enqueue(2)
        try await queue.enqueue(3)
        recorder.openGate()
        do {
            try await queue.finish()
            XCTFail("finish returned after a failed store")
        } catch {
            XCTAssertEqual(error as? StoreFailed, StoreFailed())
        }
        do {
            try await queue.enqueue(4)
            XCTFail("enqueue took an item after a failed store")
        } catch {
            XCTAssertEqual(error as? StoreFailed, StoreFailed())
        }
        XCTAssertEqual(recorder.stores, [[1]], "nothing is stored after a failed store")
        XCTAssertEqual(queue.abandon(), [2, 3])
        XCTAssertEqual(queue.waitingCount, 0)
    }
}

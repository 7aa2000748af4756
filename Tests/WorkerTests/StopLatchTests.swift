import XCTest
@testable import Worker

/// The worker's retry sleeps overlap (a batch's store and the next batch's lookup retry at the same
/// time during an outage): a stop must end every one of them, and none may be lost to another.
final class StopLatchTests: XCTestCase {
    /// Runs `body`, failing (instead of hanging the suite) if it has not returned within `seconds`.
    private func returns(within seconds: Double, _ what: String, _ body: @escaping @Sendable () async -> Void) async {
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await body(); return true }
            group.addTask { try? await Task.sleep(for: .seconds(seconds)); return false }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        XCTAssertTrue(finished, "\(what) did not return within \(seconds) s")
    }

    func testReleaseEndsEverySleepUnderWayAndEveryLaterOne() async {
        let latch = StopLatch()
        let count = 16
        let started = AsyncStream<Void>.makeStream()
        await returns(within: 60, "\(count) overlapping sleeps of 10 minutes after a release") {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<count {
                    group.addTask {
                        started.continuation.yield()
                        await latch.sleep(upTo: 600)
                    }
                }
                var iterator = started.stream.makeAsyncIterator()
                for _ in 0..<count { _ = await iterator.next() }
                latch.release()
            }
        }
        XCTAssertTrue(latch.isReleased)
        await returns(within: 60, "a sleep begun after the release") { await latch.sleep(upTo: 600) }
    }

    func testASleepWithoutReleaseEndsAfterItsTimeAndOnCancellation() async {
        let latch = StopLatch()
        await returns(within: 60, "a 10 ms sleep") { await latch.sleep(upTo: 0.01) }
        await returns(within: 60, "a cancelled 10-minute sleep") {
            let sleeper = Task { await latch.sleep(upTo: 600) }
            sleeper.cancel()
            await sleeper.value
        }
        XCTAssertFalse(latch.isReleased)
    }
}

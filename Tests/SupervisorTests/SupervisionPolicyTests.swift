import BlendCore
import Foundation
import XCTest
@testable import Supervisor

final class SupervisionPolicyTests: XCTestCase {
    var settings = BlendConfiguration.Supervisor()
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    override func setUp() {
        settings.heartbeatTimeoutSeconds = 10
        settings.stallSeconds = 60
        settings.memoryLimitMegabytes = 512
        settings.restartInitialMilliseconds = 500
        settings.restartMaxMilliseconds = 8000
        settings.crashLoopRestarts = 4
        settings.crashLoopWindowSeconds = 60
    }

    func report(state: HeartbeatReport.State = .running, lag: Int64 = 0, progress: Date, rssMB: Int64 = 100) -> HeartbeatReport {
        HeartbeatReport(workerId: "w", pid: 1, state: state, partitions: [], inFlight: 0, lastProgress: progress, lag: lag,
                        rssBytes: rssMB * 1024 * 1024, metrics: [])
    }

    func testEveryReplacementReason() {
        let p = SupervisionPolicy(settings)
        let now = t0.addingTimeInterval(100)
        XCTAssertNil(p.verdict(WorkerObservation(startedAt: t0, lastHeartbeat: now.addingTimeInterval(-1), report: report(progress: now)), now: now))
        XCTAssertEqual(p.verdict(WorkerObservation(startedAt: t0, exitStatus: 0), now: now), .exited)
        XCTAssertEqual(p.verdict(WorkerObservation(startedAt: t0, exitStatus: 137), now: now), .crashed)
        XCTAssertEqual(p.verdict(WorkerObservation(startedAt: t0, lastHeartbeat: now.addingTimeInterval(-11), report: report(progress: now)), now: now), .hung)
        XCTAssertEqual(p.verdict(WorkerObservation(startedAt: now.addingTimeInterval(-11)), now: now), .hung, "never heartbeating counts from start")
        XCTAssertNil(p.verdict(WorkerObservation(startedAt: now.addingTimeInterval(-5)), now: now), "a starting worker gets the timeout")
        XCTAssertEqual(p.verdict(WorkerObservation(startedAt: t0, lastHeartbeat: now, report: report(lag: 5, progress: now.addingTimeInterval(-61))), now: now), .stalled)
        XCTAssertNil(p.verdict(WorkerObservation(startedAt: t0, lastHeartbeat: now, report: report(lag: 0, progress: now.addingTimeInterval(-600))), now: now),
                     "an idle worker without lag is not stalled")
        XCTAssertEqual(p.verdict(WorkerObservation(startedAt: t0, lastHeartbeat: now, report: report(progress: now, rssMB: 600)), now: now), .memory)
        settings.memoryLimitMegabytes = 0
        XCTAssertNil(SupervisionPolicy(settings).verdict(WorkerObservation(startedAt: t0, lastHeartbeat: now, report: report(progress: now, rssMB: 60000)), now: now))
    }

    func testRestartDelaysGrowToTheCapAndCrashLoopsAreDetectedWithinTheWindow() {
        let p = SupervisionPolicy(settings)
        let ceilings = (1...6).map { p.restartBackoff.ceiling(attempt: $0 - 1) }
        XCTAssertEqual(ceilings, [0.5, 1, 2, 4, 8, 8])
        for n in 1...6 {
            let d = p.restartDelay(recentRestarts: n)
            XCTAssertLessThanOrEqual(d, ceilings[n - 1])
            XCTAssertGreaterThanOrEqual(d, ceilings[n - 1] * 0.8)
        }
        let now = t0.addingTimeInterval(1000)
        let restarts = [now.addingTimeInterval(-120), now.addingTimeInterval(-50), now.addingTimeInterval(-20), now.addingTimeInterval(-10), now.addingTimeInterval(-1)]
        XCTAssertEqual(p.recentRestarts(restarts, now: now).count, 4)
        XCTAssertTrue(p.isCrashLooping(recentRestarts: 4))
        XCTAssertFalse(p.isCrashLooping(recentRestarts: 3))
    }
}

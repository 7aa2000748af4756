import XCTest
@testable import BlendCore

final class BackoffTests: XCTestCase {
    func testDelaysGrowGeometricallyUpToTheCap() {
        let b = Backoff(initialSeconds: 0.1, maxSeconds: 1, multiplier: 2, jitter: 0)
        XCTAssertEqual((0..<6).map { b.ceiling(attempt: $0) }, [0.1, 0.2, 0.4, 0.8, 1, 1])
        XCTAssertEqual(b.ceiling(attempt: 10_000), 1, "no overflow for long outages")
    }

    func testJitterStaysWithinItsBandAndVaries() {
        let b = Backoff(initialSeconds: 1, maxSeconds: 10, multiplier: 2, jitter: 0.25)
        var rng = SplitMix64(seed: 1)
        let delays = (0..<200).map { _ in b.delay(attempt: 2, using: &rng) }
        XCTAssertTrue(delays.allSatisfy { (3.0...4.0).contains($0) }, "\(delays.min()!)…\(delays.max()!)")
        XCTAssertGreaterThan(Set(delays).count, 150)
    }

    func testConfigurationMapsMillisecondsToSeconds() {
        var retry = BlendConfiguration.Retry()
        retry.initialMilliseconds = 250
        retry.maxMilliseconds = 5000
        let b = Backoff(retry)
        XCTAssertEqual(b.initialSeconds, 0.25)
        XCTAssertEqual(b.maxSeconds, 5)
    }
}

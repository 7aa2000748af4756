import BlendTestSupport
import Foundation
import Kafka
import XCTest

final class EnqueueCommandTests: XCTestCase {
    func testOnlyValidJobsAreSentAndEachInvalidOneIsReportedWithItsViolations() async throws {
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        try broker.createTopic("jobs", partitions: 2)
        let jsonl = """
        {"job_id":"ok-1","instruction":"Say hi","candidates":[{"model":"a","text":"hi"},{"model":"b","text":"hello"}]}
        {"job_id":"bad-1","instruction":"Say hi","candidates":[{"model":"a","text":"hi"}],"rank":{"mode":"borda"}}
        {"job_id":"ok-2","instruction":"Say bye","candidates":[{"model":"a","text":"bye"},{"model":"b","text":"ciao"}],"fuse":false}
        [not json
        """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jobs-\(UUID().uuidString).jsonl")
        try jsonl.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }

        let process = Process()
        process.executableURL = RepositoryLayout.blenddExecutable
        process.arguments = ["enqueue", "--bootstrap-servers", broker.bootstrapServers, "--topic", "jobs", file.path]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, "invalid jobs make the exit status 1")
        let lines = stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("ok-1 -> jobs[") }, stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("ok-2 -> jobs[") }, stdout)
        let bad = try XCTUnwrap(lines.first { $0.contains("bad-1") }, stdout)
        XCTAssertTrue(bad.hasPrefix("\(file.path):2: not sent, job bad-1 rejected:"), bad)
        XCTAssertTrue(bad.contains("too_few_candidates") && bad.contains("unknown_rank_mode"), bad)
        XCTAssertTrue(lines.contains { $0.hasPrefix("\(file.path):4: not sent") && $0.contains("not_json") }, stdout)
        XCTAssertEqual(lines.last, "2 sent, 2 invalid, 0 failed")

        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "check", topics: ["jobs"]))
        var keys: [String] = []
        for _ in 0..<2 {
            guard let m = await consumer.next() else { break }
            keys.append(String(decoding: m.key ?? [], as: UTF8.self))
            XCTAssertTrue(String(decoding: m.bytes, as: UTF8.self).contains("\"job_id\":\"\(keys.last!)\""))
        }
        XCTAssertEqual(Set(keys), ["ok-1", "ok-2"])
        let more = await readValues(consumer, count: 1, within: .seconds(1))
        XCTAssertEqual(more, [], "invalid jobs were not sent")
    }

    func testEnqueueToADeadClusterFailsWithinTheTimeoutAndSaysWhy() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jobs-\(UUID().uuidString).jsonl")
        try #"{"job_id":"ok-1","instruction":"Say hi","candidates":[{"model":"a","text":"hi"},{"model":"b","text":"hello"}]}"#
            .write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = RepositoryLayout.blenddExecutable
        // Nothing listens on port 1: every connect is refused.
        process.arguments = ["enqueue", "--bootstrap-servers", "127.0.0.1:1", "--topic", "jobs", "--timeout", "2", file.path]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        let started = Date()
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, stdout)
        XCTAssertLessThan(Date().timeIntervalSince(started), 15, "bounded by --timeout, not librdkafka's 300 s default")
        let lines = stdout.split(separator: "\n").map(String.init)
        let failure = try XCTUnwrap(lines.first { $0.hasPrefix("ok-1: not delivered: kafka error _MSG_TIMED_OUT") }, stdout)
        XCTAssertTrue(failure.contains("last broker error: _TRANSPORT") && failure.contains("Connection refused"), failure)
        XCTAssertEqual(lines.last, "0 sent, 0 invalid, 1 failed")
    }
}

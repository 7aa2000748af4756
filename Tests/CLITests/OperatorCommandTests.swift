import BlendTestSupport
import Foundation
import Health
import Logging
import ServiceLifecycle
import XCTest

/// The commands and flags operators script against: exit statuses, version, process name.
final class OperatorCommandTests: XCTestCase {
    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    func run(_ arguments: [String], stdin: Data = Data(), environment: [String: String]? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = CommandLineTests.blenddURL
        process.arguments = arguments
        process.currentDirectoryURL = CommandLineTests.repositoryRoot
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        input.fileHandleForWriting.write(stdin)
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    func testVersionNamesTheVersionAndTheGitCommitOfTheBuild() throws {
        let r = try run(["--version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pattern = try NSRegularExpression(pattern: #"^blendd [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)\n$"#)
        XCTAssertNotNil(pattern.firstMatch(in: r.stdout, range: NSRange(r.stdout.startIndex..., in: r.stdout)), r.stdout)
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        git.arguments = ["-C", CommandLineTests.repositoryRoot.path, "rev-parse", "--short=12", "HEAD"]
        let out = Pipe()
        git.standardOutput = out
        git.standardError = FileHandle.nullDevice
        guard (try? git.run()) != nil else { return }
        let head = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        git.waitUntilExit()
        if git.terminationStatus == 0 {
            // A commit made after this build would differ; the test target is built with it, so it is the same checkout.
            XCTAssertTrue(r.stdout.contains("(commit \(head)"), "built from \(head): \(r.stdout)")
        }
    }

    func testValidateOfEmptyInputFailsWithAClearMessage() throws {
        for input in ["", "   \n\n\t"] {
            let r = try run(["validate", "-"], stdin: Data(input.utf8))
            XCTAssertEqual(r.status, 1, "input \(input.debugDescription)")
            XCTAssertEqual(r.stderr, "error: <stdin>: no job to check (the input is empty)\n")
        }
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("empty-\(UUID().uuidString).jsonl")
        try Data().write(to: empty)
        defer { try? FileManager.default.removeItem(at: empty) }
        let r = try run(["validate", empty.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: \(empty.path): no job to check (the input is empty)\n")
    }

    func testValidateAppliesTheConfiguredLimits() throws {
        let job = #"{"job_id":"l1","instruction":"Q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"},{"model":"c","text":"z"}]}"#
        let defaults = try run(["validate", "-"], stdin: Data(job.utf8))
        XCTAssertEqual(defaults.status, 0, defaults.stdout + defaults.stderr)
        let flag = try run(["validate", "--json", "--set", "limits.max_candidates=2", "-"], stdin: Data(job.utf8))
        XCTAssertEqual(flag.status, 1)
        XCTAssertTrue(flag.stdout.contains(#""code":"too_many_candidates""#), flag.stdout)

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString).yaml")
        try "limits:\n  max_candidates: 2\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let configured = try run(["validate", "--json", "--config", file.path, "-"], stdin: Data(job.utf8))
        XCTAssertEqual(configured.status, 1)
        XCTAssertTrue(configured.stdout.contains(#""code":"too_many_candidates""#), configured.stdout)

        let broken = try run(["validate", "--set", "limits.max_candidates=many", "-"], stdin: Data(job.utf8))
        XCTAssertEqual(broken.status, 1)
        XCTAssertTrue(broken.stderr.hasPrefix("error: invalid configuration: "), broken.stderr)
    }

    func testAnUnknownRankModeIsReportedWithRanksOwnUsage() throws {
        let r = try run(["rank", "--mode", "borda", "-"], stdin: Data("{}".utf8))
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("unknown rank mode borda; expected one of max_logits, max_wins, bubble"), r.stderr)
        XCTAssertTrue(r.stderr.contains("Usage: blendd rank <file>"), r.stderr)
        XCTAssertFalse(r.stderr.contains("<subcommand>"), "not the top-level usage:\n\(r.stderr)")
    }

    func testStatusFailsWhenTheSupervisorIsUnreachableAndPrintsItWhenItAnswers() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        var environment = ProcessInfo.processInfo.environment
        environment["BLENDD_DATABASE_URL"] = db.url

        // A port that was just free: nothing listens there.
        let probe = HealthHTTPService(address: try ListenAddress(parsing: "127.0.0.1:0")) { _ in .text(200, "ok\n") }
        let probeGroup = ServiceGroup(configuration: .init(services: [.init(service: probe)], logger: Logger(label: "test")))
        let probeRun = Task { try await probeGroup.run() }
        let freePort = try await probe.port()
        await probeGroup.triggerGracefulShutdown()
        try await probeRun.value
        let down = try run(["status", "--supervisor", "127.0.0.1:\(freePort)"], environment: environment)
        XCTAssertEqual(down.status, 1, down.stdout + down.stderr)
        XCTAssertTrue(down.stdout.contains("local supervisor at 127.0.0.1:\(freePort): not reachable"), down.stdout)
        XCTAssertTrue(down.stderr.hasPrefix("error: local supervisor at 127.0.0.1:\(freePort) not reachable: "), down.stderr)

        let status = #"{"degraded":false,"host":"h","workers":[{"slot":0,"worker_id":"h-w0","pid":42,"state":"running","restarts_recent":0,"last_reason":null,"partitions":["blend.jobs[0]"],"in_flight":0,"lag":3,"rss_bytes":0,"last_heartbeat_age_s":0.5}]}"#
        let fake = HealthHTTPService(address: try ListenAddress(parsing: "[::1]:0")) { endpoint in
            endpoint == .status ? HealthResponse(status: 200, contentType: "application/json", body: status) : .text(404, "")
        }
        let group = ServiceGroup(configuration: .init(services: [.init(service: fake)], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        let port = try await fake.port()
        let up = try run(["status", "--supervisor", "[::1]:\(port)"], environment: environment)
        await group.triggerGracefulShutdown()
        try await running.value
        try await db.drop()
        XCTAssertEqual(up.status, 0, up.stdout + up.stderr)
        XCTAssertTrue(up.stdout.contains("  slot 0: running pid 42 restarts 0 last - lag 3 partitions blend.jobs[0]\n"), up.stdout)
    }

    /// On an AVX-512 CPU blendd re-executes itself once to choose OpenBLAS's kernels; the process
    /// must still be called `blendd` (ps, pgrep, journald), with its original argv[0].
    func testTheProcessKeepsItsNameAcrossTheOpenBLASReexec() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = nil
        environment["BLENDD_OPENBLAS_REEXEC"] = nil
        // A worker that retries forever against a closed port: a long-lived process to look at.
        environment["BLENDD_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/blendd"
        environment["BLENDD_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"
        let process = Process()
        process.executableURL = CommandLineTests.blenddURL
        process.arguments = ["worker"]
        process.environment = environment
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("reexec-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        defer { if process.isRunning { process.terminate() }; process.waitUntilExit() }
        let pid = process.processIdentifier
        let cpuHasAVX512 = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains(" avx512f")
        try await eventually(within: 20, "the worker retrying its start-up") {
            ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("retrying in")
        }
        let environ = String(decoding: try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")), as: UTF8.self)
        XCTAssertEqual(environ.contains("BLENDD_OPENBLAS_REEXEC=0"), cpuHasAVX512, "re-executed exactly when the CPU has AVX-512")
        XCTAssertEqual(try String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8), "blendd\n")
        let argv = try String(decoding: Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")), as: UTF8.self).split(separator: "\0")
        XCTAssertEqual(argv.map(String.init), [CommandLineTests.blenddURL.path, "worker"])
        process.terminate()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "SIGTERM during start-up retries exits 0")
    }
}

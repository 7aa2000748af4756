import BlendCore
import Foundation
import XCTest

/// Children start in a clean signal state whatever the spawning thread's mask and the parent's
/// dispositions are.
final class ChildProcessTests: XCTestCase {
    /// Fields of /proc/PID/status as hex masks (SigBlk, SigIgn, SigPnd…).
    private func signalMask(_ pid: pid_t, _ field: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
        return UInt64(line.split(separator: "\t").last.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "", radix: 16)
    }

    private func waitForExit(_ child: ChildProcess, within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let status = child.poll() { return status }
            usleep(10_000)
        }
        return child.poll()
    }

    /// Spawns from a thread that blocks every signal, in a process that ignores SIGTERM and
    /// SIGINT (as the supervisor does to handle them itself): a plain `sleep` must still start
    /// with nothing blocked or ignored and die of the SIGTERM it is sent.
    func testAPlainSleepStartsWithACleanSignalStateAndStopsOnSIGTERM() throws {
        let previousTERM = signal(SIGTERM, SIG_IGN)
        let previousINT = signal(SIGINT, SIG_IGN)
        defer {
            signal(SIGTERM, previousTERM)
            signal(SIGINT, previousINT)
        }
        final class Outcome: @unchecked Sendable { var spawned: Result<ChildProcess, any Error>? }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            outcome.spawned = Result { try ChildProcess(arguments: ["/bin/sleep", "30"], environment: ["PATH": "/usr/bin:/bin"]) }
            done.signal()
        }
        thread.start()
        done.wait()
        let child = try XCTUnwrap(outcome.spawned).get()
        defer { if !child.hasExited { kill(child.pid, SIGKILL); _ = waitForExit(child, within: 5) } }

        // The child is `sleep` once exec has happened; until then /proc shows the parent's image.
        let deadline = Date().addingTimeInterval(5)
        while (try? String(contentsOfFile: "/proc/\(child.pid)/comm", encoding: .utf8)) != "sleep\n" && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(try String(contentsOfFile: "/proc/\(child.pid)/comm", encoding: .utf8), "sleep\n")
        // Signals 1…31; 32 and 33 belong to glibc's threads implementation, which keeps them itself.
        let standard: UInt64 = (1 << 31) - 1
        XCTAssertEqual(signalMask(child.pid, "SigBlk").map { $0 & standard }, 0, "no signal blocked")
        XCTAssertEqual(signalMask(child.pid, "SigIgn").map { $0 & standard }, 0, "no signal ignored")

        let sent = Date()
        child.signal(SIGTERM)
        XCTAssertEqual(waitForExit(child, within: 5), 128 + SIGTERM, "ended by SIGTERM")
        XCTAssertLessThan(Date().timeIntervalSince(sent), 1, "at once, not after sleeping out its 30 s")
    }

    func testInheritedDescriptorsArriveUnderTheirNumberAndOthersStayBehind() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        defer { close(fds[0]) }
        // The child writes to fd 3 and lists its descriptors; the pipe's own numbers must not be among them.
        let script = "echo hello >&3; ls /proc/self/fd >&3"
        let child = try ChildProcess(arguments: ["/bin/sh", "-c", script], environment: [:], inheriting: [3: fds[1]])
        close(fds[1])
        XCTAssertEqual(waitForExit(child, within: 5), 0)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "hello")
        let open = Set(lines.dropFirst().compactMap { Int32($0) })
        XCTAssertTrue(open.contains(3))
        XCTAssertFalse(open.contains(fds[0]), "the read end (close-on-exec) is not inherited")
        if fds[1] != 3 { XCTAssertFalse(open.contains(fds[1]), "only under its new number") }
    }

    func testAMissingProgramIsATypedError() {
        XCTAssertThrowsError(try ChildProcess(arguments: ["/nonexistent/blendd"], environment: [:])) { error in
            XCTAssertEqual((error as? ChildProcessError)?.description, "cannot start /nonexistent/blendd: No such file or directory")
        }
    }
}

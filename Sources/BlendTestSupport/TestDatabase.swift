import Foundation
import Postgres

/// A fresh database on the throwaway server `scripts/test.sh` starts, dropped at the end, so
/// test classes never see each other's rows.
public struct TestDatabase: Sendable {
    public let name: String
    public let url: String
    let adminURL: String

    /// nil when the tests run without a server (BLENDD_TEST_DATABASE_URL unset).
    public static var serverURL: String? {
        ProcessInfo.processInfo.environment["BLENDD_TEST_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public static let skipMessage = "BLENDD_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL"

    public static func create(prefix: String = "blendd_test") async throws -> TestDatabase {
        guard let admin = serverURL else { throw PostgresError(.connection, message: skipMessage) }
        let name = "\(prefix)_\(UInt32.random(in: 0...UInt32.max))_\(ProcessInfo.processInfo.processIdentifier)"
        let conn = try await PostgresConnection.connect(admin)
        try await conn.execute("CREATE DATABASE \(identifier: name)")
        await conn.close()
        return TestDatabase(name: name, url: PostgresURL.replacingDatabase(in: admin, with: name), adminURL: admin)
    }

    /// The database with blendd's schema applied.
    public static func migrated(prefix: String = "blendd_test") async throws -> TestDatabase {
        let db = try await create(prefix: prefix)
        let conn = try await PostgresConnection.connect(db.url)
        _ = try await MigrationRunner(directory: RepositoryLayout.migrations).run(on: conn)
        await conn.close()
        return db
    }

    public func drop() async throws {
        let conn = try await PostgresConnection.connect(adminURL)
        try await conn.execute("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)")
        await conn.close()
    }
}

/// Paths in the repository, for tests that read its files or run its binary.
public enum RepositoryLayout {
    public static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    public static var migrations: String { root.appendingPathComponent("migrations").path }

    /// The built `blendd` next to the test bundle in the build products directory.
    public static var blenddExecutable: URL {
        var dir = Bundle.main.bundleURL
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") { dir = bundle.bundleURL }
        while dir.pathExtension == "xctest" || dir.lastPathComponent == "Contents" || dir.lastPathComponent == "MacOS" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("blendd")
    }
}

/// Runs a command to completion with posix_spawn and waitpid (Foundation's `Process` can
/// wait forever when a child leaves a grandchild holding its pipes, as pg_ctl's server does),
/// with stdin, stdout and stderr on /dev/null. Returns the exit status.
@discardableResult
public func runToCompletion(_ arguments: [String]) -> Int32 {
    guard let pid = spawnProcess(arguments) else { return -1 }
    return waitForExit(pid)
}

/// Starts a process (stdin and stdout on /dev/null; stderr to `stderrPath` or /dev/null; file
/// descriptor 3, when `fd3Path` is given, appending to that file, e.g. for heartbeats).
public func spawnProcess(_ arguments: [String], stderrPath: String? = nil, environment: [String: String]? = nil,
                         fd3Path: String? = nil) -> pid_t? {
    var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, stderrPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
    if let fd3Path { posix_spawn_file_actions_addopen(&actions, 3, fd3Path, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
    var pid: pid_t = 0
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { env.forEach { free($0) } }
    guard posix_spawn(&pid, arguments[0], &actions, nil, argv, env) == 0 else { return nil }
    return pid
}

/// Waits for a child; returns its exit status, or 128 + signal when a signal ended it.
public func waitForExit(_ pid: pid_t) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// Restarts the throwaway server of `scripts/test.sh` (as the postgres user when root).
public func restartTestServer() -> Bool {
    let env = ProcessInfo.processInfo.environment
    guard let bin = env["BLENDD_TEST_PG_BIN"], let dir = env["BLENDD_TEST_PG_DIR"] else { return false }
    let pgctl = ["\(bin)/pg_ctl", "-D", "\(dir)/data", "restart", "-m", "fast", "-w", "-l", "\(dir)/server.log"]
    let command = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + pgctl : pgctl
    return runToCompletion(command) == 0
}

/// Stops the throwaway server (`fast` shutdown, or `immediate`: a crash without a checkpoint);
/// `startTestServer` brings it back with the options it was started with.
public func stopTestServer(mode: String = "fast") -> Bool {
    testServerControl(["stop", "-m", mode, "-w"])
}

public func startTestServer() -> Bool {
    guard let dir = ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"],
          let opts = try? String(contentsOfFile: "\(dir)/data/postmaster.opts", encoding: .utf8) else { return false }
    // postmaster.opts: the binary, then each argument in double quotes; drop the binary and -D.
    var args = opts.components(separatedBy: "\"").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
    if let d = args.firstIndex(of: "-D") { args.removeSubrange(d...(d + 1)) }
    return testServerControl(["start", "-w", "-l", "\(dir)/server.log", "-o", args.joined(separator: " ")])
}

private func testServerControl(_ arguments: [String]) -> Bool {
    let env = ProcessInfo.processInfo.environment
    guard let bin = env["BLENDD_TEST_PG_BIN"], let dir = env["BLENDD_TEST_PG_DIR"] else { return false }
    let pgctl = ["\(bin)/pg_ctl", "-D", "\(dir)/data"] + arguments
    let command = getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + pgctl : pgctl
    return runToCompletion(command) == 0
}

/// A condition in an integration test that did not come true in time.
public struct ConditionTimedOut: Error, CustomStringConvertible {
    public let description: String
}

/// Polls `condition` every 100 ms until it holds, or throws `ConditionTimedOut` naming `what`.
public func eventually(within seconds: Double, _ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while try await !condition() {
        guard Date() < deadline else { throw ConditionTimedOut(description: "\(what) did not happen within \(seconds) s") }
        try await Task.sleep(for: .milliseconds(100))
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
public func cpuSeconds(of pid: pid_t) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

import BlendCore
import Foundation

/// A worker child process and the thread reading its heartbeat pipe. Started with
/// posix_spawn (librdkafka is not fork-safe, and the child is a fresh `blendd` anyway).
final class WorkerProcess: @unchecked Sendable {
    let pid: pid_t
    let slot: Int
    let workerId: String
    let startedAt = Date()
    private let lock = NSLock()
    private var _lastHeartbeat: Date?
    private var _report: HeartbeatReport?
    private var _exitStatus: Int32?
    private var stopRequestedAt: Date?
    /// File descriptor number the child writes heartbeats to.
    static let heartbeatFD: Int32 = 3

    init(command: [String], slot: Int, workerId: String, environment: [String: String]) throws {
        var fds: [Int32] = [0, 0]
        // Close-on-exec, so other children never inherit this pipe; dup2 onto fd 3 clears the flag for this child only.
        guard pipe(&fds) == 0 else { throw SupervisorError.spawn("cannot create a heartbeat pipe: \(String(cString: strerror(errno)))") }
        let readEnd = fds[0]
        var writeEnd = fds[1]
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        if writeEnd == Self.heartbeatFD {
            // dup2 onto itself would keep close-on-exec set: move it first.
            let moved = fcntl(writeEnd, F_DUPFD_CLOEXEC, 10)
            close(writeEnd)
            writeEnd = moved
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, Self.heartbeatFD)
        posix_spawn_file_actions_addclose(&actions, readEnd)
        var env = environment
        env[HeartbeatWriter.environmentVariable] = String(Self.heartbeatFD)
        env["BLENDD_WORKER_ID"] = workerId
        let argv = command.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
        close(writeEnd)
        guard rc == 0 else {
            close(readEnd)
            throw SupervisorError.spawn("cannot start \(command[0]): \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        self.slot = slot
        self.workerId = workerId
        let reader = Thread { [self] in self.readHeartbeats(readEnd) }
        reader.name = "blendd.supervisor.heartbeat.\(slot)"
        reader.start()
    }

    private func readHeartbeats(_ fd: Int32) {
        defer { close(fd) }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            pending += chunk[0..<n]
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = pending[..<newline]
                if let report = try? HeartbeatReport.parse(line: line) {
                    lock.withLock {
                        _report = report
                        _lastHeartbeat = Date()
                    }
                }
                pending.removeSubrange(...newline)
            }
        }
    }

    var observation: WorkerObservation {
        lock.withLock { WorkerObservation(startedAt: startedAt, lastHeartbeat: _lastHeartbeat, report: _report, exitStatus: _exitStatus) }
    }

    /// Reaps the child if it has exited; returns its status (or 128 + signal).
    @discardableResult
    func poll() -> Int32? {
        if let s = lock.withLock({ _exitStatus }) { return s }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        lock.withLock { _exitStatus = code }
        return code
    }

    var hasExited: Bool { poll() != nil }

    /// SIGTERM now; `enforce` sends SIGKILL once `drain` has passed since.
    func requestStop() {
        lock.withLock { if stopRequestedAt == nil { stopRequestedAt = Date() } }
        kill(pid, SIGTERM)
    }

    func enforceStop(drain: Double) {
        guard let asked = lock.withLock({ stopRequestedAt }), !hasExited, Date().timeIntervalSince(asked) > drain else { return }
        kill(pid, SIGKILL)
    }

    func killNow() {
        lock.withLock { if stopRequestedAt == nil { stopRequestedAt = Date() } }
        kill(pid, SIGKILL)
    }

    var isStopping: Bool { lock.withLock { stopRequestedAt != nil } }
}

public enum SupervisorError: Error, CustomStringConvertible {
    case spawn(String)
    case listen(String)

    public var description: String {
        switch self {
        case .spawn(let m): "supervisor: \(m)"
        case .listen(let m): "supervisor: \(m)"
        }
    }
}

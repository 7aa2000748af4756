import BlendCore
import Foundation

/// A worker child process and the thread reading its heartbeat pipe (a dedicated thread: a blocking
/// `read` must never sit on Swift's cooperative pool).
final class WorkerProcess: @unchecked Sendable {
    let child: ChildProcess
    var pid: pid_t { child.pid }
    let slot: Int
    let workerId: String
    let startedAt = Date()
    private let lock = NSLock()
    private var _lastHeartbeat: Date?
    private var _report: HeartbeatReport?
    private var stopRequestedAt: Date?
    /// File descriptor number the child writes heartbeats to.
    static let heartbeatFD: Int32 = 3

    /// - Parameter environment: the child's environment, configuration included (never the
    ///   command line, which every local user can read in /proc).
    init(command: [String], slot: Int, workerId: String, environment: [String: String]) throws {
        var fds: [Int32] = [0, 0]
        // Close-on-exec, so other children never inherit this pipe; the spawn hands the write end to this child as fd 3.
        guard pipe(&fds) == 0 else { throw SupervisorError.spawn("cannot create a heartbeat pipe: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        var env = environment
        env[HeartbeatWriter.environmentVariable] = String(Self.heartbeatFD)
        env["BLENDD_WORKER_ID"] = workerId
        do {
            child = try ChildProcess(arguments: command, environment: env, inheriting: [Self.heartbeatFD: writeEnd])
        } catch {
            close(readEnd)
            close(writeEnd)
            throw SupervisorError.spawn(error.description)
        }
        close(writeEnd)
        self.slot = slot
        self.workerId = workerId
        let reader = Thread { [self] in self.readHeartbeats(readEnd) }
        reader.name = "blendd.supervisor.heartbeat.\(slot)"
        reader.start()
    }

    /// Signalled once the heartbeat pipe reached its end (the worker exited).
    private let heartbeatsEnded = DispatchSemaphore(value: 0)

    /// The last report of an exited worker, once its final line (which may name the fatal
    /// error it died of) has been read; the pipe ends the moment the worker exits.
    func finalReport() -> HeartbeatReport? {
        if heartbeatsEnded.wait(timeout: .now() + .milliseconds(50)) == .success { heartbeatsEnded.signal() }
        return lock.withLock { _report }
    }

    private func readHeartbeats(_ fd: Int32) {
        defer {
            close(fd)
            heartbeatsEnded.signal()
        }
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
        let exit = child.poll()
        return lock.withLock { WorkerObservation(startedAt: startedAt, lastHeartbeat: _lastHeartbeat, report: _report, exitStatus: exit) }
    }

    /// Reaps the child if it has exited; returns its status (or 128 + signal).
    @discardableResult
    func poll() -> Int32? { child.poll() }

    var hasExited: Bool { child.hasExited }

    /// SIGTERM now; `enforce` sends SIGKILL once `drain` has passed since.
    func requestStop() {
        lock.withLock { if stopRequestedAt == nil { stopRequestedAt = Date() } }
        child.signal(SIGTERM)
    }

    func enforceStop(drain: Double) {
        guard let asked = lock.withLock({ stopRequestedAt }), !hasExited, Date().timeIntervalSince(asked) > drain else { return }
        child.signal(SIGKILL)
    }

    func killNow() {
        lock.withLock { if stopRequestedAt == nil { stopRequestedAt = Date() } }
        child.signal(SIGKILL)
    }

    var isStopping: Bool { lock.withLock { stopRequestedAt != nil } }
}

public enum SupervisorError: Error, CustomStringConvertible {
    case spawn(String)

    public var description: String {
        switch self {
        case .spawn(let m): "supervisor: \(m)"
        }
    }
}

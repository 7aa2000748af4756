import Foundation

/// A child process started with posix_spawn (never fork: librdkafka is not fork-safe) in a clean
/// signal state: an empty signal mask and every signal at its default disposition. Without that the
/// child inherits the spawning thread's mask and the parent's ignored signals (a supervisor ignores
/// SIGTERM to handle it itself), and a child that is not blendd would never act on SIGTERM.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var _exitStatus: Int32?

    /// - Parameters:
    ///   - arguments: the program's path, then its arguments; argv[0] is the path.
    ///   - environment: the child's whole environment.
    ///   - inheriting: descriptors of this process to hand over, by the number the child sees them
    ///     as (for example a pipe's write end as fd 3). Every other descriptor this process opened
    ///     close-on-exec stays behind.
    public init(arguments: [String], environment: [String: String], inheriting: [Int32: Int32] = [:]) throws(ChildProcessError) {
        guard let program = arguments.first else { throw ChildProcessError(program: "", reason: "no program given") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the target in the child (also when source == target, glibc ≥ 2.29).
        for (target, source) in inheriting { posix_spawn_file_actions_adddup2(&actions, source, target) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var everySignal = sigset_t()
        sigfillset(&everySignal)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw ChildProcessError(program: program, reason: String(cString: strerror(rc))) }
        self.pid = pid
    }

    /// Reaps the child if it has exited, without waiting: its exit status, or 128 + the signal
    /// that ended it; nil while it runs.
    @discardableResult
    public func poll() -> Int32? {
        lock.withLock {
            if let _exitStatus { return _exitStatus }
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            _exitStatus = code
            return code
        }
    }

    public var hasExited: Bool { poll() != nil }

    public func signal(_ number: Int32) { if !hasExited { kill(pid, number) } }
}

public struct ChildProcessError: Error, CustomStringConvertible, Equatable {
    public let program: String
    public let reason: String
    public var description: String { "cannot start \(program): \(reason)" }
}

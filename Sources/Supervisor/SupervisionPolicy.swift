import BlendCore
import Foundation

/// Why a worker process is replaced.
public enum ReplacementReason: String, Sendable, CaseIterable {
    /// It exited with status 0 on its own (workers run until told to stop).
    case exited
    /// It exited with an error status or was killed by a signal.
    case crashed
    /// No heartbeat within the timeout (e.g. stopped, deadlocked, stuck in a blocking call).
    case hung
    /// Heartbeats arrive, but no batch finished for too long while its partitions have lag.
    case stalled
    /// Resident memory above the limit.
    case memory
}

/// What the supervisor knows about one worker process.
public struct WorkerObservation: Sendable {
    public var startedAt: Date
    public var lastHeartbeat: Date?
    public var report: HeartbeatReport?
    /// Set once the process has been reaped: its exit status, or 128 + signal.
    public var exitStatus: Int32?

    public init(startedAt: Date, lastHeartbeat: Date? = nil, report: HeartbeatReport? = nil, exitStatus: Int32? = nil) {
        self.startedAt = startedAt
        self.lastHeartbeat = lastHeartbeat
        self.report = report
        self.exitStatus = exitStatus
    }
}

/// The supervisor's rules, free of processes and clocks so each one is tested directly.
public struct SupervisionPolicy: Sendable {
    public var heartbeatTimeout: Double
    public var stallSeconds: Double
    public var memoryLimitBytes: Int64
    public var restartBackoff: Backoff
    public var crashLoopRestarts: Int
    public var crashLoopWindow: Double

    public init(_ s: BlendConfiguration.Supervisor) {
        heartbeatTimeout = s.heartbeatTimeoutSeconds
        stallSeconds = s.stallSeconds
        memoryLimitBytes = Int64(s.memoryLimitMegabytes) * 1024 * 1024
        restartBackoff = Backoff(initialSeconds: Double(s.restartInitialMilliseconds) / 1000,
                                 maxSeconds: Double(s.restartMaxMilliseconds) / 1000, multiplier: 2, jitter: 0.2)
        crashLoopRestarts = s.crashLoopRestarts
        crashLoopWindow = s.crashLoopWindowSeconds
    }

    /// nil while the worker is healthy.
    public func verdict(_ w: WorkerObservation, now: Date) -> ReplacementReason? {
        if let status = w.exitStatus { return status == 0 ? .exited : .crashed }
        let lastSign = w.lastHeartbeat ?? w.startedAt
        if now.timeIntervalSince(lastSign) > heartbeatTimeout { return .hung }
        if let r = w.report {
            if memoryLimitBytes > 0 && r.rssBytes > memoryLimitBytes { return .memory }
            if r.lag > 0 && r.state == .running && now.timeIntervalSince(r.lastProgress) > stallSeconds { return .stalled }
        }
        return nil
    }

    /// Restarts of one slot within the crash-loop window (oldest first).
    public func recentRestarts(_ restarts: [Date], now: Date) -> [Date] {
        restarts.filter { now.timeIntervalSince($0) <= crashLoopWindow }
    }

    /// Delay before starting a replacement, growing with the slot's recent restarts.
    public func restartDelay(recentRestarts: Int) -> Double {
        restartBackoff.delay(attempt: max(0, recentRestarts - 1))
    }

    /// A slot restarting this often is crash-looping: the supervisor reports itself degraded
    /// (readiness fails) and keeps retrying at the longest delay instead of spinning.
    public func isCrashLooping(recentRestarts: Int) -> Bool { recentRestarts >= crashLoopRestarts }
}

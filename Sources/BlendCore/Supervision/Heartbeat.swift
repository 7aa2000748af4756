import Foundation

/// What a worker tells its supervisor, one JSON line at a time, on the pipe whose descriptor
/// is in `BLENDD_HEARTBEAT_FD`.
public struct HeartbeatReport: Sendable, Codable, Equatable {
    /// `degraded`: alive, but riding out an infrastructure fault (the database or broker is unreachable).
    public enum State: String, Sendable, Codable { case starting, running, degraded, draining, stopping }

    public var workerId: String
    public var pid: Int32
    public var state: State
    /// `topic[partition]` of each assigned partition.
    public var partitions: [String]
    public var inFlight: Int
    /// When the worker last finished a batch (or started, before the first one).
    public var lastProgress: Date
    public var lag: Int64
    public var rssBytes: Int64
    public var metrics: [MetricFamily]
    /// Set in a worker's last report when a fault no retry fixes ends it (its one error line),
    /// so the supervisor can say why its workers crash-loop.
    public var fatalError: String?

    public init(workerId: String, pid: Int32, state: State, partitions: [String], inFlight: Int, lastProgress: Date,
                lag: Int64, rssBytes: Int64, metrics: [MetricFamily]) {
        self.workerId = workerId; self.pid = pid; self.state = state; self.partitions = partitions; self.inFlight = inFlight
        self.lastProgress = lastProgress; self.lag = lag; self.rssBytes = rssBytes; self.metrics = metrics
    }

    enum CodingKeys: String, CodingKey {
        case workerId = "worker_id", pid, state, partitions, inFlight = "in_flight", lastProgress = "last_progress", lag
        case rssBytes = "rss_bytes", metrics, fatalError = "fatal_error"
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .millisecondsSince1970
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .millisecondsSince1970
        return d
    }()

    public func line() throws -> [UInt8] { Array(try Self.encoder.encode(self)) + [0x0A] }

    public static func parse(line: some Collection<UInt8>) throws -> HeartbeatReport {
        try decoder.decode(HeartbeatReport.self, from: Data(line))
    }
}

/// The worker's side of the pipe. Absent (nil) when the worker runs without a supervisor.
public final class HeartbeatWriter: @unchecked Sendable {
    public static let environmentVariable = "BLENDD_HEARTBEAT_FD"
    private let fd: Int32
    private let lock = NSLock()

    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let text = environment[Self.environmentVariable], let fd = Int32(text), fd > 2 else { return nil }
        self.fd = fd
    }

    /// Writes one report as a single line; returns false when the supervisor is gone.
    @discardableResult
    public func send(_ report: HeartbeatReport) -> Bool {
        guard let bytes = try? report.line() else { return false }
        return lock.withLock {
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
    }

    /// Resident set size of this process, from /proc/self/statm.
    public static func residentBytes() -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return 0 }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }
}

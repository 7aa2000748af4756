import BlendCore
import Foundation
import Health
import Kafka
import Logging
import Postgres
import ServiceLifecycle
import UnixSignals

/// A dependency the supervisor is only ready with: nil when healthy, else the reason.
public protocol ReadinessCheck: Sendable {
    var name: String { get }
    func check() async -> String?
}

/// Keeps N worker processes running in the spirit of an OTP one-for-one supervisor: each
/// slot's worker is replaced when it exits, crashes, hangs (no heartbeat), stalls (no progress
/// while lagging) or grows past the memory limit, after a capped, jittered, growing delay. A
/// slot that crash-loops makes the supervisor degraded (not ready) instead of spinning.
///
/// A lifecycle `Service`: graceful shutdown (SIGTERM, SIGINT through the `ServiceGroup`) stops
/// starting workers, drains every worker within `shutdown.drain_seconds` and returns. SIGHUP
/// rereads the configuration. Supervision runs on short ticks that never block: reaping uses
/// `waitpid(WNOHANG)` and heartbeats are read on dedicated threads.
public final class Supervisor: Service, @unchecked Sendable {
    public struct Options: Sendable {
        /// The worker command line (the same binary and `worker`; no configuration, which goes
        /// through `environment`).
        public var command: [String]
        /// The workers' environment, configuration included.
        public var environment: [String: String]
        public init(command: [String], environment: [String: String]) {
            self.command = command
            self.environment = environment
        }
    }

    private struct Slot {
        var index: Int
        var process: WorkerProcess?
        var restarts: [Date] = []
        var nextStart = Date.distantPast
        var lastReason: ReplacementReason?
        /// The error line of the last worker of this slot that ended on a fault no retry fixes.
        var lastFatalError: String?
    }

    private let lock = NSLock()
    private var config: BlendConfiguration
    private var policy: SupervisionPolicy
    private var slots: [Slot]
    /// Workers of slots removed by scaling down, stopping within the drain time.
    private var retiring: [WorkerProcess] = []
    private var degraded = false
    private var shuttingDown = false
    private let options: Options
    private let checks: [any ReadinessCheck]
    private let reload: @Sendable () throws -> BlendConfiguration
    private let logger: Logger
    public let metrics = MetricsRegistry()
    private let startedAt = Date()
    private let host = ProcessInfo.processInfo.hostName
    static let tick: Duration = .milliseconds(200)

    public init(config: BlendConfiguration, options: Options, checks: [any ReadinessCheck],
                reload: @escaping @Sendable () throws -> BlendConfiguration, logger: Logger = Logger(label: "blendd.supervisor")) {
        self.config = config
        self.policy = SupervisionPolicy(config.supervisor)
        self.options = options
        self.checks = checks
        self.reload = reload
        self.logger = logger
        slots = (0..<config.supervisor.workers).map { Slot(index: $0) }
        MetricNames.describeSupervisorMetrics(metrics)
    }

    /// Supervises until graceful shutdown, then drains every worker and returns.
    public func run() async throws {
        logger.info("supervising \(slots.count) worker(s): \(ConfigurationLoader.mask(options.command.joined(separator: " ")))")
        let hangups = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                guard !Task.isCancelled else { return }
                await self.applyReload()
            }
        }
        await withGracefulShutdownHandler {
            // Cancellation (another service of the group failed) ends it too; the drain then kills.
            while !lock.withLock({ shuttingDown }) && !Task.isCancelled {
                tick(now: Date())
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.tick) }
            }
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        hangups.cancel()
        await drainAll()
        logger.info("supervisor stopped")
    }

    /// Stops starting workers and ends `run` (which then drains them).
    public func beginShutdown() {
        lock.withLock { shuttingDown = true }
    }

    // MARK: - Supervision

    private func tick(now: Date) {
        lock.withLock {
            for i in slots.indices { tickSlot(i, now: now) }
            retiring.removeAll { process in
                if process.hasExited { return true }
                process.enforceStop(drain: config.drainSeconds)
                return false
            }
            let looping = slots.contains { policy.isCrashLooping(recentRestarts: policy.recentRestarts($0.restarts, now: now).count) }
            if looping != degraded {
                degraded = looping
                if looping {
                    let causes = Set(slots.compactMap(\.lastFatalError)).sorted().map(ConfigurationLoader.mask)
                    let why = causes.isEmpty ? "see the worker logs" : "last error: \(causes.joined(separator: "; "))"
                    logger.critical("workers are crash-looping (\(policy.crashLoopRestarts) restarts within \(Int(policy.crashLoopWindow)) s): supervisor degraded, readiness fails; \(why)")
                } else {
                    logger.notice("workers stable again: supervisor no longer degraded")
                }
            }
            updateGauges(now: now)
        }
    }

    /// Caller holds `lock`.
    private func tickSlot(_ i: Int, now: Date) {
        if let process = slots[i].process {
            process.poll()
            if process.isStopping {
                if process.hasExited { slots[i].process = nil } else { process.enforceStop(drain: config.drainSeconds) }
                return
            }
            guard let reason = policy.verdict(process.observation, now: now) else { return }
            slots[i].lastReason = reason
            let fatal = reason == .exited || reason == .crashed ? process.finalReport()?.fatalError : nil
            if let fatal { slots[i].lastFatalError = fatal }
            slots[i].restarts = policy.recentRestarts(slots[i].restarts, now: now) + [now]
            let recent = slots[i].restarts.count
            let delay = policy.isCrashLooping(recentRestarts: recent) ? policy.restartBackoff.maxSeconds : policy.restartDelay(recentRestarts: recent)
            slots[i].nextStart = now.addingTimeInterval(delay)
            metrics.increment(MetricNames.restarts, labels: ["reason": reason.rawValue])
            let status = process.observation.exitStatus.map { " (status \($0))" } ?? ""
            let cause = fatal.map { ": \(ConfigurationLoader.mask($0))" } ?? ""
            logger.warning("worker \(process.workerId) pid \(process.pid) \(reason.rawValue)\(status)\(cause): replacing it in \(String(format: "%.1f", delay)) s")
            switch reason {
            case .exited, .crashed: slots[i].process = nil
            case .hung: process.killNow()  // a stopped or wedged process does not act on SIGTERM
            case .stalled, .memory: process.requestStop()
            }
            return
        }
        guard !shuttingDown, now >= slots[i].nextStart else { return }
        do {
            slots[i].process = try WorkerProcess(command: options.command, slot: i, workerId: "\(host)-w\(i)", environment: options.environment)
            logger.info("started worker \(host)-w\(i) pid \(slots[i].process!.pid)")
        } catch {
            slots[i].restarts = policy.recentRestarts(slots[i].restarts, now: now) + [now]
            slots[i].nextStart = now.addingTimeInterval(policy.restartDelay(recentRestarts: slots[i].restarts.count))
            logger.error("\(error)")
        }
    }

    /// Caller holds `lock`.
    private func updateGauges(now: Date) {
        var counts: [String: Int] = ["starting": 0, "running": 0, "draining": 0, "stopping": 0, "down": 0]
        for slot in slots { counts[state(of: slot), default: 0] += 1 }
        for (state, n) in counts { metrics.set(MetricNames.workers, Double(n), labels: ["state": state]) }
        metrics.set(MetricNames.uptime, now.timeIntervalSince(startedAt))
        metrics.set(MetricNames.degraded, degraded ? 1 : 0)
    }

    private func state(of slot: Slot) -> String {
        guard let p = slot.process else { return "down" }
        if p.isStopping { return "stopping" }
        return p.observation.report?.state.rawValue ?? "starting"
    }

    /// Polls `done` every `interval` until it holds or `deadline` passes; false when it timed out or
    /// the task was cancelled.
    private func wait(until deadline: Date, every interval: Duration = .milliseconds(50), _ done: () -> Bool) async -> Bool {
        while !done() {
            guard Date() < deadline, !Task.isCancelled else { return false }
            try? await Task.sleep(for: interval)
        }
        return true
    }

    private func drainAll() async {
        let processes = lock.withLock { slots.compactMap(\.process) + retiring }
        logger.info("stopping \(processes.count) worker(s), drain up to \(config.drainSeconds) s")
        processes.forEach { $0.requestStop() }
        let drained = await wait(until: Date().addingTimeInterval(config.drainSeconds + 5)) { processes.allSatisfy(\.hasExited) }
        if !drained {
            for p in processes where !p.hasExited {
                logger.warning("worker \(p.workerId) did not stop within the drain time: killing it")
                p.killNow()
            }
        }
        // SIGKILL cannot be refused: reap until every worker is gone, also when this task was
        // cancelled (the naps run detached, so cancellation cannot turn them into a busy loop).
        while !processes.allSatisfy(\.hasExited) {
            await Task.detached { try? await Task.sleep(for: .milliseconds(10)) }.value
        }
    }

    /// SIGHUP: reread the configuration. Supervision settings apply at once, a changed
    /// `supervisor.workers` scales the slots up or down, and changed worker settings replace the
    /// workers one at a time (each new one running before the next old one stops). A changed
    /// `supervisor.listen` needs a restart: it is reported, and the old address stays.
    func applyReload() async {
        guard !lock.withLock({ shuttingDown }) else { return }
        var fresh: BlendConfiguration
        do {
            fresh = try reload()
        } catch {
            logger.error("SIGHUP: configuration not reloaded, workers keep running: \(error)")
            return
        }
        let old = lock.withLock { config }
        if fresh.supervisor.listen != old.supervisor.listen {
            logger.warning("SIGHUP: supervisor.listen changed from \(old.supervisor.listen) to \(fresh.supervisor.listen): that needs a restart; still listening on \(old.supervisor.listen)")
            fresh.supervisor.listen = old.supervisor.listen
        }
        let rollNeeded = Self.workerSettings(fresh) != Self.workerSettings(old)
        lock.withLock {
            config = fresh
            policy = SupervisionPolicy(fresh.supervisor)
            scale(to: fresh.supervisor.workers)
        }
        if fresh == old {
            logger.info("SIGHUP: configuration unchanged")
        } else if rollNeeded {
            await roll()
        } else {
            logger.info("SIGHUP: supervision settings applied; workers keep running")
        }
    }

    /// What a worker reads of the configuration: everything but the supervisor's own settings.
    static func workerSettings(_ c: BlendConfiguration) -> BlendConfiguration {
        var view = c
        view.supervisor = BlendConfiguration.Supervisor()
        view.supervisor.heartbeatSeconds = c.supervisor.heartbeatSeconds
        view.supervisor.deadWorkerRetentionSeconds = c.supervisor.deadWorkerRetentionSeconds
        return view
    }

    /// Caller holds `lock`.
    private func scale(to count: Int) {
        guard count != slots.count else { return }
        logger.info("SIGHUP: supervisor.workers \(slots.count) -> \(count)")
        if count > slots.count {
            slots += (slots.count..<count).map { Slot(index: $0) }
        } else {
            for slot in slots[count...] {
                guard let process = slot.process else { continue }
                process.requestStop()
                retiring.append(process)
            }
            slots.removeSubrange(count...)
        }
    }

    private func roll() async {
        let count = lock.withLock { slots.count }
        logger.info("SIGHUP: worker settings changed, replacing \(count) worker(s) one at a time")
        for i in 0..<count {
            guard let old = lock.withLock({ i < slots.count && !shuttingDown ? slots[i].process : nil }) else { continue }
            old.requestStop()
            let drain = lock.withLock { config.drainSeconds }
            if !(await wait(until: Date().addingTimeInterval(drain + 5), every: .milliseconds(100)) { old.hasExited }) {
                guard !Task.isCancelled else { return }
                old.killNow()
            }
            lock.withLock { if i < slots.count { slots[i].nextStart = .distantPast } }
            let timeout = lock.withLock { config.supervisor.heartbeatTimeoutSeconds }
            _ = await wait(until: Date().addingTimeInterval(timeout), every: .milliseconds(200)) {
                lock.withLock {
                    guard i < slots.count, !shuttingDown else { return true }
                    guard let p = slots[i].process else { return false }
                    return p !== old && p.observation.report?.state == .running
                }
            }
        }
    }

    // MARK: - HTTP

    /// Answers the HTTP endpoints (served by `HealthHTTPService`).
    public func respond(_ endpoint: HealthEndpoint) async -> HealthResponse {
        switch endpoint {
        case .healthz:
            return .text(200, "ok\n")
        case .readyz:
            let (ready, reasons) = await readiness()
            return .text(ready ? 200 : 503, ready ? "ready\n" : reasons.joined(separator: "\n") + "\n")
        case .metrics:
            let families = lock.withLock { () -> [MetricFamily] in
                updateGauges(now: Date())
                var all = metrics.snapshot()
                for slot in slots {
                    if let report = slot.process?.observation.report {
                        all += PrometheusText.labelling(report.metrics, "worker", report.workerId)
                    }
                }
                return all
            }
            return HealthResponse(status: 200, contentType: PrometheusText.contentType, body: PrometheusText.render(families))
        case .status:
            return HealthResponse(status: 200, contentType: "application/json", body: statusJSON())
        }
    }

    /// Ready when not degraded, at least half the workers (and at least one) run, and every
    /// dependency answers.
    func readiness() async -> (Bool, [String]) {
        var reasons: [String] = []
        let (isDegraded, running, total) = lock.withLock { () -> (Bool, Int, Int) in
            (degraded, slots.filter { state(of: $0) == "running" }.count, slots.count)
        }
        if isDegraded { reasons.append("degraded: workers are crash-looping") }
        let needed = max(1, (total + 1) / 2)
        if running < needed { reasons.append("\(running) of \(total) workers running, \(needed) needed") }
        for check in checks {
            if let problem = await check.check() { reasons.append("\(check.name): \(problem)") }
        }
        return (reasons.isEmpty, reasons)
    }

    private func statusJSON() -> String {
        let now = Date()
        let workers: [JSONValue] = lock.withLock {
            slots.map { slot in
                let obs = slot.process?.observation
                return .object([
                    "slot": .number(Double(slot.index)),
                    "worker_id": slot.process.map { .string($0.workerId) } ?? .null,
                    "pid": slot.process.map { .number(Double($0.pid)) } ?? .null,
                    "state": .string(state(of: slot)),
                    "restarts_recent": .number(Double(policy.recentRestarts(slot.restarts, now: now).count)),
                    "last_reason": slot.lastReason.map { .string($0.rawValue) } ?? .null,
                    "last_fatal_error": slot.lastFatalError.map { .string(ConfigurationLoader.mask($0)) } ?? .null,
                    "partitions": .array((obs?.report?.partitions ?? []).map(JSONValue.string)),
                    "in_flight": .number(Double(obs?.report?.inFlight ?? 0)),
                    "lag": .number(Double(obs?.report?.lag ?? 0)),
                    "rss_bytes": .number(Double(obs?.report?.rssBytes ?? 0)),
                    "last_heartbeat_age_s": obs?.lastHeartbeat.map { .number(now.timeIntervalSince($0)) } ?? .null,
                ])
            }
        }
        let object: JSONValue = .object(["degraded": .bool(lock.withLock { degraded }), "host": .string(host), "workers": .array(workers)])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(object), as: UTF8.self)) ?? "{}"
    }
}

/// PostgreSQL answers a trivial query within a few seconds.
public struct PostgresReadiness: ReadinessCheck {
    public let name = "postgres"
    public let url: String
    public init(url: String) { self.url = url }

    public func check() async -> String? {
        do {
            let conn = try await PostgresConnection.connect(url, applicationName: "blendd readiness")
            defer { Task { await conn.close() } }
            _ = try await conn.query("SELECT 1")
            return nil
        } catch {
            return "\(error)"
        }
    }
}

/// The Kafka cluster returns the jobs topic's metadata.
public struct KafkaReadiness: ReadinessCheck {
    public let name = "kafka"
    let admin: KafkaAdmin
    let topic: String

    public init(configuration: KafkaConfiguration, topic: String) throws {
        admin = try KafkaAdmin(configuration: configuration, timeout: .seconds(3))
        self.topic = topic
    }

    public func check() async -> String? {
        do {
            _ = try await admin.partitions(of: topic)
            return nil
        } catch {
            return "\(error)"
        }
    }
}

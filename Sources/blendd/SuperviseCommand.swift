import ArgumentParser
import BlendCore
import Foundation
import Health
import Kafka
import Logging
import ServiceLifecycle
import Supervisor
import Worker

struct SuperviseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervise",
        abstract: "Run and watch worker processes; serve /healthz, /readyz, /metrics and /status.",
        discussion: """
        Starts supervisor.workers copies of `blendd worker` (same configuration arguments), \
        reads their heartbeats, and replaces a worker that exits, crashes, hangs, stalls or \
        exceeds supervisor.memory_limit_mb, after a growing, jittered delay. Crash loops mark \
        the supervisor degraded: /readyz fails and restarts slow to the longest delay. SIGTERM \
        or SIGINT drains every worker within shutdown.drain_seconds and exits 0. SIGHUP rereads \
        the configuration: supervisor.workers scales up or down, supervision settings apply at once, \
        changed worker settings replace the workers one at a time, and a changed supervisor.listen \
        is reported as needing a restart. Workers get the configuration through their environment \
        (BLENDD_CONFIG, BLENDD_OVERRIDES), never their command line.
        """
    )

    @Option(help: "Worker processes (overrides supervisor.workers).")
    var workers: Int?

    @Option(help: ArgumentHelp("HTTP listen address host:port (overrides supervisor.listen).", valueName: "addr"))
    var listen: String?

    @Option(parsing: .upToNextOption, help: ArgumentHelp("The worker command line (default: this binary with `worker` and the same configuration arguments).", visibility: .hidden))
    var workerCommand: [String] = []

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        var config = try options.loadOrFail()
        let workersFlag = workers, listenFlag = listen
        if let workersFlag { config.supervisor.workers = workersFlag }
        if let listenFlag { config.supervisor.listen = listenFlag }
        guard config.supervisor.workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        let address: ListenAddress
        do { address = try ListenAddress(parsing: config.supervisor.listen) } catch { throw CLIError("supervisor.listen: \(error)") }
        let logger = Logger(label: "blendd.supervisor")
        // Configuration reaches the workers through their environment, never their command line.
        let command = workerCommand.isEmpty ? [ExecutablePath.current, "worker"] : workerCommand
        let environment = try options.childEnvironment()
        let overrides = options.maskedOverrides()
        logger.info("configuration: file \(environment["BLENDD_CONFIG"] ?? "(none)"), overrides [\(overrides.joined(separator: ", "))]")
        let checks: [any ReadinessCheck] = [
            PostgresReadiness(url: config.postgres.url),
            try KafkaReadiness(configuration: KafkaConfiguration(bootstrapServers: config.kafka.bootstrapServers, properties: config.kafka.properties),
                               topic: config.kafka.jobsTopic),
        ]
        let options = self.options
        let supervisor = Supervisor(config: config, options: .init(command: command, environment: environment), checks: checks, reload: {
            var fresh = try options.loadOrFail()
            if let workersFlag { fresh.supervisor.workers = workersFlag }
            if let listenFlag { fresh.supervisor.listen = listenFlag }
            return fresh
        }, logger: logger)
        let http = HealthHTTPService(address: address, logger: Logger(label: "blendd.http")) { await supervisor.respond($0) }
        // Shut down in reverse order: the supervisor drains its workers while /healthz still answers.
        try await ServiceGroup(configuration: .lifecycle(
            services: [.init(service: http), .init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup)],
            drainSeconds: config.drainSeconds, logger: logger)).run()
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the worker fleet from PostgreSQL and the local supervisor's view.",
        discussion: "Fleet rows come from the workers table (every host); the local view from the supervisor's /status endpoint."
    )

    @Option(help: ArgumentHelp("Supervisor address host:port (default: supervisor.listen).", valueName: "addr"))
    var supervisor: String?

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let config = try options.loadOrFail()
        let fleet = try await FleetQuery.rows(url: config.postgres.url)
        print("fleet (workers table):")
        if fleet.isEmpty { print("  no workers have registered") }
        for row in fleet { print("  " + row) }
        let listen = supervisor ?? config.supervisor.listen
        print("")
        let status: JSONValue
        do {
            let response = try await HealthClient.get(try ListenAddress(parsing: listen), path: HealthEndpoint.status.rawValue)
            guard response.status == 200 else { throw CLIError("/status answered \(response.status)") }
            status = try JSONDecoder().decode(JSONValue.self, from: Data(response.body.utf8))
        } catch {
            print("local supervisor at \(listen): not reachable")
            throw CLIError("local supervisor at \(listen) not reachable: \(error)")
        }
        guard case .object(let fields) = status else { throw CLIError("local supervisor at \(listen): /status is not a JSON object") }
        let address = listen
        let degraded = fields["degraded"] == .bool(true)
        print("local supervisor at \(address)\(degraded ? ": DEGRADED (crash loop)" : ""):")
        if case .array(let workers) = fields["workers"] {
            for case .object(let w) in workers {
                func text(_ k: String) -> String {
                    switch w[k] {
                    case .string(let s): s
                    case .number(let n): n == n.rounded() ? String(Int(n)) : String(format: "%.1f", n)
                    case .array(let a): a.compactMap { if case .string(let s) = $0 { s } else { nil } }.joined(separator: ",")
                    default: "-"
                    }
                }
                print("  slot \(text("slot")): \(text("state")) pid \(text("pid")) restarts \(text("restarts_recent")) last \(text("last_reason")) lag \(text("lag")) partitions \(text("partitions"))")
            }
        }
    }
}

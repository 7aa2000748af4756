import ArgumentParser
import BlendCore
import Foundation
import Kafka
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
        or SIGINT drains every worker within shutdown.drain_seconds and exits 0; SIGHUP rereads \
        the configuration and replaces the workers one at a time.
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
        if let workers { config.supervisor.workers = workers }
        if let listen { config.supervisor.listen = listen }
        guard config.supervisor.workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        var configArguments: [String] = []
        if let file = options.config { configArguments += ["--config", file] }
        for o in options.overrides { configArguments += ["--set", o] }
        let command = workerCommand.isEmpty ? [executable, "worker"] + configArguments : workerCommand
        let checks: [any ReadinessCheck] = [
            PostgresReadiness(url: config.postgres.url),
            try KafkaReadiness(configuration: KafkaConfiguration(bootstrapServers: config.kafka.bootstrapServers, properties: config.kafka.properties),
                               topic: config.kafka.jobsTopic),
        ]
        let options = self.options
        let supervisor = Supervisor(config: config, options: .init(command: command, environment: ProcessInfo.processInfo.environment),
                                    checks: checks, reload: { try options.loadOrFail() })
        try await supervisor.run()
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
        let address = supervisor ?? config.supervisor.listen
        print("")
        guard let (code, body) = HTTPGet.fetch(address: address, path: "/status"), code == 200,
              let status = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)), case .object(let fields) = status else {
            print("local supervisor at \(address): not reachable")
            return
        }
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

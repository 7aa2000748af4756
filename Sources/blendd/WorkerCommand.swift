import ArgumentParser
import BlendCore
import Foundation
import Health
import Kafka
import Logging
import ServiceLifecycle
import Supervisor
import Worker

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Consume blend jobs from Kafka, rank and fuse them, store results in PostgreSQL.",
        discussion: """
        Joins the consumer group kafka.group_id on kafka.topics.jobs. Each micro-batch is \
        validated, ranked and fused, then stored in one transaction with its completion events; \
        offsets are committed only after that. An outbox relay publishes the events. SIGTERM or \
        SIGINT: stop fetching, finish the batch within shutdown.drain_seconds (otherwise abandon \
        it uncommitted), flush the outbox, commit, leave the group, exit 0. With worker.listen set \
        the worker serves its own /healthz, /readyz and /metrics (for a worker run without \
        `blendd supervise`, e.g. one per Kubernetes pod). Run `blendd migrate` first.
        """
    )

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let config = try options.loadOrFail()
        let logger = Logger(label: "blendd.worker")
        var address: ListenAddress?
        if !config.workerListen.isEmpty {
            do { address = try ListenAddress(parsing: config.workerListen) } catch { throw CLIError("worker.listen: \(error)") }
        }
        let worker = WorkerLifecycleAdapter(drainSeconds: config.drainSeconds, logger: logger) {
            try WorkerService(config: config, rankers: try ModelFactory.rankers(for: config), fuser: try ModelFactory.fuser(for: config))
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let address {
            let endpoints = LoneWorkerEndpoints(worker: worker, checks: [
                PostgresReadiness(url: config.postgres.url),
                try KafkaReadiness(configuration: KafkaConfiguration(bootstrapServers: config.kafka.bootstrapServers, properties: config.kafka.properties),
                                   topic: config.kafka.jobsTopic),
            ])
            services.append(.init(service: HealthHTTPService(address: address, logger: Logger(label: "blendd.http")) { await endpoints.respond($0) }))
        }
        // Last, so it is shut down first: the worker drains while its /healthz still answers.
        services.append(.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup))
        try await ServiceGroup(configuration: .lifecycle(services: services, drainSeconds: config.drainSeconds, logger: logger)).run()
    }
}

/// /healthz, /readyz and /metrics of a worker that runs without a supervisor.
struct LoneWorkerEndpoints: Sendable {
    let worker: WorkerLifecycleAdapter
    let checks: [any ReadinessCheck]

    func respond(_ endpoint: HealthEndpoint) async -> HealthResponse {
        switch endpoint {
        case .healthz:
            return .text(200, "ok\n")
        case .readyz:
            var reasons: [String] = []
            if worker.isStopping { reasons.append("stopping") } else if worker.worker == nil { reasons.append("starting: loading the models") }
            for check in checks {
                if let problem = await check.check() { reasons.append("\(check.name): \(problem)") }
            }
            return .text(reasons.isEmpty ? 200 : 503, reasons.isEmpty ? "ready\n" : reasons.joined(separator: "\n") + "\n")
        case .metrics:
            return HealthResponse(status: 200, contentType: PrometheusText.contentType, body: PrometheusText.render(worker.worker?.metrics.snapshot() ?? []))
        case .status:
            return .text(404, "a worker has no /status; the supervisor's shows its workers\n")
        }
    }
}

import BlendCore
import Foundation
import Inference
import Kafka
import Postgres
import Worker
import XCTest
@testable import Supervisor

/// "configuration ok" means every command starts: for every numeric setting at each end of its
/// declared range (generated from the declaration table), and for all of them at their lowest
/// and highest together, a configuration that `config check` accepts constructs everything the
/// worker and the supervisor construct from it without trapping.
final class ConfigurationStartupTests: XCTestCase {
    private var cases: [(String, [String])] {
        let numeric = ConfigurationLoader.settings.filter { !$0.boundaries.inside.isEmpty }
        var cases = numeric.flatMap { setting in setting.boundaries.inside.map { ("\(setting.path)=\($0)", ["\(setting.path)=\($0)"]) } }
        cases.append(("every setting at its lowest", numeric.map { "\($0.path)=\($0.boundaries.inside[0])" }))
        cases.append(("every setting at its highest", numeric.map { "\($0.path)=\($0.boundaries.inside[1])" }))
        return cases
    }

    func testEveryAcceptedBoundaryConfigurationConstructsTheWorkerAndTheSupervisor() async throws {
        var started = 0
        for (label, overrides) in cases {
            // Nothing listens on port 1: the Kafka clients are created but never connect.
            let loaded = ConfigurationLoader.load(file: nil, environment: [:],
                                                  overrides: overrides + ["kafka.bootstrap_servers=127.0.0.1:1", "supervisor.listen=127.0.0.1:0"])
            guard loaded.problems.isEmpty else {
                XCTAssertFalse(label.hasPrefix("every setting"), "\(label): \(loaded.problems)")
                continue
            }
            let config = loaded.configuration
            XCTAssertEqual(KafkaConfiguration.problems(in: config), [], label)
            try await constructEverything(config, label: label)
            started += 1
        }
        XCTAssertGreaterThan(started, cases.count * 3 / 4, "most boundary values are valid on their own")
    }

    private func constructEverything(_ config: BlendConfiguration, label: String) async throws {
        // Worker: Kafka producer and consumer, PostgreSQL pool, retry backoff, validator.
        let worker = try WorkerService(config: config, ranker: ConsensusRanker(), fuser: TopCandidateFuser())
        XCTAssertEqual(worker.config, config)
        let retry = Backoff(config.retry)
        for attempt in [0, 1, 10, 1000] { XCTAssertTrue(retry.delay(attempt: attempt).isFinite, label) }
        _ = TokenBudgetPlanner(maxSequences: config.batching.maxPairs, maxTokens: config.batching.maxTokens)
        _ = Duration.milliseconds(config.batching.maxWaitMilliseconds)
        _ = Date().addingTimeInterval(config.drainSeconds + config.outbox.claimSeconds)
        let job = #"{"job_id":"j","instruction":"i","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}]}"#
        if case .failure(let rejection) = JobValidator(limits: config.limits).validate(Array(job.utf8)), !label.hasPrefix("limits.") && !label.hasPrefix("every") {
            XCTFail("\(label): a small job is rejected: \(rejection)")
        }
        // Supervisor: its policy (restart backoff, crash-loop window, memory limit) and slots.
        let policy = SupervisionPolicy(config.supervisor)
        for restarts in [0, 1, config.supervisor.crashLoopRestarts, 10_000] {
            XCTAssertTrue(policy.restartDelay(recentRestarts: restarts).isFinite, label)
        }
        let now = Date()
        _ = policy.verdict(WorkerObservation(startedAt: now.addingTimeInterval(-config.supervisor.stallSeconds)), now: now)
        _ = policy.recentRestarts([now.addingTimeInterval(-config.supervisor.crashLoopWindowSeconds)], now: now)
        _ = Supervisor(config: config, options: .init(command: ["/bin/true"], environment: [:]), checks: [], reload: { config })
        _ = PostgresPool(url: config.postgres.url, maxConnections: config.postgres.poolSize)
    }
}

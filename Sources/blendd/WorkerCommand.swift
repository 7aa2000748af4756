import ArgumentParser
import BlendCore
import Foundation
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
        it uncommitted), flush the outbox, commit, leave the group, exit 0. Run `blendd migrate` first.
        """
    )

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let config = try options.loadOrFail()
        let signals = SignalListener.terminationSignals()
        let service = try WorkerService(config: config, ranker: try ModelFactory.ranker(for: config),
                                        fuser: try ModelFactory.fuser(for: config))
        let running = Task { try await service.run() }
        let stopper = Task {
            guard await signals.first() != nil else { return }
            FileHandle.standardError.write(Data("worker: stopping (drain up to \(config.drainSeconds) s)\n".utf8))
            await service.stop()
        }
        let outcome = await running.result
        stopper.cancel()
        try outcome.get()
    }
}

import BlendCore
import Foundation
import Kafka
import Logging
import Postgres

/// Publishes the outbox. Each claimed row is published and settled on its own: sent, retried
/// later with its own backoff (transient failures), or recorded as failed with the error
/// (permanent ones), so one row can neither block nor duplicate its neighbours.
///
/// The relay costs nothing while idle: it sleeps until a stored batch or a NOTIFY from another
/// worker wakes it, or until the next row falls due (a retry time, or an expired claim of a
/// relay that died). Without either, it looks again after an idle interval that doubles up
/// to `maxIdleSeconds`.
final class OutboxRelay: Sendable {
    struct Settings: Sendable {
        var batchSize: Int
        var claimSeconds: Double = 30
        /// The first idle interval; it doubles while nothing happens.
        var minIdleSeconds: Double
        var maxIdleSeconds: Double
        /// The producer's `message.max.bytes`.
        var messageMaxBytes: Int
        var retry: Backoff
    }

    /// How one claimed round went.
    struct Round: Sendable, Equatable {
        var claimed = 0
        var sent = 0
        var retrying = 0
        var failed = 0
    }

    /// Bytes of the original value a cut dead-letter record keeps at most.
    static let maxCutPayloadBytes = 64 * 1024
    /// Bytes of a key a dead-letter record keeps at most.
    static let maxKeyBytes = 1024

    let store: ResultStore
    let producer: KafkaProducer
    let settings: Settings
    let instruments: WorkerMetrics
    let logger: Logger
    let wake = WakeSignal()

    init(store: ResultStore, producer: KafkaProducer, settings: Settings, instruments: WorkerMetrics, logger: Logger) {
        self.store = store
        self.producer = producer
        self.settings = settings
        self.instruments = instruments
        self.logger = logger
    }

    /// Runs until cancelled. Cancellation ends the waits between rounds, never a round: a round cut
    /// between publishing and settling would leave its rows claimed, unsent, for a claim's length.
    func run() async {
        var idle = settings.minIdleSeconds
        var failures = 0
        while !Task.isCancelled {
            do {
                // An unstructured task does not inherit the cancellation; a round is bounded by the delivery timeout.
                let round = try await Task { try await self.publishPendingOnce() }.value
                failures = 0
                // A full round: more rows are probably waiting.
                if round.claimed >= settings.batchSize {
                    idle = settings.minIdleSeconds
                    continue
                }
                if round.claimed > 0 { idle = settings.minIdleSeconds }
                var delay = idle
                let dueStart = Date()
                let nextDue = try await store.secondsUntilNextDue()
                instruments.stage("outbox_due", seconds: Date().timeIntervalSince(dueStart))
                if let due = nextDue {
                    // Rows that came in during a round are claimed at once; due now after an
                    // empty round means another relay holds those rows this instant.
                    if due <= 0 && round.claimed > 0 { continue }
                    delay = min(delay, due > 0 ? due + 0.01 : settings.minIdleSeconds)
                }
                // A partial round drained the outbox: the next stored batch's signal wakes the
                // relay, so it need not look again at once (one claim round trip saved per batch).
                if round.claimed == 0 { idle = min(idle * 2, settings.maxIdleSeconds) }
                await wake.wait(upTo: delay)
            } catch {
                let delay = settings.retry.delay(attempt: failures)
                failures += 1
                instruments.retried("outbox")
                logger.warning("outbox relay: \(error); retrying in \(String(format: "%.2f", delay)) s")
                await wake.wait(upTo: delay)
            }
        }
    }

    /// Claims one round of due rows, publishes each, and settles each by its own result.
    @discardableResult
    func publishPendingOnce() async throws -> Round {
        let claimStart = Date()
        let entries = try await store.claimPending(limit: settings.batchSize, claimSeconds: settings.claimSeconds)
        let publishStart = Date()
        instruments.stage(entries.isEmpty ? "outbox_claim_empty" : "outbox_claim", seconds: publishStart.timeIntervalSince(claimStart))
        var round = Round(claimed: entries.count)
        guard !entries.isEmpty else { return round }
        let results = await publish(entries)
        let settleStart = Date()
        instruments.stage("outbox_publish", seconds: settleStart.timeIntervalSince(publishStart))
        var sent: [Int64] = [], retrying: [ResultStore.Retry] = [], failed: [ResultStore.Failure] = []
        for (entry, result) in zip(entries, results) {
            switch result {
            case .success:
                sent.append(entry.id)
                instruments.published(topic: entry.topic)
            case .failure(let error) where error.isPermanentForRecord:
                instruments.outboxFailed(topic: entry.topic, permanent: true)
                logger.error("outbox: \(entry.eventId) cannot be published and is set aside: \(error)")
                failed.append(.init(id: entry.id, error: error.description))
            case .failure(let error):
                instruments.outboxFailed(topic: entry.topic, permanent: false)
                let delay = settings.retry.delay(attempt: max(0, entry.attempts - 1))
                logger.warning("outbox: \(entry.eventId) not published (attempt \(entry.attempts)), retrying in \(String(format: "%.2f", delay)) s: \(error)")
                retrying.append(.init(id: entry.id, error: error.description, afterSeconds: delay))
            }
        }
        // One statement settles the round; if it fails, the claims lapse and the rows are
        // published again (at least once, as before).
        try await store.settle(sent: sent, retrying: retrying, failed: failed)
        instruments.stage("outbox_settle", seconds: Date().timeIntervalSince(settleStart))
        round.sent = sent.count
        round.retrying = retrying.count
        round.failed = failed.count
        return round
    }

    /// Publishes every entry at once and returns each one's result, in order.
    private func publish(_ entries: [ResultStore.OutboxEntry]) async -> [Result<DeliveryReport, KafkaError>] {
        await withTaskGroup(of: (Int, Result<DeliveryReport, KafkaError>).self) { group in
            for (index, entry) in entries.enumerated() {
                group.addTask { (index, await self.publish(entry)) }
            }
            var results = [Result<DeliveryReport, KafkaError>?](repeating: nil, count: entries.count)
            for await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
    }

    private func publish(_ entry: ResultStore.OutboxEntry) async -> Result<DeliveryReport, KafkaError> {
        let full = Self.message(for: entry)
        let isDeadLetter = entry.headers[Self.codesHeader] != nil
        if isDeadLetter && (full.wireSize > settings.messageMaxBytes || (full.key?.count ?? 0) > Self.maxKeyBytes) {
            return await send(cut(entry))
        }
        let result = await send(full)
        if case .failure(let error) = result, isDeadLetter, error.isRecordTooLarge {
            // The broker's limit is below the producer's: a cut copy still reports the rejection.
            return await send(cut(entry))
        }
        return result
    }

    private func send(_ message: ProducerMessage) async -> Result<DeliveryReport, KafkaError> {
        do {
            return .success(try await producer.send(message))
        } catch let error as KafkaError {
            return .failure(error)
        } catch {
            return .failure(KafkaError(configuration: "\(error)", context: "producing to \(message.topic)"))
        }
    }

    static let codesHeader = "blendd-rejected-codes"

    static func message(for entry: ResultStore.OutboxEntry) -> ProducerMessage {
        ProducerMessage(topic: entry.topic, key: entry.key, value: entry.payload,
                        headers: entry.headers.keys.sorted().map { ($0, Array(entry.headers[$0]!.utf8)) })
    }

    /// A dead-letter record that fits: the rejection headers and source coordinates, the
    /// original's size and SHA-256, and as much of its value (and key) as the limit allows,
    /// marked `blendd-dlq-truncated: true`. The full bytes stay in the outbox row.
    func cut(_ entry: ResultStore.OutboxEntry) -> ProducerMessage {
        instruments.deadLetterCut()
        var headers = entry.headers
        headers["blendd-dlq-truncated"] = "true"
        let payload = entry.payload ?? []
        headers["blendd-original-bytes"] = String(payload.count)
        headers["blendd-original-sha256"] = SHA256.hex(payload)
        var key = entry.key
        if let k = key, k.count > Self.maxKeyBytes {
            headers["blendd-original-key-bytes"] = String(k.count)
            headers["blendd-original-key-sha256"] = SHA256.hex(k)
            key = Array(k.prefix(Self.maxKeyBytes))
        }
        var message = ProducerMessage(topic: entry.topic, key: key, value: [],
                                      headers: headers.keys.sorted().map { ($0, Array(headers[$0]!.utf8)) })
        let room = settings.messageMaxBytes - message.wireSize - 1024
        message.value = Array(payload.prefix(max(0, min(room, Self.maxCutPayloadBytes))))
        return message
    }
}

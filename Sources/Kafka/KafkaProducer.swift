import CRdKafka
import Foundation
import Logging

/// A message to produce. A nil partition lets the partitioner choose by key.
public struct ProducerMessage: Sendable {
    public var topic: String
    public var partition: Int32?
    public var key: [UInt8]?
    /// nil sends a record whose value is null (a tombstone).
    public var value: [UInt8]?
    public var headers: [(String, [UInt8])]

    public init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?, headers: [(String, [UInt8])] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }

    public init(topic: String, key: String, value: [UInt8], headers: [String: String] = [:]) {
        self.init(topic: topic, key: Array(key.utf8), value: value,
                  headers: headers.keys.sorted().map { ($0, Array(headers[$0]!.utf8)) })
    }
}

/// Where the broker stored a message.
public struct DeliveryReport: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}

/// What a producer reports besides delivery results, as its own stream.
public enum KafkaProducerEvent: Sendable {
    /// A broker-level failure librdkafka retries by itself (logged once).
    case error(KafkaError)
    /// The producer is unusable (e.g. a fenced or fatal idempotent producer): exit and restart.
    case fatal(KafkaError)
    /// librdkafka's statistics JSON, when `KafkaConfiguration.statisticsInterval` is set.
    case statistics(String)
}

/// A producer that is idempotent by default (`enable.idempotence=true`: retries never
/// duplicate or reorder a partition's messages). `send` returns once the broker acknowledged
/// the message, or throws the delivery error; a message not delivered within
/// `Options.deliveryTimeout` fails with `_MSG_TIMED_OUT` and the last broker error.
public final class KafkaProducer: @unchecked Sendable {
    /// The producer's typed settings.
    public struct Options: Sendable {
        /// How long librdkafka tries to deliver a message (`message.timeout.ms`). Kept shorter
        /// than the outbox claim, so no other relay publishes a message that may still arrive.
        public var deliveryTimeout: Duration = .seconds(20)
        public var idempotence = true
        /// Events buffered for a reader of `events` before the oldest are dropped.
        public var eventBuffer = 100

        public init(deliveryTimeout: Duration = .seconds(20), idempotence: Bool = true) {
            self.deliveryTimeout = deliveryTimeout
            self.idempotence = idempotence
        }
    }

    private let client: RDKafkaClient
    /// Errors, fatal errors and statistics; read by one task.
    public let events: AsyncStream<KafkaProducerEvent>
    /// The largest message the producer accepts (`message.max.bytes`); larger ones fail with
    /// `MSG_SIZE_TOO_LARGE` before they are sent.
    public let messageMaxBytes: Int

    public init(configuration: KafkaConfiguration, options: Options = Options(),
                logger: Logger = Logger(label: "blendd.kafka.producer")) throws {
        let (events, continuation) = AsyncStream<KafkaProducerEvent>.makeStream(bufferingPolicy: .bufferingNewest(options.eventBuffer))
        self.events = events
        let properties = Self.properties(configuration, options)
        var hooks = RDKafkaClient.Hooks()
        hooks.event = { event in
            switch event {
            case .error(let e): continuation.yield(.error(e))
            case .fatal(let e): continuation.yield(.fatal(e))
            case .statistics(let s): continuation.yield(.statistics(s))
            }
        }
        hooks.delivery = { message, client in
            guard let opaque = message.pointee._private else { return }
            let pending = Unmanaged<PendingDelivery>.fromOpaque(opaque).takeRetainedValue()
            pending.complete(message.pointee, client: client)
        }
        client = try RDKafkaClient(role: .producer, properties: properties, name: "producer", logger: logger, hooks: hooks)
        messageMaxBytes = client.property("message.max.bytes").flatMap { Int($0) } ?? 1_000_000
        client.startPolling()
    }

    /// The librdkafka properties of a producer: the typed options, then the raw properties.
    static func properties(_ configuration: KafkaConfiguration, _ options: Options) -> [String: String] {
        [
            "message.timeout.ms": String(options.deliveryTimeout.milliseconds),
            "enable.idempotence": String(options.idempotence),
        ].merging(configuration.librdkafkaProperties) { _, raw in raw }
    }

    /// The fatal error that made this producer unusable, if any (then it must be recreated).
    public var fatalError: KafkaError? { client.fatalError }

    /// Raises a fatal error as a fenced idempotent producer would, for tests of the handling.
    public func simulateFatalError(reason: String) {
        client.simulateFatalError(RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason: reason)
    }

    /// Sends one message and waits for the broker's acknowledgement.
    @discardableResult
    public func send(_ message: ProducerMessage) async throws -> DeliveryReport {
        try await enqueue(message).value
    }

    /// Sends many messages (in order, per partition) and waits for all acknowledgements;
    /// results are in input order, each a report or that message's delivery error.
    public func send(_ messages: [ProducerMessage]) async throws -> [Result<DeliveryReport, KafkaError>] {
        var pending: [Result<PendingDelivery, KafkaError>] = []
        pending.reserveCapacity(messages.count)
        for message in messages {
            do {
                pending.append(.success(try await enqueue(message)))
            } catch let error as KafkaError where !error.isFatal {
                // Refused locally (too large, unknown partition): this message fails, the others go on.
                pending.append(.failure(error))
            }
        }
        var results: [Result<DeliveryReport, KafkaError>] = []
        for p in pending {
            switch p {
            case .success(let delivery):
                do { results.append(.success(try await delivery.value)) } catch let error as KafkaError { results.append(.failure(error)) }
            case .failure(let error):
                results.append(.failure(error))
            }
        }
        return results
    }

    /// Hands the message to librdkafka, waiting while its local queue is full.
    private func enqueue(_ message: ProducerMessage) async throws -> PendingDelivery {
        if let fatal = client.fatalError { throw fatal }
        while true {
            let pending = PendingDelivery(topic: message.topic)
            let err = produce(message, pending: pending)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return pending }
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            if err == RD_KAFKA_RESP_ERR__FATAL, let fatal = client.fatalError { throw fatal }
            throw KafkaError(code: err, context: "producing to \(message.topic) (\(message.value?.count ?? 0) bytes)")
        }
    }

    /// A valid address for an empty key or value: librdkafka reads a nil pointer as null.
    nonisolated(unsafe) private static let emptyBytes = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

    private func produce(_ message: ProducerMessage, pending: PendingDelivery) -> rd_kafka_resp_err_t {
        let headers: OpaquePointer? = message.headers.isEmpty ? nil : rd_kafka_headers_new(message.headers.count)
        for (name, value) in message.headers {
            value.withUnsafeBytes { _ = rd_kafka_header_add(headers, name, -1, $0.baseAddress, $0.count) }
        }
        let opaque = Unmanaged.passRetained(pending).toOpaque()
        let key = message.key ?? []
        let value = message.value ?? []
        let err = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in
                // A nil pointer is librdkafka's null key or value; an empty buffer is an empty one.
                blendd_produce(client.handle, message.topic, message.partition ?? RD_KAFKA_PARTITION_UA,
                               message.key == nil ? nil : k.baseAddress ?? UnsafeRawPointer(Self.emptyBytes), k.count,
                               message.value == nil ? nil : v.baseAddress ?? UnsafeRawPointer(Self.emptyBytes), v.count, headers, opaque)
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if let headers { rd_kafka_headers_destroy(headers) }
            Unmanaged<PendingDelivery>.fromOpaque(opaque).release()
        }
        return err
    }

    /// Waits until every queued message is delivered or failed, or the timeout passes;
    /// returns the number of messages still in flight (0 = all done).
    @discardableResult
    public func flush(timeout: Duration) async -> Int {
        let ms = timeout.milliseconds
        nonisolated(unsafe) let rk = client.handle!
        return await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                rd_kafka_flush(rk, ms)
                continuation.resume(returning: Int(rd_kafka_outq_len(rk)))
            }
        }
    }
}

/// One message's delivery, completed by the delivery-report callback on the poll thread.
final class PendingDelivery: @unchecked Sendable {
    let topic: String
    private let lock = NSLock()
    private var result: Result<DeliveryReport, KafkaError>?
    private var waiter: CheckedContinuation<DeliveryReport, Error>?

    init(topic: String) { self.topic = topic }

    /// Completes from librdkafka's delivery report; a timeout names the client's last broker failure.
    func complete(_ message: rd_kafka_message_t, client: RDKafkaClient.Callbacks) {
        if message.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            complete(.success(DeliveryReport(topic: topic, partition: message.partition, offset: message.offset)))
            return
        }
        var error = KafkaError(code: message.err, context: "delivering to \(topic) (\(message.len) bytes)")
        if error.isFatal, let fatal = client.fatalError { error = fatal }
        if message.err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT { error.brokerError = client.lastBrokerError.map { "\($0.name): \($0.message)" } }
        complete(.failure(error))
    }

    private func complete(_ result: Result<DeliveryReport, KafkaError>) {
        let waiter = lock.withLock { () -> CheckedContinuation<DeliveryReport, Error>? in
            self.result = result
            defer { self.waiter = nil }
            return self.waiter
        }
        waiter?.resume(with: result.mapError { $0 as Error })
    }

    var value: DeliveryReport {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let ready = lock.withLock { () -> Result<DeliveryReport, KafkaError>? in
                    if result == nil { waiter = continuation }
                    return result
                }
                if let ready { continuation.resume(with: ready.mapError { $0 as Error }) }
            }
        }
    }
}

import CRdKafka
import Foundation
import Logging

/// A message to produce. A nil partition lets the partitioner choose by key.
public struct ProducerMessage: Sendable {
    public var topic: String
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [(String, [UInt8])]

    public init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])] = []) {
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

/// A producer that is idempotent by default (`enable.idempotence=true`: retries never
/// duplicate or reorder a partition's messages). `send` returns once the broker acknowledged
/// the message, or throws the delivery error.
public final class KafkaProducer: @unchecked Sendable {
    private let handle: OpaquePointer
    private let context: KafkaClientContext
    private var poller: PollThread!
    private let closeLock = NSLock()
    private var closed = false

    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "blendd.kafka.producer")) throws {
        context = KafkaClientContext(logger: logger, name: "producer")
        var overrides: [String: String] = [:]
        if configuration.properties["enable.idempotence"] == nil { overrides["enable.idempotence"] = "true" }
        let conf = try configuration.makeNative(overrides: overrides, context: "configuring the producer")
        context.install(on: conf)
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
            guard let message, let opaque = message.pointee._private else { return }
            let pending = Unmanaged<PendingDelivery>.fromOpaque(opaque).takeRetainedValue()
            let err = message.pointee.err
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                pending.complete(.success(DeliveryReport(topic: pending.topic, partition: message.pointee.partition, offset: message.pointee.offset)))
            } else {
                pending.complete(.failure(KafkaError(code: err, context: "delivering to \(pending.topic)",
                                                     isFatal: err == RD_KAFKA_RESP_ERR__FATAL)))
            }
        }
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(configuration: cString(errstr), context: "creating the producer")
        }
        handle = rk
        // librdkafka handles are thread-safe; the poll thread only serves callbacks.
        nonisolated(unsafe) let polled = rk
        poller = PollThread(name: "blendd.kafka.producer.poll") { rd_kafka_poll(polled, 100) }
    }

    deinit {
        poller.stop()
        rd_kafka_destroy(handle)
    }

    /// The fatal error that made this producer unusable, if any (then it must be recreated).
    public var fatalError: KafkaError? { context.fatalError }

    /// Sends one message and waits for the broker's acknowledgement.
    @discardableResult
    public func send(_ message: ProducerMessage) async throws -> DeliveryReport {
        try await enqueue(message).value
    }

    /// Sends many messages (in order, per partition) and waits for all acknowledgements;
    /// results are in input order, each a report or that message's delivery error.
    public func send(_ messages: [ProducerMessage]) async throws -> [Result<DeliveryReport, KafkaError>] {
        var pending: [PendingDelivery] = []
        pending.reserveCapacity(messages.count)
        for message in messages { pending.append(try await enqueue(message)) }
        var results: [Result<DeliveryReport, KafkaError>] = []
        for p in pending {
            do { results.append(.success(try await p.value)) } catch let error as KafkaError { results.append(.failure(error)) }
        }
        return results
    }

    /// Hands the message to librdkafka, waiting while its local queue is full.
    private func enqueue(_ message: ProducerMessage) async throws -> PendingDelivery {
        if let fatal = context.fatalError { throw fatal }
        while true {
            let pending = PendingDelivery(topic: message.topic)
            let err = produce(message, pending: pending)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR { return pending }
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            throw KafkaError(code: err, context: "producing to \(message.topic)", isFatal: err == RD_KAFKA_RESP_ERR__FATAL)
        }
    }

    private func produce(_ message: ProducerMessage, pending: PendingDelivery) -> rd_kafka_resp_err_t {
        let headers: OpaquePointer? = message.headers.isEmpty ? nil : rd_kafka_headers_new(message.headers.count)
        for (name, value) in message.headers {
            value.withUnsafeBytes { _ = rd_kafka_header_add(headers, name, -1, $0.baseAddress, $0.count) }
        }
        let opaque = Unmanaged.passRetained(pending).toOpaque()
        let key = message.key ?? []
        let err = key.withUnsafeBytes { k in
            message.value.withUnsafeBytes { v in
                blendd_produce(handle, message.topic, message.partition ?? RD_KAFKA_PARTITION_UA,
                               message.key == nil ? nil : k.baseAddress, k.count, v.baseAddress, v.count, headers, opaque)
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
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        nonisolated(unsafe) let rk = handle
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

    func complete(_ result: Result<DeliveryReport, KafkaError>) {
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

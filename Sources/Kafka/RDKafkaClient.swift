import BlendCore
import CRdKafka
import Foundation
import Logging

/// The one owner of a librdkafka handle (`rd_kafka_t`) and of the thread that polls it.
/// Producers, consumers, the admin client and the embedded broker each hold one and never
/// see the C pointer outside this module. Its callbacks run on the poll thread (or
/// librdkafka's own threads for logs), never on Swift's cooperative pool:
/// - errors are logged once (librdkafka reports a failed connect both as a log line and as an
///   error; only the error is kept) and passed on as events; fatal ones are remembered;
/// - statistics JSON is passed on as an event;
/// - rebalances and delivery reports go to the hooks the owner installed.
final class RDKafkaClient: @unchecked Sendable {
    enum Role { case producer, consumer }

    /// What the client reports besides its owner's hooks.
    enum Event: Sendable {
        case error(KafkaError)
        case fatal(KafkaError)
        case statistics(String)
    }

    struct Hooks {
        var event: @Sendable (Event) -> Void = { _ in }
        /// Consumers: called on the poll thread with librdkafka's rebalance arguments.
        var rebalance: (@Sendable (OpaquePointer, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> Void)?
        /// Producers: called on the poll thread for each message's delivery report.
        var delivery: (@Sendable (UnsafePointer<rd_kafka_message_t>, Callbacks) -> Void)?
    }

    var name: String { callbacks.name }
    /// What the C callbacks reach through the handle's opaque. A separate object, released only
    /// after the handle is destroyed, so callbacks that run during `rd_kafka_destroy` never
    /// touch a client that is being deinitialized.
    let callbacks: Callbacks
    private(set) var handle: OpaquePointer!
    private var poller: PollThread?

    /// Creates the handle from `properties` (applied in key order; a refused one is reported by
    /// name, its value only when it is not a secret).
    init(role: Role, properties: [String: String], name: String, logger: Logger, hooks: Hooks = Hooks()) throws {
        callbacks = Callbacks(name: name, logger: logger, hooks: hooks)
        let conf = rd_kafka_conf_new()!
        var errstr = [CChar](repeating: 0, count: 512)
        for key in properties.keys.sorted() {
            let value = properties[key]!
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let shown = ConfigurationLoader.isSecretKafkaProperty(key) ? ConfigurationLoader.masked : value
                throw KafkaError(configuration: "property \(key)=\(shown) refused: \(cString(errstr))", context: "configuring the \(name)")
            }
        }
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(callbacks).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let client = Callbacks.from(rk) else { return }
            client.log(level: level, facility: facility.map { String(cString: $0) } ?? "", message: message.map { String(cString: $0) } ?? "")
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, _ in
            guard let rk, let client = Callbacks.from(rk) else { return }
            client.reportError(rk: rk, code: rd_kafka_resp_err_t(err), reason: reason.map { String(cString: $0) } ?? "")
        }
        rd_kafka_conf_set_stats_cb(conf) { rk, json, length, _ in
            guard let client = Callbacks.from(rk), let json else { return 0 }
            client.hooks.event(.statistics(String(decoding: UnsafeRawBufferPointer(start: json, count: length), as: UTF8.self)))
            return 0
        }
        if hooks.rebalance != nil {
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, _ in
                guard let rk, let client = Callbacks.from(rk) else { return }
                client.hooks.rebalance?(rk, err, partitions)
            }
        }
        if hooks.delivery != nil {
            rd_kafka_conf_set_dr_msg_cb(conf) { rk, message, _ in
                guard let message, let client = Callbacks.from(rk) else { return }
                client.hooks.delivery?(message, client)
            }
        }
        guard let rk = rd_kafka_new(role == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(configuration: cString(errstr), context: "creating the \(name)")
        }
        handle = rk
    }

    /// Set once a consumer has left its group (or failed fatally): destroying the handle must
    /// not try to close it again, which can wait forever after a fatal error.
    private let closedLock = NSLock()
    private var consumerClosed = false

    func markConsumerClosed() { closedLock.withLock { consumerClosed = true } }

    deinit {
        poller?.stop()
        // nil when the initializer threw before creating the handle.
        guard let rk = handle else { return }
        if closedLock.withLock({ consumerClosed }) || callbacks.fatalError != nil {
            rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
        } else {
            rd_kafka_destroy(rk)
        }
    }

    // MARK: - Polling

    /// Starts the poll thread: `body` when given (a consumer's poll), else serving the main queue.
    func startPolling(_ body: (@Sendable () -> Void)? = nil) {
        nonisolated(unsafe) let rk = handle!
        poller = PollThread(name: "blendd.kafka.\(name).poll", body: body ?? { rd_kafka_poll(rk, 100) })
    }

    /// Stops the poll thread, waiting for its current iteration.
    func stopPolling() { poller?.stop() }

    // MARK: - State

    /// The first fatal error: the client is unusable from then on.
    var fatalError: KafkaError? { callbacks.fatalError }

    /// Broker-level failures reported so far (each logged once).
    var brokerErrorCount: Int { callbacks.brokerErrorCount }

    /// An error a consumer poll returned in place of a message.
    func reportError(code: rd_kafka_resp_err_t, reason: String) {
        callbacks.reportError(rk: handle, code: code, reason: reason)
    }

    /// A property's effective value (after librdkafka's defaults).
    func property(_ name: String) -> String? {
        var size = 0
        guard rd_kafka_conf_get(rd_kafka_conf(handle), name, nil, &size) == RD_KAFKA_CONF_OK, size > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: size)
        guard rd_kafka_conf_get(rd_kafka_conf(handle), name, &buffer, &size) == RD_KAFKA_CONF_OK else { return nil }
        return cString(buffer)
    }

    /// Raises a fatal error as librdkafka would (for tests of fatal-error handling: real ones,
    /// such as a fenced idempotent producer, cannot be provoked on demand).
    func simulateFatalError(_ code: rd_kafka_resp_err_t, reason: String) {
        _ = rd_kafka_test_fatal_error(handle, code, reason)
    }
}

extension RDKafkaClient {
    final class Callbacks: @unchecked Sendable {
        let name: String
        let logger: Logger
        let hooks: Hooks
        private let lock = NSLock()
        private var _fatal: KafkaError?
        private var _lastBrokerError: KafkaError?
        private var _brokerErrors = 0

        init(name: String, logger: Logger, hooks: Hooks) {
            self.name = name
            self.logger = logger
            self.hooks = hooks
        }

        static func from(_ rk: OpaquePointer?) -> Callbacks? {
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
            return Unmanaged<Callbacks>.fromOpaque(opaque).takeUnretainedValue()
        }

        var fatalError: KafkaError? { lock.withLock { _fatal } }

        /// The latest broker-level failure (connect refused, authentication, all brokers down), for
        /// error messages that would otherwise only say "timed out".
        var lastBrokerError: KafkaError? { lock.withLock { _lastBrokerError } }

        var brokerErrorCount: Int { lock.withLock { _brokerErrors } }

        func log(level: Int32, facility: String, message: String) {
            // A failed connect or broker state change also arrives as an error callback; logging
            // both would say everything twice.
            if ["FAIL", "ERROR", "FATAL"].contains(facility) { return }
            let metadata: Logger.Metadata = ["kafka.client": "\(name)"]
            let text = "\(facility): \(message)"
            switch level {
            case 0...3: logger.error("\(text)", metadata: metadata)
            case 4: logger.warning("\(text)", metadata: metadata)
            case 5, 6: logger.info("\(text)", metadata: metadata)
            default: logger.debug("\(text)", metadata: metadata)
            }
        }

        /// An error from the error callback, or one a consumer poll returned in place of a message.
        func reportError(rk: OpaquePointer, code: rd_kafka_resp_err_t, reason: String) {
            if code == RD_KAFKA_RESP_ERR__FATAL {
                var buffer = [CChar](repeating: 0, count: 512)
                let original = rd_kafka_fatal_error(rk, &buffer, buffer.count)
                let error = KafkaError(code: original, message: cString(buffer), context: "the \(name)", isFatal: true)
                let first = lock.withLock { () -> Bool in
                    defer { if _fatal == nil { _fatal = error } }
                    return _fatal == nil
                }
                guard first else { return }
                logger.critical("\(error)", metadata: ["kafka.client": "\(name)"])
                hooks.event(.fatal(error))
                return
            }
            let error = KafkaError(code: code, message: reason, context: "the \(name)")
            // librdkafka retries these by itself; the log says what is wrong meanwhile.
            logger.warning("\(error)", metadata: ["kafka.client": "\(name)"])
            lock.withLock {
                _lastBrokerError = error
                _brokerErrors += 1
            }
            hooks.event(.error(error))
        }
    }
}

/// A thread that calls `body` until stopped.
final class PollThread: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var owner: pthread_t?
    private let finished = DispatchSemaphore(value: 0)

    init(name: String, body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            lock.withLock { owner = pthread_self() }
            while self.isRunning { body() }
            self.finished.signal()
        }
        thread.name = name
        thread.start()
    }

    var isRunning: Bool { lock.withLock { running } }

    /// Stops the loop and waits for its current iteration to end, unless it is called from that
    /// iteration (the last reference to the client can be released on its own poll thread).
    func stop() {
        let (wasRunning, onPollThread) = lock.withLock { () -> (Bool, Bool) in
            defer { running = false }
            return (running, owner.map { pthread_equal($0, pthread_self()) != 0 } ?? false)
        }
        if wasRunning && !onPollThread { finished.wait() }
    }
}

/// Text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

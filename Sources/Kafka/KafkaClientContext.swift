import CRdKafka
import Foundation
import Logging

/// State a librdkafka handle's C callbacks reach through `rd_kafka_opaque`: the logger, the
/// first fatal error, and (for consumers) the consumer itself. Owned by the Swift client
/// object, which outlives its handle.
final class KafkaClientContext: @unchecked Sendable {
    let logger: Logger
    let name: String
    private let lock = NSLock()
    private var _fatal: KafkaError?
    /// Set by consumers; read on the poll thread in the rebalance callback.
    weak var consumer: KafkaConsumer?

    init(logger: Logger, name: String) {
        self.logger = logger
        self.name = name
    }

    var fatalError: KafkaError? { lock.withLock { _fatal } }

    func recordFatal(_ error: KafkaError) {
        lock.withLock { if _fatal == nil { _fatal = error } }
    }

    static func from(_ rk: OpaquePointer?) -> KafkaClientContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<KafkaClientContext>.fromOpaque(opaque).takeUnretainedValue()
    }

    /// Installs the log and error callbacks and makes `self` the handle's opaque.
    func install(on conf: OpaquePointer) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let context = KafkaClientContext.from(rk) else { return }
            let text = "\(String(cString: facility!)): \(String(cString: message!))"
            switch level {
            case 0...3: context.logger.error("\(text)", metadata: ["kafka.client": "\(context.name)"])
            case 4: context.logger.warning("\(text)", metadata: ["kafka.client": "\(context.name)"])
            case 5, 6: context.logger.info("\(text)", metadata: ["kafka.client": "\(context.name)"])
            default: context.logger.debug("\(text)", metadata: ["kafka.client": "\(context.name)"])
            }
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, _ in
            guard let context = KafkaClientContext.from(rk) else { return }
            let message = reason.map { String(cString: $0) } ?? ""
            if rd_kafka_resp_err_t(err) == RD_KAFKA_RESP_ERR__FATAL, let rk {
                var buffer = [CChar](repeating: 0, count: 512)
                let code = rd_kafka_fatal_error(rk, &buffer, buffer.count)
                let error = KafkaError(code: code, message: cString(buffer), context: "client \(context.name)", isFatal: true)
                context.recordFatal(error)
                context.logger.critical("\(error)")
            } else {
                // Transport errors and the like: librdkafka retries by itself.
                context.logger.warning("kafka \(String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(err)))): \(message)",
                                       metadata: ["kafka.client": "\(context.name)"])
            }
        }
    }
}

/// A thread that calls `body` until stopped; librdkafka's callbacks run on it, never on
/// Swift's cooperative pool.
final class PollThread: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private let finished = DispatchSemaphore(value: 0)

    init(name: String, body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            while self.isRunning { body() }
            self.finished.signal()
        }
        thread.name = name
        thread.start()
    }

    var isRunning: Bool { lock.withLock { running } }

    /// Stops the loop and waits for its current iteration to end.
    func stop() {
        let wasRunning = lock.withLock { () -> Bool in
            defer { running = false }
            return running
        }
        if wasRunning { finished.wait() }
    }
}

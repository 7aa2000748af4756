import CRdKafka
import Foundation
import Logging

/// A consumed message. `assignment` identifies the assignment it was fetched under: once its
/// partition is revoked, `markDone` ignores it, so an old owner never commits for a new one.
public struct KafkaMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    /// nil for a record whose value is null (a tombstone), which is not the same as empty.
    public var value: [UInt8]?
    public var headers: [(String, [UInt8])]
    public var timestamp: Date?
    let assignment: UInt64

    /// The value's bytes, empty for a null value.
    public var bytes: [UInt8] { value ?? [] }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }
}

/// What a rebalance did to this member. Delivered synchronously on the consumer's thread
/// *before* librdkafka completes it, so for `revoked` the application can finish (and mark
/// done) or abandon in-flight work first; offsets are committed right after the handler returns.
/// For `lost` the partitions already belong to someone else: nothing is committed.
public enum RebalanceEvent: Sendable, Equatable {
    case assigned([TopicPartition])
    case revoked([TopicPartition])
    case lost([TopicPartition])
}

/// What a consumer reports besides messages, as its own stream (read by one task). Rebalances
/// appear here after the synchronous `rebalanceHandler` has run.
public enum KafkaConsumerEvent: Sendable, Equatable {
    case rebalance(RebalanceEvent)
    /// A broker-level failure librdkafka retries by itself (logged once).
    case error(KafkaError)
    /// The consumer is unusable (e.g. its static member id was fenced): exit and restart.
    case fatal(KafkaError)
    /// librdkafka's statistics JSON, when `KafkaConfiguration.statisticsInterval` is set.
    case statistics(String)
}

/// A consumer-group member (cooperative-sticky assignor) whose poll loop runs on its own
/// thread and feeds a bounded buffer. When the buffer is full the fetching partitions are
/// paused, and resumed once it has drained to half, so memory stays bounded. Offsets are
/// stored only for messages the application marks done (`enable.auto.offset.store=false`)
/// and committed every `auto.commit.interval.ms`, on revocation and on close.
public final class KafkaConsumer: @unchecked Sendable {
    /// The consumer's typed settings.
    public struct Options: Sendable {
        public var groupId: String
        public var topics: [String]
        /// Messages, and bytes of their keys, values and headers, held ahead of the application before fetching
        /// pauses (either bound pauses it; it resumes once both are at half).
        public var maxBuffered: Int = 10_000
        public var maxBufferedBytes: Int = 64 << 20
        /// Where a group without committed offsets starts.
        public var autoOffsetReset: String = "earliest"
        public var commitIntervalMilliseconds: Int = 1000
        /// A member silent this long is dropped and its partitions move: short enough that a
        /// killed worker's partitions resume within about 15 s (librdkafka's default is 45 s).
        public var sessionTimeout: Duration = .seconds(6)
        public var heartbeatInterval: Duration = .seconds(1)
        /// Static membership: a member that comes back with the same id within the session
        /// timeout keeps its partitions, without a rebalance.
        public var groupInstanceId: String?
        /// Events buffered for a reader of `events` before the oldest are dropped.
        public var eventBuffer = 100

        public init(groupId: String, topics: [String], maxBuffered: Int = 10_000, maxBufferedBytes: Int = 64 << 20) {
            self.groupId = groupId
            self.topics = topics
            self.maxBuffered = maxBuffered
            self.maxBufferedBytes = maxBufferedBytes
        }
    }

    private let client: RDKafkaClient
    private let logger: Logger
    private let options: Options
    private let rebalanceHandler: @Sendable (RebalanceEvent) -> Void
    private let buffer: MessageBuffer
    private let eventContinuation: AsyncStream<KafkaConsumerEvent>.Continuation
    /// Rebalances, errors, fatal errors and statistics.
    public let events: AsyncStream<KafkaConsumerEvent>

    /// Guards the assignment map and the pause state; `markDone` stores offsets under it.
    private let lock = NSLock()
    private var assignments: [TopicPartition: UInt64] = [:]
    private var nextAssignment: UInt64 = 1
    private var paused = false
    private var closed = false
    private var closing: Task<Void, Never>?
    private var handle: OpaquePointer { client.handle }

    /// - Parameter rebalanceHandler: called on the consumer's thread; must return once the
    ///   application has finished or abandoned the work of revoked partitions.
    public init(configuration: KafkaConfiguration, options: Options, logger: Logger = Logger(label: "blendd.kafka.consumer"),
                rebalanceHandler: @escaping @Sendable (RebalanceEvent) -> Void = { _ in }) throws {
        precondition(options.maxBuffered >= 1 && options.maxBufferedBytes >= 1, "the buffer must hold at least one message")
        self.options = options
        self.logger = logger
        self.rebalanceHandler = rebalanceHandler
        self.buffer = MessageBuffer()
        (events, eventContinuation) = AsyncStream<KafkaConsumerEvent>.makeStream(bufferingPolicy: .bufferingNewest(options.eventBuffer))
        let properties = Self.properties(configuration, options)
        let target = RebalanceTarget()
        let continuation = eventContinuation
        var hooks = RDKafkaClient.Hooks()
        hooks.event = { event in
            switch event {
            case .error(let e): continuation.yield(.error(e))
            case .fatal(let e): continuation.yield(.fatal(e))
            case .statistics(let s): continuation.yield(.statistics(s))
            }
        }
        hooks.rebalance = { rk, err, partitions in target.consumer?.rebalance(rk: rk, err: err, partitions: partitions) }
        client = try RDKafkaClient(role: .consumer, properties: properties, name: "consumer of \(options.groupId)", logger: logger, hooks: hooks)
        target.consumer = self
        let rk = client.handle!
        rd_kafka_poll_set_consumer(rk)
        let topics = rd_kafka_topic_partition_list_new(Int32(options.topics.count))!
        for topic in options.topics { rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA) }
        let err = rd_kafka_subscribe(rk, topics)
        rd_kafka_topic_partition_list_destroy(topics)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(code: err, context: "subscribing to \(options.topics.joined(separator: ", "))")
        }
        // Weak: the consumer may be deinitialising while the poll thread starts an iteration.
        client.startPolling { [weak self] in self?.pollOnce() }
    }

    /// The librdkafka properties of a consumer: the typed options, then the raw properties, then
    /// what `markDone`, the revoke hook and the flow control depend on (not overridable).
    static func properties(_ configuration: KafkaConfiguration, _ options: Options) -> [String: String] {
        var properties = configuration.librdkafkaProperties.merging([
            "session.timeout.ms": String(options.sessionTimeout.milliseconds),
            "heartbeat.interval.ms": String(options.heartbeatInterval.milliseconds),
        ]) { raw, _ in raw }
        properties.merge([
            "group.id": options.groupId,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.offset.store": "false",
            "enable.auto.commit": "true",
            "auto.commit.interval.ms": String(options.commitIntervalMilliseconds),
            "auto.offset.reset": options.autoOffsetReset,
            "enable.partition.eof": "false",
        ]) { _, managed in managed }
        if let id = options.groupInstanceId { properties["group.instance.id"] = id }
        return properties
    }

    private final class RebalanceTarget: @unchecked Sendable {
        weak var consumer: KafkaConsumer?
    }

    deinit {
        client.stopPolling()
        eventContinuation.finish()
    }

    /// The fatal error that made this consumer unusable, if any.
    public var fatalError: KafkaError? { client.fatalError }

    /// Raises a fatal consumer error as librdkafka would, for tests of the handling.
    public func simulateFatalError(reason: String) {
        client.simulateFatalError(RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID, reason: reason)
    }

    // MARK: - Reading

    /// The next message, or nil once the consumer is closed.
    public func next() async -> KafkaMessage? {
        await buffer.next(deadline: nil)
    }

    /// Waits for one message, then gathers more until `maxCount` or until `maxWait` has passed
    /// since the first arrived. Empty only when the consumer is closed.
    public func nextBatch(maxCount: Int, maxWait: Duration) async -> [KafkaMessage] {
        guard let first = await buffer.next(deadline: nil) else { return [] }
        var batch = [first]
        let deadline = DispatchTime.now() + .nanoseconds(Int(maxWait.components.seconds * 1_000_000_000 + maxWait.components.attoseconds / 1_000_000_000))
        while batch.count < maxCount, let message = await buffer.next(deadline: deadline) { batch.append(message) }
        return batch
    }

    /// Messages buffered ahead of the application, and the bytes of their keys, values and headers.
    public var bufferedCount: Int { buffer.count }
    public var bufferedBytes: Int { buffer.bytes }

    public var isPaused: Bool { lock.withLock { paused } }

    // MARK: - Acknowledging

    /// Marks a message finished: its offset + 1 becomes the partition's stored offset, committed
    /// on the next cadence, revocation or close. Returns false (and stores nothing) when the
    /// partition was revoked since the message was fetched.
    @discardableResult
    public func markDone(_ message: KafkaMessage) -> Bool {
        lock.withLock {
            guard assignments[message.topicPartition] == message.assignment else { return false }
            let list = TopicPartition.nativeList([message.topicPartition], offsets: [message.offset + 1])
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_offsets_store(handle, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR || list.pointee.elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("could not store offset \(message.offset + 1) for \(message.topicPartition): \(String(cString: rd_kafka_err2str(err)))")
                return false
            }
            return true
        }
    }

    /// Partitions assigned to this member now.
    public var assignment: [TopicPartition] { lock.withLock { Array(assignments.keys) } }

    /// Messages behind the high watermark over the assigned partitions, from librdkafka's
    /// cached watermarks (no broker round trip).
    public var lag: Int64 {
        let partitions = assignment
        guard !partitions.isEmpty else { return 0 }
        let list = TopicPartition.nativeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_position(handle, list)
        var total: Int64 = 0
        for i in 0..<Int(list.pointee.cnt) {
            let e = list.pointee.elems[i]
            var low: Int64 = 0, high: Int64 = 0
            guard rd_kafka_get_watermark_offsets(handle, e.topic, e.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { continue }
            let position = e.offset >= 0 ? e.offset : low
            total += max(0, high - position)
        }
        return total
    }

    // MARK: - Closing

    /// Stops fetching, commits stored offsets, leaves the group (revoking everything through
    /// the rebalance handler) and wakes any reader with nil. Every caller returns only once
    /// the group has been left, so a process can exit right after `close()` returns.
    public func close() async {
        let task = lock.withLock { () -> Task<Void, Never> in
            if let running = closing { return running }
            closed = true
            let started = Task { await self.leaveGroup() }
            closing = started
            return started
        }
        await task.value
    }

    private func leaveGroup() async {
        client.stopPolling()
        nonisolated(unsafe) let rk = handle
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                let err = rd_kafka_consumer_close(rk)
                self.client.markConsumerClosed()
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    self.logger.warning("leaving group \(self.options.groupId): \(String(cString: rd_kafka_err2str(err)))")
                }
                continuation.resume()
            }
        }
        buffer.close()
    }

    // MARK: - Poll thread

    private func pollOnce() {
        adjustFlowControl()
        guard let message = rd_kafka_consumer_poll(handle, 100) else { return }
        defer { rd_kafka_message_destroy(message) }
        let m = message.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Errors arrive here in place of messages: reported (and logged) once, fatal ones remembered.
            if m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                client.reportError(code: m.err, reason: String(cString: rd_kafka_message_errstr(message)))
            }
            return
        }
        let topic = String(cString: rd_kafka_topic_name(m.rkt))
        let tp = TopicPartition(topic: topic, partition: m.partition)
        guard let generation = lock.withLock({ assignments[tp] }) else { return }
        var headers: [(String, [UInt8])] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(message, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var i = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                headers.append((String(cString: name!), bytes))
                i += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ms = rd_kafka_message_timestamp(message, &timestampType)
        let key: [UInt8]? = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        let value: [UInt8]? = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) }
        buffer.append(KafkaMessage(topic: topic, partition: m.partition, offset: m.offset, key: key, value: value, headers: headers,
                                   timestamp: ms >= 0 ? Date(timeIntervalSince1970: Double(ms) / 1000) : nil, assignment: generation))
    }

    /// Pauses every assigned partition when the buffer is full (in messages or bytes); resumes once both are at half.
    private func adjustFlowControl() {
        let (count, bytes) = buffer.level
        lock.withLock {
            if !paused && (count >= options.maxBuffered || bytes >= options.maxBufferedBytes) {
                setPaused(true, Array(assignments.keys))
            } else if paused && count <= options.maxBuffered / 2 && bytes <= options.maxBufferedBytes / 2 {
                setPaused(false, Array(assignments.keys))
            }
        }
    }

    /// Caller holds `lock`.
    private func setPaused(_ pause: Bool, _ partitions: [TopicPartition]) {
        paused = pause
        guard !partitions.isEmpty else { return }
        let list = TopicPartition.nativeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = pause ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("\(pause ? "pausing" : "resuming") \(partitions.count) partitions failed: \(String(cString: rd_kafka_err2str(err)))")
        } else {
            logger.debug("\(pause ? "paused" : "resumed") fetching of \(partitions.count) partitions (buffer \(buffer.count)/\(options.maxBuffered))")
        }
    }

    /// The rebalance callback (poll thread, or the thread running `close`).
    private func rebalance(rk: OpaquePointer, err: rd_kafka_resp_err_t, partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let tps = TopicPartition.list(partitions)
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            lock.withLock {
                for tp in tps {
                    assignments[tp] = nextAssignment
                    nextAssignment += 1
                }
            }
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, partitions) {
                    logger.error("\(KafkaError(error: error, context: "assigning \(tps)"))")
                    rd_kafka_error_destroy(error)
                }
            } else {
                rd_kafka_assign(rk, partitions)
            }
            lock.withLock { if paused { setPaused(true, tps) } }
            logger.info("assigned \(tps.map(\.description).sorted().joined(separator: ", "))")
            rebalanceHandler(.assigned(tps))
            eventContinuation.yield(.rebalance(.assigned(tps)))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(rk) != 0
            rebalanceHandler(lost ? .lost(tps) : .revoked(tps))
            // From here on, offsets of these partitions are no longer ours to store.
            lock.withLock { for tp in tps { assignments[tp] = nil } }
            buffer.removeAll { tps.contains($0.topicPartition) }
            if !lost {
                let commitErr = rd_kafka_commit(rk, nil, 0)
                if commitErr != RD_KAFKA_RESP_ERR_NO_ERROR && commitErr != RD_KAFKA_RESP_ERR__NO_OFFSET {
                    logger.warning("commit on revoke failed: \(String(cString: rd_kafka_err2str(commitErr)))")
                }
            }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, partitions) {
                    logger.error("\(KafkaError(error: error, context: "unassigning \(tps)"))")
                    rd_kafka_error_destroy(error)
                }
            } else {
                rd_kafka_assign(rk, nil)
            }
            logger.info("\(lost ? "lost" : "revoked") \(tps.map(\.description).sorted().joined(separator: ", "))")
            eventContinuation.yield(.rebalance(lost ? .lost(tps) : .revoked(tps)))
        default:
            logger.error("rebalance error: \(String(cString: rd_kafka_err2str(err)))")
            rd_kafka_assign(rk, nil)
        }
    }
}

/// The bounded hand-over between the poll thread and the application; one reader at a time.
final class MessageBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [KafkaMessage] = []
    private var head = 0
    private var waiter: (id: UInt64, continuation: CheckedContinuation<KafkaMessage?, Never>)?
    private var nextWaiterId: UInt64 = 0
    private var closed = false

    /// Bytes of the held messages' keys, values and headers.
    private var heldBytes = 0

    var count: Int { lock.withLock { messages.count - head } }
    var bytes: Int { lock.withLock { heldBytes } }
    var level: (count: Int, bytes: Int) { lock.withLock { (messages.count - head, heldBytes) } }

    static func size(_ m: KafkaMessage) -> Int {
        (m.key?.count ?? 0) + (m.value?.count ?? 0) + m.headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.count }
    }

    func append(_ message: KafkaMessage) {
        let continuation = lock.withLock { () -> CheckedContinuation<KafkaMessage?, Never>? in
            if let w = waiter {
                waiter = nil
                return w.continuation
            }
            messages.append(message)
            heldBytes += Self.size(message)
            return nil
        }
        continuation?.resume(returning: message)
    }

    func removeAll(where predicate: (KafkaMessage) -> Bool) {
        lock.withLock {
            messages = Array(messages[head...]).filter { !predicate($0) }
            head = 0
            heldBytes = messages.reduce(0) { $0 + Self.size($1) }
        }
    }

    func close() {
        let continuation = lock.withLock { () -> CheckedContinuation<KafkaMessage?, Never>? in
            closed = true
            defer { waiter = nil }
            return waiter?.continuation
        }
        continuation?.resume(returning: nil)
    }

    /// The next message; nil when closed, or when `deadline` passes first.
    func next(deadline: DispatchTime?) async -> KafkaMessage? {
        await withCheckedContinuation { continuation in
            let (ready, id): (KafkaMessage??, UInt64) = lock.withLock {
                if head < messages.count {
                    let m = messages[head]
                    head += 1
                    heldBytes -= Self.size(m)
                    if head > 1024 && head * 2 > messages.count {
                        messages.removeFirst(head)
                        head = 0
                    }
                    return (.some(m), 0)
                }
                if closed { return (.some(nil), 0) }
                if let deadline, deadline <= .now() { return (.some(nil), 0) }
                nextWaiterId += 1
                waiter = (nextWaiterId, continuation)
                return (nil, nextWaiterId)
            }
            if let ready { return continuation.resume(returning: ready) }
            if let deadline {
                DispatchQueue.global().asyncAfter(deadline: deadline) { [self] in
                    let expired = lock.withLock { () -> CheckedContinuation<KafkaMessage?, Never>? in
                        guard let w = waiter, w.id == id else { return nil }
                        waiter = nil
                        return w.continuation
                    }
                    expired?.resume(returning: nil)
                }
            }
        }
    }
}

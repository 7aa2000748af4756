import Foundation

extension ConfigurationLoader {
    /// Every setting, with its type and range. To add one: a field in `BlendConfiguration`, a
    /// line here (the range is what every command that constructs something from it accepts),
    /// and, if it relates to others, a rule in `rules`. The boundary tests pick it up from here.
    public static let settings: [ConfigurationSetting] = [
        .string("worker_id", \.workerId, "Name of this worker in logs, events and the workers table (default: host-pid)."),
        .string("worker.listen", \.workerListen, allowEmpty: true,
                "HTTP address of a lone worker's /healthz, /readyz and /metrics (empty: none)."),
        .string("kafka.bootstrap_servers", \.kafka.bootstrapServers, "Kafka bootstrap servers, host:port[,host:port…]."),
        .string("kafka.group_id", \.kafka.groupId, "Consumer group shared by all workers."),
        .string("kafka.topics.jobs", \.kafka.jobsTopic, "Topic the jobs arrive on."),
        .string("kafka.topics.events", \.kafka.eventsTopic, "Topic completion events are published to."),
        .string("kafka.topics.dlq", \.kafka.dlqTopic, "Dead-letter topic for rejected messages."),
        .int("kafka.max_buffered_messages", \.kafka.maxBufferedMessages, 1...1_000_000, "Messages buffered before fetching pauses."),
        .int("kafka.max_buffered_mb", \.kafka.maxBufferedMegabytes, 1...65_536,
             "Megabytes of buffered messages (keys, values, headers) before fetching pauses."),
        // At most librdkafka's max.poll.interval.ms (300 s), which it must not exceed.
        .int("kafka.session_timeout_ms", \.kafka.sessionTimeoutMilliseconds, 1000...300_000,
             "Silence after which a member's partitions move to the others."),
        .int("kafka.heartbeat_interval_ms", \.kafka.heartbeatIntervalMilliseconds, 100...100_000, "Interval of group heartbeats."),
        .bool("kafka.static_membership", \.kafka.staticMembership,
              "Join as a static member (group.instance.id = worker_id): restarts within the session timeout cause no rebalance."),
        .int("kafka.delivery_timeout_ms", \.kafka.deliveryTimeoutMilliseconds, 1000...3_595_000,
             "Time the producer has to deliver a message before it fails (message.timeout.ms)."),
        .string("postgres.url", \.postgres.url, secret: true, "PostgreSQL URL or conninfo string."),
        .int("postgres.pool_size", \.postgres.poolSize, 1...256, "Connections per worker process."),
        .int("postgres.statement_timeout_ms", \.postgres.statementTimeoutMilliseconds, 0...86_400_000,
             "Longest a statement may run (0: no limit)."),
        .int("postgres.keepalive_seconds", \.postgres.keepaliveSeconds, 1...3600,
             "TCP keepalive idle time; a silent server is declared dead after about twice this."),
        .string("models.ranker", \.models.ranker, allowEmpty: true,
                "PairRM or pointwise reward-model checkpoint directory (empty: weight-free consensus ranker)."),
        .string("models.default_ranker", \.models.defaultRanker, allowEmpty: true,
                "Ranker of jobs that name none (rank.model): a name under models.rankers, or default for models.ranker."),
        .string("models.fuser", \.models.fuser, allowEmpty: true, "GenFuser checkpoint directory (empty: return the top-ranked candidate)."),
        .int("models.threads", \.models.threads, 0...1024, "Inference threads (0: one per core)."),
        .choice("models.ranker_precision", \.models.rankerPrecision, "PairRM arithmetic: fp32 (exact to the reference), bf16 or int8."),
        .choice("models.fuser_precision", \.models.fuserPrecision, "GenFuser arithmetic: fp32 (exact to the reference), bf16 or int8."),
        .int("batching.max_jobs", \.batching.maxJobs, 1...4096, "Jobs per micro-batch."),
        .int("batching.max_pairs", \.batching.maxPairs, 1...65536, "Pair sequences per ranker forward pass."),
        .int("batching.max_tokens", \.batching.maxTokens, 512...16_777_216, "Padded tokens per forward pass."),
        .int("batching.max_wait_ms", \.batching.maxWaitMilliseconds, 0...60_000, "Longest wait for a batch to fill, in milliseconds."),
        .bool("batching.continuous_fusion", \.batching.continuousFusion,
              "Fusions of all micro-batches decode in one running batch that jobs join and leave between steps (false: per micro-batch)."),
        .int("batching.max_fusing_jobs", \.batching.maxFusingJobs, 1...4096, "Unfinished fusions after which consuming pauses (continuous fusion)."),
        .int("limits.max_candidates", \.limits.maxCandidates, JobLimits.minCandidates...1024, "Candidates per job."),
        .int("limits.max_text_bytes", \.limits.maxTextBytes, 1...(64 << 20), "UTF-8 bytes of one text."),
        .int("limits.max_job_bytes", \.limits.maxJobBytes, 1...(256 << 20), "UTF-8 bytes of one job message."),
        .int("limits.max_metadata_bytes", \.limits.maxMetadataBytes, 2...(16 << 20), "UTF-8 bytes of a job's metadata."),
        .int("limits.max_model_name_length", \.limits.maxModelNameLength, 1...4096, "Length of a candidate's model name."),
        .int("limits.max_top_k", \.limits.maxTopK, 1...64, "Largest fuse.top_k."),
        .int("limits.max_new_tokens", \.limits.maxNewTokens, 1...32768, "Largest fuse.max_new_tokens."),
        .int("limits.max_beams", \.limits.maxBeams, 1...64, "Largest fuse.num_beams."),
        .int("limits.max_pairs", \.limits.maxPairs, 1...65536, "Pairs (or conversation pairs) a compare job may judge."),
        .int("retry.initial_ms", \.retry.initialMilliseconds, 1...3_600_000, "First retry delay after a transient fault."),
        .int("retry.max_ms", \.retry.maxMilliseconds, 1...86_400_000, "Longest retry delay."),
        .double("retry.multiplier", \.retry.multiplier, 1...10, "Growth of the delay per attempt."),
        .double("retry.jitter", \.retry.jitter, 0...1, "Random fraction of each delay (0…1)."),
        .int("outbox.poll_ms", \.outbox.pollMilliseconds, 1...60_000,
             "First idle interval of the outbox relay (it wakes on NOTIFY, on stored batches and when a retry falls due)."),
        .int("outbox.max_idle_ms", \.outbox.maxIdleMilliseconds, 1...3_600_000,
             "Longest idle interval of the outbox relay; the interval doubles up to it."),
        .int("outbox.batch_size", \.outbox.batchSize, 1...10_000, "Events the relay publishes per round."),
        .double("outbox.claim_seconds", \.outbox.claimSeconds, 6...3600, "How long a relay holds the rows it publishes."),
        .double("shutdown.drain_seconds", \.drainSeconds, 0.1...3600, "Time a stopping worker has to finish its batch."),
        .int("supervisor.workers", \.supervisor.workers, 1...256, reload: true, "Worker processes per supervisor."),
        .string("supervisor.listen", \.supervisor.listen, "Address of /healthz, /readyz and /metrics."),
        .double("supervisor.heartbeat_seconds", \.supervisor.heartbeatSeconds, 0.1...60, "Interval of worker heartbeats."),
        .double("supervisor.heartbeat_timeout_seconds", \.supervisor.heartbeatTimeoutSeconds, 0.5...3600,
                "Silence after which a worker counts as hung."),
        .double("supervisor.stall_seconds", \.supervisor.stallSeconds, 1...86400, "No progress with lag for this long counts as a stall."),
        .int("supervisor.memory_limit_mb", \.supervisor.memoryLimitMegabytes, 0...16_777_216, "Worker RSS limit in MiB (0: none)."),
        .int("supervisor.restart_initial_ms", \.supervisor.restartInitialMilliseconds, 1...3_600_000, "First restart delay."),
        .int("supervisor.restart_max_ms", \.supervisor.restartMaxMilliseconds, 1...86_400_000, "Longest restart delay."),
        .int("supervisor.crash_loop_restarts", \.supervisor.crashLoopRestarts, 1...1000,
             "Restarts within the window that mark the supervisor degraded."),
        .double("supervisor.crash_loop_window_seconds", \.supervisor.crashLoopWindowSeconds, 1...86400, "Window for counting restarts."),
        .double("supervisor.dead_worker_retention_seconds", \.supervisor.deadWorkerRetentionSeconds, 1...31_536_000,
                "Age after which rows of dead workers are deleted."),
        .oneOf("log.level", \.logLevel, ["trace", "debug", "info", "notice", "warning", "error", "critical"],
               "trace, debug, info, notice, warning, error or critical."),
        .choice("log.format", \.logFormat, "text or json."),
    ]

    /// Rules between settings, each reported at the first path it names.
    static let rules: [ConfigurationRule] = [
        ConfigurationRule("kafka.topics") { c in
            let topics = [c.kafka.jobsTopic, c.kafka.eventsTopic, c.kafka.dlqTopic]
            return Set(topics).count == 3 ? nil : "jobs, events and dlq must be three different topics (are \(topics.joined(separator: ", ")))"
        },
        ConfigurationRule("kafka.heartbeat_interval_ms") { c in
            c.kafka.heartbeatIntervalMilliseconds * 3 <= c.kafka.sessionTimeoutMilliseconds ? nil
                : "must be at most a third of kafka.session_timeout_ms (\(c.kafka.sessionTimeoutMilliseconds)), is \(c.kafka.heartbeatIntervalMilliseconds)"
        },
        ConfigurationRule("kafka.delivery_timeout_ms") { c in
            let claim = c.outbox.claimSeconds * 1000
            return Double(c.kafka.deliveryTimeoutMilliseconds) + outboxClaimMarginMilliseconds <= claim ? nil
                : "must end \(Int(outboxClaimMarginMilliseconds)) ms before outbox.claim_seconds (\(ConfigurationSetting.shown(c.outbox.claimSeconds)) s) runs out, "
                + "so no other relay publishes a message still in flight; is \(c.kafka.deliveryTimeoutMilliseconds)"
        },
        ConfigurationRule("models.ranker") { c in directoryProblem(c.models.ranker) },
        ConfigurationRule("models.fuser") { c in directoryProblem(c.models.fuser) },
        ConfigurationRule("models.rankers") { c in
            for name in c.models.rankers.keys.sorted() {
                if let problem = BlendConfiguration.Models.rankerNameProblem(name) { return "\(name): \(problem)" }
                if let problem = directoryProblem(c.models.rankers[name]!) { return "\(name): \(problem)" }
            }
            if c.models.rankers[BlendConfiguration.Models.unnamedRanker] != nil, !c.models.ranker.isEmpty {
                return "\(BlendConfiguration.Models.unnamedRanker) is the name of models.ranker; give this one another name"
            }
            return nil
        },
        ConfigurationRule("models.default_ranker") { c in
            if case .unresolved(let problem) = c.models.resolvedDefaultRanker { return problem }
            return nil
        },
        ConfigurationRule("limits.max_job_bytes") { c in
            c.limits.maxJobBytes >= c.limits.maxTextBytes ? nil
                : "must be at least limits.max_text_bytes (\(c.limits.maxTextBytes)), is \(c.limits.maxJobBytes)"
        },
        ConfigurationRule("outbox.max_idle_ms") { c in
            c.outbox.maxIdleMilliseconds >= c.outbox.pollMilliseconds ? nil
                : "must be at least outbox.poll_ms (\(c.outbox.pollMilliseconds)), is \(c.outbox.maxIdleMilliseconds)"
        },
        ConfigurationRule("retry.max_ms") { c in
            c.retry.maxMilliseconds >= c.retry.initialMilliseconds ? nil
                : "must be at least retry.initial_ms (\(c.retry.initialMilliseconds)), is \(c.retry.maxMilliseconds)"
        },
        ConfigurationRule("supervisor.listen") { c in
            c.supervisor.listen.contains(":") ? nil : "must be host:port (is \(c.supervisor.listen))"
        },
        ConfigurationRule("supervisor.heartbeat_timeout_seconds") { c in
            let s = c.supervisor
            return s.heartbeatTimeoutSeconds > s.heartbeatSeconds * 2 ? nil
                : "must exceed two heartbeat intervals (\(s.heartbeatSeconds * 2) s), is \(s.heartbeatTimeoutSeconds)"
        },
        ConfigurationRule("supervisor.restart_max_ms") { c in
            let s = c.supervisor
            return s.restartMaxMilliseconds >= s.restartInitialMilliseconds ? nil
                : "must be at least supervisor.restart_initial_ms (\(s.restartInitialMilliseconds)), is \(s.restartMaxMilliseconds)"
        },
    ]

    /// Room left between the end of a delivery attempt and the end of its outbox claim, for
    /// marking the row sent.
    static let outboxClaimMarginMilliseconds = 5000.0

    /// librdkafka properties blendd sets itself, and the setting (or fact) that decides them.
    /// (`session.timeout.ms` and `heartbeat.interval.ms` in `kafka.properties` still override
    /// their settings, as they did before the settings existed; librdkafka checks the pair.)
    static let managedKafkaProperties: [String: String] = [
        "bootstrap.servers": "kafka.bootstrap_servers",
        "group.id": "kafka.group_id",
        "enable.auto.offset.store": "nothing: offsets are stored only for finished jobs",
        "group.instance.id": "kafka.static_membership",
        "message.timeout.ms": "kafka.delivery_timeout_ms",
        "delivery.timeout.ms": "kafka.delivery_timeout_ms",
    ]

    private static func directoryProblem(_ dir: String) -> String? {
        guard !dir.isEmpty else { return nil }
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) && isDirectory.boolValue ? nil : "\(dir) is not a directory"
    }
}

/// A constraint between settings (or on a value beyond its type and range).
struct ConfigurationRule: Sendable {
    let path: String
    let problem: @Sendable (BlendConfiguration) -> String?

    init(_ path: String, _ problem: @escaping @Sendable (BlendConfiguration) -> String?) {
        self.path = path
        self.problem = problem
    }
}

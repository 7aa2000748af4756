/// Everything a worker or supervisor process needs, with production defaults. Read by
/// `ConfigurationLoader` from a YAML file, then `BLENDD_*` environment variables, then flags.
public struct BlendConfiguration: Sendable, Equatable {
    public struct Kafka: Sendable, Equatable {
        public init() {}

        public var bootstrapServers = "localhost:9092"
        public var groupId = "blendd"
        public var jobsTopic = "blend.jobs"
        public var eventsTopic = "blend.events"
        public var dlqTopic = "blend.jobs.dlq"
        /// Any librdkafka property (security.protocol, sasl.*, ssl.*, …), passed through as is.
        public var properties: [String: String] = [:]
        /// Messages, and megabytes of keys, values and headers, buffered ahead of the pipeline before the
        /// consumer pauses fetching (either bound pauses it). Pausing drops what librdkafka had fetched
        /// ahead, and fetching again after the resume took 0.2–0.5 s on the embedded broker: enough
        /// messages must be left at the resume (half the bound) to outlast that.
        public var maxBufferedMessages = 10_000
        public var maxBufferedMegabytes = 64
        /// A member silent for this long leaves the group and its partitions move (librdkafka's
        /// 45 s default left a killed worker's partitions idle for that long). 6 s is the
        /// smallest a broker accepts by default (`group.min.session.timeout.ms`).
        public var sessionTimeoutMilliseconds = 6000
        public var heartbeatIntervalMilliseconds = 1000
        /// Joins the group as a static member (`group.instance.id` = worker id), so a restart
        /// within the session timeout gets its partitions back without a rebalance.
        public var staticMembership = false
        /// How long the producer tries to deliver a message before failing it; shorter than the
        /// outbox claim, so a claim never expires while its message may still be delivered.
        public var deliveryTimeoutMilliseconds = 20000
    }

    public struct Postgres: Sendable, Equatable {
        public init() {}

        public var url = "postgresql://localhost:5432/blendd"
        public var poolSize = 4
        /// Longest a statement may run before the server cancels it (0 = no limit).
        public var statementTimeoutMilliseconds = 30000
        /// TCP keepalive idle time of every connection; a black-holed server is noticed within about twice this.
        public var keepaliveSeconds = 15
    }

    public struct Models: Sendable, Equatable {
        public init() {}

        /// Directory of a PairRM checkpoint; empty = the weight-free consensus ranker.
        public var ranker = ""
        /// Further rankers by name (name → checkpoint directory); a job picks one with `rank.model`.
        public var rankers: [String: String] = [:]
        /// The ranker of jobs that name none: a key of `rankers`, or `default` for `models.ranker`.
        /// Empty: `default` when `models.ranker` is set or no ranker is named, else the only named one.
        public var defaultRanker = ""
        /// Directory of a GenFuser checkpoint; empty = the top-ranked candidate is returned.
        public var fuser = ""
        /// Compute threads for inference; 0 = one per core.
        public var threads = 0
        /// Arithmetic of the PairRM ranker and of the GenFuser (fp32 is exact to the reference).
        public var rankerPrecision = ModelPrecision.fp32
        public var fuserPrecision = ModelPrecision.fp32
    }

    /// fp32: the reference's arithmetic. bf16: weights and activations rounded to bfloat16, float32 sums
    /// (AVX512-BF16; elsewhere bf16 weights with float32 math). int8: int8 weights (one scale per output channel)
    /// times activations quantized per row, int32 sums, as CTranslate2's int8.
    public enum ModelPrecision: String, Sendable, CaseIterable { case fp32, bf16, int8 }

    public struct Batching: Sendable, Equatable {
        public init() {}

        /// Jobs gathered into one micro-batch.
        public var maxJobs = 8
        /// Pair sequences in one ranker forward pass.
        public var maxPairs = 32
        /// Tokens (sequences × padded length) in one forward pass; bounds memory.
        public var maxTokens = 32768
        /// How long the first job of a batch waits for company.
        public var maxWaitMilliseconds = 50
        /// Fusions decode in one running batch across micro-batches (jobs join and leave between decoder
        /// steps); false: each micro-batch's fusions decode together and the next batch waits for them.
        public var continuousFusion = true
        /// Fusions in flight with continuous fusion; consuming pauses while this many are unfinished.
        public var maxFusingJobs = 32
    }

    public struct Retry: Sendable, Equatable {
        public init() {}

        public var initialMilliseconds = 200
        public var maxMilliseconds = 30000
        public var multiplier = 2.0
        /// Fraction of each delay drawn at random, so a fleet does not retry in lockstep.
        public var jitter = 0.2
    }

    public struct Outbox: Sendable, Equatable {
        public init() {}

        /// The relay's first idle interval (it wakes on NOTIFY and stored batches, and when a retry falls due).
        public var pollMilliseconds = 200
        /// The longest idle interval: the idle interval doubles up to this while nothing happens.
        public var maxIdleMilliseconds = 30000
        public var batchSize = 100
        /// How long a relay holds the outbox rows it is publishing before another may take them.
        public var claimSeconds = 30.0
    }

    public struct Supervisor: Sendable, Equatable {
        public init() {}

        public var workers = 1
        public var listen = "127.0.0.1:9464"
        public var heartbeatSeconds = 2.0
        public var heartbeatTimeoutSeconds = 15.0
        /// A worker that makes no progress for this long while its partitions have lag is replaced.
        public var stallSeconds = 300.0
        /// Resident memory above which a worker is replaced; 0 = no limit.
        public var memoryLimitMegabytes = 0
        public var restartInitialMilliseconds = 500
        public var restartMaxMilliseconds = 30000
        /// Restarts within `crashLoopWindowSeconds` after which the supervisor reports itself degraded.
        public var crashLoopRestarts = 5
        public var crashLoopWindowSeconds = 60.0
        /// Seconds after which rows of workers that stopped heartbeating are deleted.
        public var deadWorkerRetentionSeconds = 3600.0
    }

    public enum LogFormat: String, Sendable, CaseIterable { case text, json }

    public var workerId = ""
    /// Where a worker serves its own /healthz, /readyz and /metrics (host:port); empty = not at all.
    /// For a worker run without a supervisor, e.g. one per Kubernetes pod.
    public var workerListen = ""
    public var kafka = Kafka()
    public var postgres = Postgres()
    public var models = Models()
    public var batching = Batching()
    public var limits = JobLimits.defaults
    public var retry = Retry()
    public var outbox = Outbox()
    /// Seconds a stopping worker may spend finishing its batch before abandoning it uncommitted.
    public var drainSeconds = 30.0
    public var supervisor = Supervisor()
    public var logLevel = "info"
    public var logFormat = LogFormat.text

    public init() {}
}

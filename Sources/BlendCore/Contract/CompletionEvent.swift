import Foundation

/// The CloudEvents 1.0 structured-mode event a worker publishes on the events topic
/// (key = job id) once a job's outcome is stored. `schemas/event.schema.json` describes it.
public struct CompletionEvent: Sendable, Equatable, Codable {
    public var specversion: String = "1.0"
    /// Stable per job outcome (`<job_id>/<status>`), so consumers can drop duplicates.
    public var id: String
    /// `blendd/<worker-id>`.
    public var source: String
    public var type: String
    /// RFC 3339 with milliseconds, UTC.
    public var time: String
    /// The job id.
    public var subject: String
    public var datacontenttype: String = "application/json"
    public var data: EventData

    public init(data: EventData, workerId: String, time: Date) {
        self.id = Self.eventId(jobId: data.jobId, status: data.status)
        self.source = "blendd/\(workerId)"
        self.type = data.status == .completed ? (data.task ?? .blend).completedEventType : data.status.eventType
        self.time = Self.timestamp(time)
        self.subject = data.jobId
        self.data = data
    }

    public static func eventId(jobId: String, status: JobStatus) -> String { "\(jobId)/\(status.rawValue)" }

    public static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
    }

    /// Encoded as compact JSON with sorted keys, so the same outcome always gives the same bytes.
    /// The metadata is written exactly as the job wrote it (numbers as their literal text),
    /// which an `Encoder` cannot do, so it is set into the encoded event afterwards.
    public func jsonBytes() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let metadata = data.metadata else { return Array(try encoder.encode(self)) }
        var plain = self
        plain.data.metadata = nil
        let encoded = try JSONParser.parse(Array(try encoder.encode(plain))).value
        guard let body = encoded["data"] else { return Array(try encoder.encode(self)) }
        return Array(encoded.insertingSorted("data", body.insertingSorted("metadata", metadata)).serialized().utf8)
    }

    /// Violations an event carries at most; the rest are counted in `violations_omitted`, so an
    /// event stays small whatever the rejected message held (the job row keeps them all).
    public static let maxViolations = 50
}

public struct EventData: Sendable, Equatable, Codable {
    public struct RankedCandidate: Sendable, Equatable, Codable {
        /// Position of the candidate in the job.
        public var index: Int
        public var model: String
        /// 1 = best; ties share the best rank.
        public var rank: Int
        public var score: Double
        public init(index: Int, model: String, rank: Int, score: Double) {
            self.index = index; self.model = model; self.rank = rank; self.score = score
        }
    }

    public struct Fusion: Sendable, Equatable, Codable {
        public var text: String
        /// The fuser that wrote it; `top1` when no fuser is configured and the best candidate is returned.
        public var fuser: String
        public var topK: Int
        /// Candidate indexes given to the fuser, best first.
        public var sourceIndexes: [Int]
        public var generatedTokens: Int
        public init(text: String, fuser: String, topK: Int, sourceIndexes: [Int], generatedTokens: Int) {
            self.text = text; self.fuser = fuser; self.topK = topK; self.sourceIndexes = sourceIndexes; self.generatedTokens = generatedTokens
        }
        enum CodingKeys: String, CodingKey {
            case text, fuser, topK = "top_k", sourceIndexes = "source_indexes", generatedTokens = "generated_tokens"
        }
    }

    public struct KafkaCoordinates: Sendable, Equatable, Codable {
        public var topic: String
        public var partition: Int
        public var offset: Int64
        public init(topic: String, partition: Int, offset: Int64) { self.topic = topic; self.partition = partition; self.offset = offset }
    }

    /// A compare job's verdicts, per pair in the job's order.
    public struct CompareResult: Sendable, Equatable, Codable {
        public struct Pair: Sendable, Equatable, Codable {
            /// Position of the pair (or conversation pair) in the job.
            public var index: Int
            public var logit: Double
            public var referenceLogit: Double
            public var probability: Double
            public var verdict: PairJudgement.Verdict
            public init(index: Int, _ j: PairJudgement) {
                self.index = index; logit = Double(j.logit); referenceLogit = Double(j.referenceLogit)
                probability = j.probability; verdict = j.verdict
            }
            enum CodingKeys: String, CodingKey { case index, logit, referenceLogit = "reference_logit", probability, verdict }
        }
        public var mode: CompareMode
        public var pairs: [Pair]
        public var forwardPasses: Int
        public init(mode: CompareMode, pairs: [Pair], forwardPasses: Int) { self.mode = mode; self.pairs = pairs; self.forwardPasses = forwardPasses }
        enum CodingKeys: String, CodingKey { case mode, pairs, forwardPasses = "forward_passes" }
    }

    /// The candidate a best_of_n / worst_of_n job chose.
    public struct Selection: Sendable, Equatable, Codable {
        public var goal: BubbleTournament.Goal
        public var method: SelectMethod
        public var index: Int
        public var model: String
        /// Bubble: [winner] + the losers in elimination order (first eliminated first), the reference's `return_all`.
        public var eliminationOrder: [Int]?
        /// Full: every candidate's MaxLogits score (the pointwise model's score, the consensus utility).
        public var scores: [Double]?
        public var forwardPasses: Int
        public init(goal: BubbleTournament.Goal, method: SelectMethod, index: Int, model: String, eliminationOrder: [Int]?,
                    scores: [Double]?, forwardPasses: Int) {
            self.goal = goal; self.method = method; self.index = index; self.model = model
            self.eliminationOrder = eliminationOrder; self.scores = scores; self.forwardPasses = forwardPasses
        }
        enum CodingKeys: String, CodingKey {
            case goal, method, index, model, eliminationOrder = "elimination_order", scores, forwardPasses = "forward_passes"
        }
    }

    /// A reward job's scalar per candidate against the reference it used.
    public struct RewardResult: Sendable, Equatable, Codable {
        public struct Reference: Sendable, Equatable, Codable {
            /// The rule that chose a candidate, and that candidate's index; or the job's own text.
            public var mode: ReferenceMode?
            public var index: Int?
            public var text: String?
            public init(mode: ReferenceMode? = nil, index: Int? = nil, text: String? = nil) { self.mode = mode; self.index = index; self.text = text }
        }
        public struct Candidate: Sendable, Equatable, Codable {
            public var index: Int
            public var model: String
            /// Positive when the candidate beats the reference.
            public var reward: Double
            public init(index: Int, model: String, reward: Double) { self.index = index; self.model = model; self.reward = reward }
        }
        public var reference: Reference
        public var candidates: [Candidate]
        public var forwardPasses: Int
        public init(reference: Reference, candidates: [Candidate], forwardPasses: Int) {
            self.reference = reference; self.candidates = candidates; self.forwardPasses = forwardPasses
        }
        enum CodingKeys: String, CodingKey { case reference, candidates, forwardPasses = "forward_passes" }
    }

    public var jobId: String
    /// The job kind; absent for blend jobs (and for rejected messages), whose events keep their shape.
    public var task: JobTask?
    public var status: JobStatus
    public var ranking: [RankedCandidate]?
    public var compare: CompareResult?
    public var selection: Selection?
    public var reward: RewardResult?
    public var fused: Fusion?
    public var error: String?
    public var violations: [Violation]?
    /// Milliseconds per stage: queue, rank, fuse, store.
    public var timingsMs: [String: Double]?
    /// The ranker and fuser labels (model name and version, or the weight-free fallbacks).
    public var models: [String: String]?
    /// Exactly as the job wrote it.
    public var metadata: ExactJSON?
    public var kafka: KafkaCoordinates?
    /// Violations left out of `violations` (beyond `CompletionEvent.maxViolations`).
    public var violationsOmitted: Int?

    public init(jobId: String, status: JobStatus, ranking: [RankedCandidate]? = nil, fused: Fusion? = nil,
                error: String? = nil, violations: [Violation]? = nil, timingsMs: [String: Double]? = nil,
                models: [String: String]? = nil, metadata: ExactJSON? = nil, kafka: KafkaCoordinates? = nil) {
        self.jobId = jobId; self.status = status; self.ranking = ranking; self.fused = fused; self.error = error
        if let violations, violations.count > CompletionEvent.maxViolations {
            self.violations = Array(violations.prefix(CompletionEvent.maxViolations))
            self.violationsOmitted = violations.count - CompletionEvent.maxViolations
        } else {
            self.violations = violations
        }
         self.timingsMs = timingsMs; self.models = models; self.metadata = metadata; self.kafka = kafka
    }

    enum CodingKeys: String, CodingKey {
        case jobId = "job_id", task, status, ranking, fused, error, violations, timingsMs = "timings_ms", models, metadata, kafka
        case compare, selection, reward
        case violationsOmitted = "violations_omitted"
    }
}

import BlendCore
import Foundation
import Inference

/// Where a message came from on Kafka; offsets are committed from these once stored.
public struct MessageCoordinates: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    /// The id given to a rejected message whose job_id could not be read. The `/` lies outside
    /// the job id alphabet [A-Za-z0-9._:-], so no valid job can ever claim it.
    public var syntheticJobId: String { "kafka/\(topic)/\(partition)/\(offset)" }
}

/// A jobs-topic message as the pipeline sees it.
public struct IncomingMessage: Sendable {
    public var coordinates: MessageCoordinates
    public var key: [UInt8]?
    /// nil for a null record value; kept apart from empty so the dead-letter copy is exact.
    public var value: [UInt8]?
    /// The broker's (or producer's) timestamp, for queue-time metrics.
    public var timestamp: Date?

    public init(coordinates: MessageCoordinates, key: [UInt8]?, value: [UInt8]?, timestamp: Date?) {
        self.coordinates = coordinates
        self.key = key
        self.value = value
        self.timestamp = timestamp
    }
}

/// What the pipeline decided for one message: everything the result store writes and the
/// event the outbox will publish.
public struct JobOutcome: Sendable {
    public enum Kind: Sendable {
        /// A new outcome to store (completed, failed or rejected).
        case outcome(status: JobStatus)
        /// The job's results already exist (a redelivery or a duplicate in the batch): acknowledge only.
        case alreadyStored
    }

    public var kind: Kind
    public var jobId: String
    public var message: IncomingMessage
    /// nil for rejected messages.
    public var job: BlendJob?
    public var rejection: JobRejection?
    public var rank: RankedJob?
    /// The answer of a compare, best/worst-of-n or reward job, exactly as its event carries it.
    public var compare: EventData.CompareResult?
    public var selection: EventData.Selection?
    public var reward: EventData.RewardResult?
    public var fusion: EventData.Fusion?
    public var error: String?
    public var timingsMs: [String: Double]
    public var models: [String: String]
    /// The completion event, identical to the outbox row's payload.
    public var event: CompletionEvent?
    /// The fusion still to run when the processor deferred it; the outcome is not final until then.
    public var pendingFusion: FuseRequest?

    public var status: JobStatus? {
        if case .outcome(let status) = kind { return status }
        return nil
    }
}

/// A job's ranking as stored: per-candidate ranks and scores, and the comparison matrix
/// when the mode computed one.
public struct RankedJob: Sendable, Equatable {
    public var ranks: [Int]
    public var scores: [Float]
    public var comparisons: ComparisonMatrix?
    public var ranker: String
    /// Model forward passes spent on the job (0 for the weight-free ranker).
    public var forwardPasses: Int = 0
}

/// The outcome stored for a job and announced in its event.
public enum JobStatus: String, Sendable, Codable, CaseIterable {
    case completed, failed, rejected

    /// The CloudEvents `type` announcing this outcome.
    public var eventType: String { "blend.job.\(rawValue)" }
}

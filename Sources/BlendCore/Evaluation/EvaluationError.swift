/// Why a MixInstruct file cannot be evaluated as given, naming the record.
public struct EvaluationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var recordId: String
    public var message: String

    public init(recordId: String, message: String) {
        self.recordId = recordId
        self.message = message
    }

    public var description: String { "record \(recordId): \(message)" }
}

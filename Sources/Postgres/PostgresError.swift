/// A failure talking to PostgreSQL, with what a log line needs to act on it: the SQLSTATE,
/// the server's message and detail, and the first line of the statement.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// Could not connect, or the connection broke.
        case connection
        /// The server refused the statement (sqlState says why).
        case server
        /// A parameter cannot be sent (e.g. a NUL byte in text).
        case invalidParameter
        /// A result column could not be read as the requested type.
        case decoding
        /// A migration file is missing, malformed, or was edited after it was applied.
        case migration
    }

    public var kind: Kind
    /// Five-character SQLSTATE from the server (e.g. 23505), when the server sent one.
    public var sqlState: String?
    public var message: String
    public var detail: String?
    /// The first line of the statement, for context (never the parameter values).
    public var statement: String?

    public init(_ kind: Kind, sqlState: String? = nil, message: String, detail: String? = nil, statement: String? = nil) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.statement = statement
    }

    /// Worth retrying after a pause: the connection failed, the server is shutting down or
    /// out of connections, or the transaction lost a serialization race or a deadlock.
    public var isTransient: Bool {
        if kind == .connection { return true }
        guard let s = sqlState else { return false }
        return s.hasPrefix("08") || ["40001", "40P01", "57P01", "57P02", "57P03", "53300", "53400"].contains(s)
    }

    public var description: String {
        var text = "postgres \(kind.rawValue) error"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        if let detail, !detail.isEmpty { text += " (\(detail))" }
        if let statement { text += " in \"\(statement)\"" }
        return text
    }
}

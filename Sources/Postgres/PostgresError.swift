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
    /// out of connections, a statement timed out, or the transaction lost a serialization race
    /// or a deadlock. A refusal that no retry can change (`isPermanent`) is never transient.
    public var isTransient: Bool {
        if isPermanent { return false }
        if kind == .connection { return true }
        guard let s = sqlState else { return false }
        return s.hasPrefix("08") || ["40001", "40P01", "57P01", "57P02", "57P03", "57014", "53300", "53400"].contains(s)
    }

    /// The server refuses us for good: wrong credentials or no such role (28…), no such
    /// database (3D000), or no permission (42501). Retrying only hides the misconfiguration.
    public var isPermanent: Bool {
        guard let s = sqlState else { return false }
        return s.hasPrefix("28") || s == "3D000" || s == "42501"
    }

    /// libpq reports a failed connection as text only; the server's SQLSTATE is recovered from
    /// its (English) message for the refusals that are permanent.
    static func connectFailureState(_ message: String) -> String? {
        let patterns: [(String, String)] = [
            ("password authentication failed", "28P01"), ("no password supplied", "28P01"),
            ("authentication failed", "28000"), ("no pg_hba.conf entry", "28000"),
            ("role \"", "28000"), ("database \"", "3D000"), ("permission denied", "42501"),
        ]
        for (needle, state) in patterns where message.contains(needle) {
            // "role …" and "database …" are permanent only when they do not exist.
            if needle.hasSuffix("\""), !message.contains("does not exist") { continue }
            return state
        }
        return nil
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

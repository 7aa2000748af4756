/// A statement whose interpolated values become bound parameters ($1, $2, …), so values are
/// never spliced into SQL text:
///
///     try await connection.query("SELECT * FROM jobs WHERE job_id = \(id) AND status = \(status)")
///
/// Only identifiers (e.g. a database name, which cannot be a parameter) may be interpolated
/// into the text, quoted, with `\(identifier: name)`. Queries concatenate with `+` / `append`,
/// their parameters renumbered, so one statement can be assembled from parts.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The SQL around the parameters: `literals[i]` precedes parameter i + 1; one more literal than parameters.
    private var literals: [String]
    public private(set) var parameters: [String?]

    public init(stringLiteral value: String) {
        literals = [value]
        parameters = []
    }

    public init(stringInterpolation: StringInterpolation) {
        literals = stringInterpolation.literals
        parameters = stringInterpolation.parameters
    }

    /// SQL without parameters (migration files, DDL).
    public init(unsafeSQL sql: String) {
        literals = [sql]
        parameters = []
    }

    /// The text sent to the server, parameters numbered in order.
    public var sql: String {
        var text = literals[0]
        for i in parameters.indices {
            text += "$\(i + 1)"
            text += literals[i + 1]
        }
        return text
    }

    /// Appends `other`, its parameters numbered after this query's.
    public mutating func append(_ other: PostgresQuery) {
        literals[literals.count - 1] += other.literals[0]
        literals.append(contentsOf: other.literals.dropFirst())
        parameters.append(contentsOf: other.parameters)
    }

    public static func + (lhs: PostgresQuery, rhs: PostgresQuery) -> PostgresQuery {
        var joined = lhs
        joined.append(rhs)
        return joined
    }

    public static func += (lhs: inout PostgresQuery, rhs: PostgresQuery) {
        lhs.append(rhs)
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var literals = [""]
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            literals.reserveCapacity(interpolationCount + 1)
        }

        public mutating func appendLiteral(_ literal: String) { literals[literals.count - 1] += literal }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            literals.append("")
        }

        /// nil binds SQL NULL.
        public mutating func appendInterpolation<T: PostgresEncodable>(_ value: T?) {
            parameters.append(value?.postgresText)
            literals.append("")
        }

        /// A quoted identifier: embedded double quotes are doubled, as SQL requires.
        public mutating func appendInterpolation(identifier: String) {
            literals[literals.count - 1] += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }

        /// A nested query: its SQL in place, its parameters renumbered after those before it.
        public mutating func appendInterpolation(_ query: PostgresQuery) {
            literals[literals.count - 1] += query.literals[0]
            literals.append(contentsOf: query.literals.dropFirst())
            parameters.append(contentsOf: query.parameters)
        }
    }

    /// The statement's first line, trimmed: enough to recognise it in a log.
    public var firstLine: String {
        let line = sql.split(whereSeparator: \.isNewline).first { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        let trimmed = line.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return trimmed.count > 120 ? String(trimmed.prefix(117)) + "..." : trimmed
    }

    public var description: String { firstLine }
}

/// A statement whose interpolated values become bound parameters ($1, $2, …), so values are
/// never spliced into SQL text:
///
///     try await connection.query("SELECT * FROM jobs WHERE job_id = \(id) AND status = \(status)")
///
/// Only identifiers (e.g. a database name, which cannot be a parameter) may be interpolated
/// into the text, quoted, with `\(identifier: name)`.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public private(set) var sql: String
    public private(set) var parameters: [String?]

    public init(stringLiteral value: String) {
        sql = value
        parameters = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        parameters = stringInterpolation.parameters
    }

    /// SQL without parameters (migration files, DDL).
    public init(unsafeSQL sql: String) {
        self.sql = sql
        parameters = []
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
        }

        public mutating func appendLiteral(_ literal: String) { sql += literal }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            sql += "$\(parameters.count)"
        }

        /// nil binds SQL NULL.
        public mutating func appendInterpolation<T: PostgresEncodable>(_ value: T?) {
            parameters.append(value?.postgresText)
            sql += "$\(parameters.count)"
        }

        /// A quoted identifier: embedded double quotes are doubled, as SQL requires.
        public mutating func appendInterpolation(identifier: String) {
            sql += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
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

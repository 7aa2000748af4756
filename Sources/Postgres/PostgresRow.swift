/// One result row in text format, read by column name or position into Swift types.
public struct PostgresRow: Sendable {
    public let columns: [String]
    public let values: [String?]
    let statement: String

    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let index = columns.firstIndex(of: column) else {
            throw PostgresError(.decoding, message: "no column \(column) in the result (columns: \(columns.joined(separator: ", ")))",
                                statement: statement)
        }
        return try decode(index, as: type)
    }

    public func decode<T: PostgresDecodable>(_ index: Int, as type: T.Type = T.self) throws -> T {
        guard values.indices.contains(index) else {
            throw PostgresError(.decoding, message: "no column #\(index) in a result of \(values.count) columns", statement: statement)
        }
        do {
            return try T.decode(postgresText: values[index])
        } catch {
            throw PostgresError(.decoding, message: "column \(columns[index]) as \(T.self): \(error.reason)", statement: statement)
        }
    }

    public func isNull(_ column: String) -> Bool {
        columns.firstIndex(of: column).map { values[$0] == nil } ?? true
    }
}

import BlendCore
import CLibPQ
import Dispatch
import Foundation

/// One libpq connection. Every blocking libpq call runs on the connection's own serial
/// dispatch queue, never on Swift's cooperative pool, so a slow query cannot starve other tasks.
///
/// A connection is used by one task at a time (the pool hands it out exclusively); the serial
/// queue is what makes sharing the `PGconn` pointer across threads sound, hence `@unchecked Sendable`.
public final class PostgresConnection: @unchecked Sendable {
    private let conn: OpaquePointer
    private let queue: DispatchQueue
    /// Where it connected, with the password masked, for messages.
    public let target: String
    private var closed = false

    private init(conn: OpaquePointer, queue: DispatchQueue, target: String) {
        self.conn = conn
        self.queue = queue
        self.target = target
    }

    deinit {
        if !closed { PQfinish(conn) }
    }

    /// How a connection guards against a dead or black-holed server.
    public struct Options: Sendable, Equatable {
        /// Longest a statement may run before the server cancels it (0 = no limit).
        public var statementTimeoutMilliseconds: Int
        /// TCP keepalive idle time; probes follow every third of it, and the connection is
        /// declared dead after three unanswered probes (and unacknowledged data after twice the
        /// idle time), so a silent network partition surfaces as an error instead of a hang.
        public var keepaliveSeconds: Int
        public var connectTimeoutSeconds: Int
        public var applicationName: String

        public init(statementTimeoutMilliseconds: Int = 30_000, keepaliveSeconds: Int = 15, connectTimeoutSeconds: Int = 10,
                    applicationName: String = "blendd") {
            self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
            self.keepaliveSeconds = keepaliveSeconds
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.applicationName = applicationName
        }

        /// libpq connection keywords; the URL's own settings (expanded from dbname) override them.
        var conninfoDefaults: [(String, String)] {
            let idle = max(1, keepaliveSeconds)
            return [("connect_timeout", String(connectTimeoutSeconds)), ("fallback_application_name", applicationName),
                    ("keepalives", "1"), ("keepalives_idle", String(idle)), ("keepalives_interval", String(max(1, idle / 3))),
                    ("keepalives_count", "3"), ("tcp_user_timeout", String(idle * 2000))]
        }
    }

    /// Connects with a `postgresql://` URL or a `key=value` conninfo string.
    public static func connect(_ urlOrConninfo: String, options: Options = Options()) async throws -> PostgresConnection {
        let target = maskedTarget(urlOrConninfo)
        let queue = DispatchQueue(label: "blendd.postgres.connection")
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    let conn = try openSync(urlOrConninfo, options: options, target: target)
                    let connection = PostgresConnection(conn: conn, queue: queue, target: target)
                    var setup = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET client_encoding = 'UTF8'"
                    setup += "; SET statement_timeout = \(max(0, options.statementTimeoutMilliseconds))"
                    _ = try connection.runSync(PostgresQuery(unsafeSQL: setup), script: true)
                    continuation.resume(returning: connection)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Connects with the default guards under another application name.
    public static func connect(_ urlOrConninfo: String, applicationName: String) async throws -> PostgresConnection {
        try await connect(urlOrConninfo, options: Options(applicationName: applicationName))
    }

    /// A blocking libpq connect; call it off Swift's cooperative pool.
    static func openSync(_ urlOrConninfo: String, options: Options, target: String) throws -> OpaquePointer {
        let defaults = options.conninfoDefaults
        let keywords = defaults.map(\.0) + ["dbname"]
        let values = defaults.map(\.1) + [urlOrConninfo]
        let conn = withCStrings(keywords) { k in withCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let conn else {
            throw PostgresError(.connection, message: "out of memory allocating a connection to \(target)")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = errorMessage(conn)
            let sqlState = PQconnectionNeedsPassword(conn) == 1 ? "28P01" : PostgresError.connectFailureState(message)
            PQfinish(conn)
            throw PostgresError(.connection, sqlState: sqlState, message: "cannot connect to \(target): \(message)")
        }
        PQsetNoticeProcessor(conn, { _, _ in }, nil)  // notices ("already exists, skipping") are not errors
        return conn
    }

    /// Rows of a statement whose values are all bound parameters.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await run(query, script: false).rows
    }

    /// Runs a statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ query: PostgresQuery) async throws -> Int {
        try await run(query, script: false).affected
    }

    /// Runs a parameterless script of several statements (a migration file) in one round trip.
    public func executeScript(_ sql: String) async throws {
        _ = try await run(PostgresQuery(unsafeSQL: sql), script: true)
    }

    /// BEGIN … COMMIT around `body`; any error thrown inside rolls everything back.
    @discardableResult
    public func transaction<T>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await execute("BEGIN")
        let value: T
        do {
            value = try await body(self)
        } catch {
            // A broken connection has already lost the transaction; the original error is what matters.
            _ = try? await execute("ROLLBACK")
            throw error
        }
        try await execute("COMMIT")
        return value
    }

    /// False once the connection is known to be broken; reads pending input (e.g. the
    /// server's goodbye after a restart) without blocking, so a dead idle connection is noticed.
    public var isUsable: Bool {
        get async {
            await withCheckedContinuation { continuation in
                queue.async {
                    guard !self.closed else { return continuation.resume(returning: false) }
                    // A server that shut down sent an error message and then closed: the first
                    // read takes the message, a further read meets end-of-file and marks the
                    // connection bad. Read while the socket has something to give.
                    for _ in 0..<4 {
                        guard PQconsumeInput(self.conn) == 1 else { break }
                        var fd = pollfd(fd: PQsocket(self.conn), events: Int16(POLLIN), revents: 0)
                        guard poll(&fd, 1, 0) > 0 else { break }
                    }
                    continuation.resume(returning: PQstatus(self.conn) == CONNECTION_OK)
                }
            }
        }
    }

    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                if !self.closed {
                    PQfinish(self.conn)
                    self.closed = true
                }
                continuation.resume()
            }
        }
    }

    // MARK: - libpq calls (on `queue` only)

    private struct Outcome {
        var rows: [PostgresRow]
        var affected: Int
    }

    private func run(_ query: PostgresQuery, script: Bool) async throws -> Outcome {
        for (i, p) in query.parameters.enumerated() where p.map(Self.containsNul) == true {
            throw PostgresError(.invalidParameter, message: "parameter $\(i + 1) contains a NUL byte, which PostgreSQL text cannot hold",
                                statement: query.firstLine)
        }
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do { continuation.resume(returning: try self.runSync(query, script: script)) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    /// A batch's parameters run to megabytes: scanned with memchr over the string's UTF-8 storage.
    static func containsNul(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in bytes.count > 0 && memchr(bytes.baseAddress!, 0, bytes.count) != nil }
    }

    private func runSync(_ query: PostgresQuery, script: Bool) throws -> Outcome {
        guard !closed else { throw PostgresError(.connection, message: "the connection to \(target) is closed", statement: query.firstLine) }
        let result: OpaquePointer?
        if script {
            result = PQexec(conn, query.sql)
        } else {
            result = withOptionalCStrings(query.parameters) { values in
                PQexecParams(conn, query.sql, Int32(query.parameters.count), nil, values, nil, nil, 0)
            }
        }
        guard let result else {
            throw PostgresError(.connection, message: "no result from \(target): \(Self.errorMessage(conn))", statement: query.firstLine)
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return Outcome(rows: [], affected: Int(String(cString: PQcmdTuples(result))) ?? 0)
        case PGRES_TUPLES_OK:
            return Outcome(rows: Self.rows(of: result, statement: query.firstLine), affected: Int(PQntuples(result)))
        default:
            let sqlState = Self.field(result, Self.diagSQLState)
            let message = Self.field(result, Self.diagMessage) ?? Self.errorMessage(conn)
            let kind: PostgresError.Kind = PQstatus(conn) == CONNECTION_OK ? .server : .connection
            throw PostgresError(kind, sqlState: sqlState, message: message, detail: Self.field(result, Self.diagDetail),
                                statement: query.firstLine)
        }
    }

    private static func rows(of result: OpaquePointer, statement: String) -> [PostgresRow] {
        let rowCount = PQntuples(result), columnCount = PQnfields(result)
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        return (0..<rowCount).map { r in
            let values: [String?] = (0..<columnCount).map { c in
                PQgetisnull(result, r, c) == 1 ? nil : String(cString: PQgetvalue(result, r, c))
            }
            return PostgresRow(columns: columns, values: values, statement: statement)
        }
    }

    // libpq's PG_DIAG_* are character macros, which Swift does not import.
    private static let diagSQLState = Int32(UInt8(ascii: "C"))
    private static let diagMessage = Int32(UInt8(ascii: "M"))
    private static let diagDetail = Int32(UInt8(ascii: "D"))

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        PQresultErrorField(result, code).map { String(cString: $0) }
    }

    static func errorMessage(_ conn: OpaquePointer) -> String {
        let text = PQerrorMessage(conn).map { String(cString: $0) } ?? "unknown error"
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }

    /// The URL or conninfo with any password replaced, safe for logs.
    static func maskedTarget(_ s: String) -> String { ConfigurationLoader.mask(s) }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    withOptionalCStrings(strings.map(Optional.some)) { body($0!) }
}

/// Passes strings to C as a NULL-terminated array of C strings; nil entries stay NULL (SQL NULL).
private func withOptionalCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let duplicated: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { duplicated.forEach { free($0) } }
    let pointers = duplicated.map { UnsafePointer($0) } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}

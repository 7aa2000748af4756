import Foundation

/// Applies the numbered SQL files of a directory (`0001_initial.sql`, `0002_….sql`) in order,
/// each in its own transaction, under a PostgreSQL advisory lock so that many processes
/// starting at once apply each file exactly once. Every applied file is recorded with its
/// SHA-256; a recorded file whose content changed is refused, since the database no longer
/// matches what the file says.
public struct MigrationRunner: Sendable {
    public struct Migration: Sendable, Equatable {
        public let version: Int
        public let name: String
        public let sql: String
    }

    public enum Result: Sendable, Equatable {
        case applied(String)
        case alreadyApplied(String)
    }

    /// Arbitrary but fixed: every blendd process contends for the same lock.
    public static let advisoryLockKey: Int64 = 0x626C_656E_6464  // "blendd"

    public let migrations: [Migration]

    public init(migrations: [Migration]) { self.migrations = migrations }

    /// Reads `NNNN_name.sql` files; anything else in the directory is ignored, but two
    /// files with one number, or a gap-free ordering problem, is an error.
    public init(directory: String) throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw PostgresError(.migration, message: "cannot read the migrations directory \(directory)")
        }
        var found: [Migration] = []
        for name in names.sorted() where name.hasSuffix(".sql") {
            let digits = name.prefix { $0.isNumber }
            guard !digits.isEmpty, let version = Int(digits), name.dropFirst(digits.count).hasPrefix("_") else {
                throw PostgresError(.migration, message: "migration file \(name) must be named NNNN_description.sql")
            }
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw PostgresError(.migration, message: "cannot read migration \(path)")
            }
            if let clash = found.first(where: { $0.version == version }) {
                throw PostgresError(.migration, message: "migrations \(clash.name) and \(name) share the number \(version)")
            }
            found.append(Migration(version: version, name: name, sql: String(decoding: data, as: UTF8.self)))
        }
        guard !found.isEmpty else { throw PostgresError(.migration, message: "no NNNN_*.sql files in \(directory)") }
        self.migrations = found.sorted { $0.version < $1.version }
    }

    /// Applies what is pending; returns what happened to each file, in order.
    public func run(on connection: PostgresConnection) async throws -> [Result] {
        try await connection.execute("SELECT pg_advisory_lock(\(Self.advisoryLockKey))")
        do {
            let results = try await applyPending(on: connection)
            try await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))")
            return results
        } catch {
            // The lock dies with the session if this fails too.
            _ = try? await connection.execute("SELECT pg_advisory_unlock(\(Self.advisoryLockKey))")
            throw error
        }
    }

    private func applyPending(on connection: PostgresConnection) async throws -> [Result] {
        try await connection.executeScript("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        var applied: [Int: (name: String, checksum: String)] = [:]
        for row in try await connection.query("SELECT version, name, checksum FROM schema_migrations") {
            applied[try row.decode("version")] = (try row.decode("name"), try row.decode("checksum"))
        }
        var results: [Result] = []
        for migration in migrations {
            let checksum = try await Self.checksum(migration.sql, on: connection)
            if let existing = applied[migration.version] {
                guard existing.checksum == checksum else {
                    throw PostgresError(.migration, message: "\(migration.name) was changed after it was applied (recorded sha256 \(existing.checksum.prefix(12))…, file \(checksum.prefix(12))…); add a new migration instead of editing an applied one")
                }
                results.append(.alreadyApplied(migration.name))
                continue
            }
            do {
                try await connection.transaction { conn in
                    try await conn.executeScript(migration.sql)
                    try await conn.execute("""
                        INSERT INTO schema_migrations (version, name, checksum) VALUES (\(migration.version), \(migration.name), \(checksum))
                        """)
                }
            } catch var error as PostgresError {
                error.message = "\(migration.name): \(error.message)"
                throw error
            }
            results.append(.applied(migration.name))
        }
        return results
    }

    /// SHA-256 computed by the server (PostgreSQL 11+), so no crypto library is needed here.
    static func checksum(_ sql: String, on connection: PostgresConnection) async throws -> String {
        let rows = try await connection.query("SELECT encode(sha256(convert_to(\(sql), 'UTF8')), 'hex') AS sum")
        return try rows[0].decode("sum")
    }
}

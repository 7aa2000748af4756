import BlendTestSupport
import Foundation
import Postgres
import XCTest

final class MigrationRunnerTests: DatabaseTestCase {
    func testMigrationsCreateTheSchemaAndRunningThemAgainIsANoOp() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        let runner = try MigrationRunner(directory: RepositoryLayout.migrations)
        let first = try await runner.run(on: conn)
        XCTAssertEqual(first.first, .applied("0001_initial.sql"))
        let second = try await runner.run(on: conn)
        XCTAssertEqual(second, runner.migrations.map { .alreadyApplied($0.name) })
        let relations = try await conn.query("""
            SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name
            """).map { try $0.decode("table_name", as: String.self) }
        XCTAssertEqual(relations, ["best_of_n_results", "blend_results", "candidates", "compare_results", "comparison_matrices", "comparisons", "fusions",
                                   "jobs", "model_leaderboard", "outbox", "pair_judgements", "reward_references", "reward_results",
                                   "rewards", "schema_migrations", "selections", "workers", "worst_of_n_results"])
        await conn.close()
    }

    func testAnAppliedMigrationThatWasEditedIsRefused() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("0001_first.sql")
        try "CREATE TABLE a (x int);".write(to: file, atomically: true, encoding: .utf8)
        let conn = try await PostgresConnection.connect(db.url)
        _ = try await MigrationRunner(directory: dir.path).run(on: conn)

        try "CREATE TABLE a (x bigint);".write(to: file, atomically: true, encoding: .utf8)
        do {
            _ = try await MigrationRunner(directory: dir.path).run(on: conn)
            XCTFail("an edited migration must be refused")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .migration)
            XCTAssertTrue(error.message.hasPrefix("0001_first.sql was changed after it was applied"), error.message)
        }
        await conn.close()
    }

    func testAFailingMigrationIsRolledBackAndNamed() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "CREATE TABLE ok (x int);".write(to: dir.appendingPathComponent("0001_ok.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE half (x int); SELECT * FROM nowhere;".write(to: dir.appendingPathComponent("0002_bad.sql"), atomically: true, encoding: .utf8)
        let conn = try await PostgresConnection.connect(db.url)
        do {
            _ = try await MigrationRunner(directory: dir.path).run(on: conn)
            XCTFail("0002 must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42P01")
            XCTAssertTrue(error.message.hasPrefix("0002_bad.sql: "), error.message)
        }
        let tables = try await conn.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('ok', 'half')")
        XCTAssertEqual(try tables[0].decode("n", as: Int.self), 1, "0001 stays applied, 0002 left nothing")
        let recorded = try await conn.query("SELECT version FROM schema_migrations").map { try $0.decode("version", as: Int.self) }
        XCTAssertEqual(recorded, [1])
        await conn.close()
    }

    func testEightConcurrentMigrateProcessesLeaveOneConsistentSchema() async throws {
        let processes = try (0..<8).map { _ -> (Process, Pipe) in
            let p = Process()
            p.executableURL = RepositoryLayout.blenddExecutable
            p.arguments = ["migrate", "--database-url", db.url, "--migrations", RepositoryLayout.migrations]
            let err = Pipe()
            p.standardOutput = FileHandle.nullDevice
            p.standardError = err
            try p.run()
            return (p, err)
        }
        for (p, err) in processes {
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, stderr)
        }
        let conn = try await PostgresConnection.connect(db.url)
        let recorded = try await conn.query("SELECT version, count(*) OVER () AS n FROM schema_migrations ORDER BY version")
        let runner = try MigrationRunner(directory: RepositoryLayout.migrations)
        XCTAssertEqual(try recorded.map { try $0.decode("version", as: Int.self) }, runner.migrations.map(\.version))
        let again = try await runner.run(on: conn)
        XCTAssertEqual(again, runner.migrations.map { .alreadyApplied($0.name) })
        await conn.close()
    }
}

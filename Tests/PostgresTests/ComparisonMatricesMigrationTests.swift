import BlendTestSupport
import Foundation
import Postgres
import XCTest

/// Migration 0004 turns the comparisons table into one matrix row per job behind a view of the
/// same name: rows stored by schema 3 must read back unchanged, through the view and the
/// leaderboard, and a set of rows that is not a whole matrix must stop the migration.
final class ComparisonMatricesMigrationTests: DatabaseTestCase {
    private func schema3WithComparisons(_ rows: [(job: String, a: Int, b: Int, logit: String)]) async throws -> PostgresConnection {
        let conn = try await PostgresConnection.connect(db.url)
        let dir = try migrations(through: 3)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try await MigrationRunner(directory: dir).run(on: conn)
        for job in Set(rows.map(\.job)).sorted() {
            try await conn.execute("INSERT INTO jobs (job_id, status, worker_id) VALUES (\(job), 'completed', 'w')")
            for (i, model) in ["m0", "m1", "m2"].enumerated() {
                try await conn.execute("INSERT INTO candidates (job_id, idx, model, text, rank) VALUES (\(job), \(i), \(model), 'x', \(i + 1))")
            }
        }
        for row in rows {
            try await conn.execute("INSERT INTO comparisons (job_id, a, b, logit) VALUES (\(row.job), \(row.a), \(row.b), \(row.logit)::real)")
        }
        return conn
    }

    private static let viewRows: PostgresQuery = "SELECT row(c.*)::text AS r FROM comparisons c ORDER BY job_id, a, b"
    private static let board: PostgresQuery = "SELECT row(l.*)::text AS r FROM model_leaderboard l"

    func testComparisonsStoredBySchema3ReadBackUnchangedAfterMigration4() async throws {
        // Values at the edges of float4 text: the largest finite, the smallest normal, −0, infinities.
        let values = ["0.1", "-0.33530664", "3.4028235e38", "-0", "Infinity", "-Infinity", "1.17549435e-38", "-2.5", "7"]
        var rows: [(job: String, a: Int, b: Int, logit: String)] = []
        var k = 0
        for job in ["j1", "j2"] {
            for a in 0..<3 {
                for b in 0..<3 where a != b {
                    rows.append((job, a, b, values[k % values.count]))
                    k += 1
                }
            }
        }
        rows.append(("j3", 0, 1, "0.5"))
        rows.append(("j3", 1, 0, "-0.5"))
        let conn = try await schema3WithComparisons(rows.shuffled())
        let before = try await conn.query(Self.viewRows).map { try $0.decode("r", as: String.self) }
        let boardBefore = try await conn.query(Self.board).map { try $0.decode("r", as: String.self) }
        _ = try await MigrationRunner(directory: RepositoryLayout.migrations).run(on: conn)
        let after = try await conn.query(Self.viewRows).map { try $0.decode("r", as: String.self) }
        XCTAssertEqual(after, before)
        XCTAssertEqual(after.count, 6 + 6 + 2)
        let boardAfter = try await conn.query(Self.board).map { try $0.decode("r", as: String.self) }
        XCTAssertEqual(boardAfter, boardBefore)
        let types = try await conn.query("""
            SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'comparisons' ORDER BY ordinal_position
            """).map { "\(try $0.decode("column_name", as: String.self)) \(try $0.decode("data_type", as: String.self))" }
        XCTAssertEqual(types, ["job_id text", "a integer", "b integer", "logit real"])
        let matrices = try await conn.query("SELECT job_id, size FROM comparison_matrices ORDER BY job_id")
        XCTAssertEqual(try matrices.map { try $0.decode("size", as: Int.self) }, [3, 3, 2])
        // Deleting a job still deletes its comparisons.
        try await conn.execute("DELETE FROM jobs WHERE job_id = 'j1'")
        let left = try await conn.query("SELECT count(*) AS n FROM comparisons")[0].decode("n", as: Int.self)
        XCTAssertEqual(left, 8)
        await conn.close()
    }

    func testComparisonRowsThatAreNotAWholeMatrixStopMigration4() async throws {
        // j1 misses the pair (2, 1).
        var rows: [(job: String, a: Int, b: Int, logit: String)] = []
        for a in 0..<3 { for b in 0..<3 where a != b && !(a == 2 && b == 1) { rows.append(("j1", a, b, "0.25")) } }
        let conn = try await schema3WithComparisons(rows)
        do {
            _ = try await MigrationRunner(directory: RepositoryLayout.migrations).run(on: conn)
            XCTFail("an incomplete matrix must stop the migration")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "P0001", "\(error)")
            XCTAssertTrue(error.message.contains("comparisons of job j1 do not form a whole matrix"), error.message)
        }
        let kept = try await conn.query("SELECT count(*) AS n FROM comparisons")[0].decode("n", as: Int.self)
        XCTAssertEqual(kept, 5, "the rows stay where they were")
        await conn.close()
    }

    func testTheMatrixTableRefusesAMatrixOfTheWrongShape() async throws {
        // The table of schema 4 (migration 0005 moves matrices onto the job rows, checked by OutcomeColumnsMigrationTests).
        let conn = try await PostgresConnection.connect(db.url)
        let dir = try migrations(through: 4)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try await MigrationRunner(directory: dir).run(on: conn)
        try await conn.execute("INSERT INTO jobs (job_id, status, worker_id) VALUES ('j', 'completed', 'w')")
        for logits in ["{1,2,3}", "{1,2,3,4,5,NULL}", "{{1,2},{3,4},{5,6}}", "[0:5]={1,2,3,4,5,6}"] {
            do {
                try await conn.execute("INSERT INTO comparison_matrices (job_id, size, logits) VALUES ('j', 3, \(logits)::real[])")
                XCTFail("\(logits) is not a 3-candidate matrix")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "23514", "\(logits): \(error)")
            }
        }
        await conn.close()
    }
}

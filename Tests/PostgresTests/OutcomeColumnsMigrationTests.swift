import BlendTestSupport
import Foundation
import Postgres
import XCTest

/// Migration 0005 moves a job's candidates, comparison matrix and fusion from their tables onto
/// its jobs row, behind views of the old names: rows stored by schema 4 must read back unchanged
/// through every view users query, a job whose candidates are not numbered 0…n − 1 must stop the
/// migration, and the new columns must refuse arrays the tables could not have held.
final class OutcomeColumnsMigrationTests: DatabaseTestCase {
    /// Every relation that reads the moved rows, as text, one line per row in a fixed order.
    private static let relations = [
        "candidates", "comparisons", "comparison_matrices", "fusions", "blend_results", "model_leaderboard",
        "best_of_n_results", "worst_of_n_results", "reward_results", "compare_results",
    ]

    private func snapshot(_ conn: PostgresConnection) async throws -> [String: [String]] {
        var out: [String: [String]] = [:]
        for relation in Self.relations {
            out[relation] = try await conn.query("SELECT row(x.*)::text AS r FROM \(identifier: relation) x ORDER BY 1")
                .map { try $0.decode("r", as: String.self) }
        }
        return out
    }

    /// Column names and types (arrays by element type) of the relations that changed from table to view.
    private func columnTypes(_ conn: PostgresConnection) async throws -> [String] {
        try await conn.query("""
            SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || udt_name AS c FROM information_schema.columns
             WHERE table_name IN ('candidates', 'comparison_matrices', 'fusions', 'comparisons') ORDER BY table_name, ordinal_position
            """).map { try $0.decode("c", as: String.self) }
    }

    private func schema4() async throws -> PostgresConnection {
        let conn = try await PostgresConnection.connect(db.url)
        let dir = try migrations(through: 4)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try await MigrationRunner(directory: dir).run(on: conn)
        return conn
    }

    private func job(_ conn: PostgresConnection, _ id: String, status: String = "completed", task: String = "blend") async throws {
        try await conn.execute("INSERT INTO jobs (job_id, status, worker_id, task, instruction) VALUES (\(id), \(status), 'w', \(task), 'q')")
    }

    private func candidate(_ conn: PostgresConnection, _ id: String, _ idx: Int, _ model: String, _ text: String,
                           rank: Int? = nil, score: String? = nil) async throws {
        try await conn.execute("""
            INSERT INTO candidates (job_id, idx, model, text, rank, score) VALUES (\(id), \(idx), \(model), \(text), \(rank), \(score)::float8)
            """)
    }

    /// Every kind of job schema 4 held: ranked and fused, ranked only, failed before ranking, rejected,
    /// with ranks edited by hand, with 64 long candidates, and the other job kinds with their own rows.
    private func fillSchema4(_ conn: PostgresConnection) async throws {
        let hostile = ["", "NULL", "{a,b}", "\"quoted\", with comma", "back\\slash \\\\", "😀 𝄞 \u{10FFFF}", "line\nbreak\ttab", " lead "]
        try await job(conn, "blend-1")
        for (i, (text, score)) in zip(hostile.prefix(4), ["-0", "1e300", "NaN", "-Infinity"]).enumerated() {
            try await candidate(conn, "blend-1", i, "m\(i) \(hostile[i])", text, rank: [1, 1, 3, 4][i], score: score)
        }
        let logits = "{" + ["0.5", "-0", "3.4028235e38", "-Infinity", "1.17549435e-38", "7", "-2.5", "0.1", "Infinity", "-0.33530664", "1", "2"].joined(separator: ",") + "}"
        try await conn.execute("INSERT INTO comparison_matrices (job_id, size, logits) VALUES ('blend-1', 4, \(logits)::real[])")
        try await conn.execute("""
            INSERT INTO fusions (job_id, text, fuser, top_k, source_indexes, generated_tokens) VALUES ('blend-1', 'fused {x} "y"', 'gen_fuser_3b', 2, '{1,0}', 17)
            """)
        try await job(conn, "rank-only")
        for i in 0..<3 { try await candidate(conn, "rank-only", i, "m\(i)", hostile[4 + i], rank: 3 - i, score: "\(Double(i) * 0.1)") }
        try await conn.execute("INSERT INTO comparison_matrices (job_id, size, logits) VALUES ('rank-only', 3, '{1,2,3,-1,-2,-3}')")
        try await job(conn, "failed-1", status: "failed")
        for i in 0..<2 { try await candidate(conn, "failed-1", i, "m\(i)", "unranked \(i)") }
        try await job(conn, "rejected-1", status: "rejected")
        try await job(conn, "hand-edited")
        try await candidate(conn, "hand-edited", 1, "m1", "second", rank: 1)
        try await candidate(conn, "hand-edited", 0, "m0", "first", rank: nil, score: "0.5")
        try await job(conn, "wide")
        for i in 0..<64 {
            try await candidate(conn, "wide", i, "model-\(i % 7)", String(repeating: "long answer \(i) ", count: 300), rank: i + 1, score: "\(-Double(i))")
        }
        try await job(conn, "bon-1", task: "best_of_n")
        try await job(conn, "won-1", task: "worst_of_n")
        for id in ["bon-1", "won-1"] {
            for i in 0..<3 { try await candidate(conn, id, i, "m\(i)", "\(id) answer \(i)") }
        }
        try await conn.execute("INSERT INTO selections VALUES ('bon-1', 'best', 'bubble', 2, '{2,0,1}', NULL, 2), ('won-1', 'worst', 'full', 1, NULL, '{0.5,-1.5,0}', 6)")
        try await job(conn, "rwd-1", task: "reward")
        for i in 0..<2 { try await candidate(conn, "rwd-1", i, "m\(i)", "reward answer \(i)") }
        try await conn.execute("INSERT INTO rewards VALUES ('rwd-1', 0, 0.75), ('rwd-1', 1, -0.75)")
        try await conn.execute("INSERT INTO reward_references VALUES ('rwd-1', 'longest', 1, NULL, 4)")
        try await job(conn, "cmp-1", task: "compare")
        try await conn.execute("""
            INSERT INTO pair_judgements VALUES ('cmp-1', 0, '[A,B]', 'src', 'a text', 'b text', NULL, 0.5, 0.5, 0.62, 'a')
            """)
    }

    func testRowsStoredBySchema4ReadBackUnchangedThroughEveryViewAfterMigration5() async throws {
        let conn = try await schema4()
        try await fillSchema4(conn)
        let before = try await snapshot(conn)
        let typesBefore = try await columnTypes(conn)
        _ = try await MigrationRunner(directory: RepositoryLayout.migrations).run(on: conn)
        let after = try await snapshot(conn)
        for relation in Self.relations {
            XCTAssertEqual(after[relation], before[relation], relation)
        }
        // blend-1 4, rank-only 3, failed-1 2, hand-edited 2, wide 64, bon-1 3, won-1 3, rwd-1 2.
        XCTAssertEqual(after["candidates"]?.count, 83)
        XCTAssertEqual(after["comparisons"]?.count, 18)
        XCTAssertEqual(after["fusions"]?.count, 1)
        let typesAfter = try await columnTypes(conn)
        XCTAssertEqual(typesAfter, typesBefore)
        let kinds = try await conn.query("""
            SELECT table_name || ' ' || table_type AS k FROM information_schema.tables
             WHERE table_name IN ('candidates', 'comparison_matrices', 'fusions') ORDER BY table_name
            """).map { try $0.decode("k", as: String.self) }
        XCTAssertEqual(kinds, ["candidates VIEW", "comparison_matrices VIEW", "fusions VIEW"])

        // The rows are on the job rows now: an unranked job keeps NULL ranks, a hand-edited NULL stays in its place.
        let arrays = try await conn.query("""
            SELECT job_id, candidate_ranks::text AS ranks, candidate_scores::text AS scores FROM jobs
             WHERE job_id IN ('failed-1', 'hand-edited', 'rejected-1') ORDER BY job_id
            """).map { "\(try $0.decode("job_id", as: String.self)) \(try $0.decode("ranks", as: String?.self) ?? "-") \(try $0.decode("scores", as: String?.self) ?? "-")" }
        XCTAssertEqual(arrays, ["failed-1 - -", "hand-edited {NULL,1} {0.5,NULL}", "rejected-1 - -"])

        // Deleting a job still deletes everything of it.
        try await conn.execute("DELETE FROM jobs WHERE job_id = 'blend-1'")
        let left = try await conn.query("""
            SELECT (SELECT count(*) FROM candidates WHERE job_id = 'blend-1') + (SELECT count(*) FROM comparisons WHERE job_id = 'blend-1')
                   + (SELECT count(*) FROM fusions WHERE job_id = 'blend-1') AS n
            """)[0].decode("n", as: Int.self)
        XCTAssertEqual(left, 0)
        await conn.close()
    }

    func testCandidatesNotNumberedFromZeroWithoutGapsStopMigration5() async throws {
        for (idxs, name) in [([0, 2], "gap"), ([1, 2], "offset")] {
            let conn = try await schema4()
            try await job(conn, name)
            for i in idxs { try await candidate(conn, name, i, "m", "t") }
            do {
                _ = try await MigrationRunner(directory: RepositoryLayout.migrations).run(on: conn)
                XCTFail("\(name): candidates \(idxs) must stop the migration")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "P0001", "\(error)")
                XCTAssertTrue(error.message.contains("candidates of job \(name) are not numbered 0 to n - 1 without gaps"), error.message)
            }
            let kept = try await conn.query("SELECT count(*) AS n FROM candidates")[0].decode("n", as: Int.self)
            XCTAssertEqual(kept, 2, "\(name): the rows stay where they were")
            try await conn.execute("DELETE FROM jobs")
            await conn.close()
        }
    }

    func testTheJobColumnsRefuseWhatTheTablesCouldNotHold() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        _ = try await MigrationRunner(directory: RepositoryLayout.migrations).run(on: conn)
        try await job(conn, "j")
        let refused: [(String, String)] = [
            ("candidate_models = '{a}', candidate_texts = '{a,b}'", "jobs_candidates_shape"),
            ("candidate_models = '{a,NULL}', candidate_texts = '{a,b}'", "jobs_candidates_shape"),
            ("candidate_models = '{a,b}', candidate_texts = '{a,NULL}'", "jobs_candidates_shape"),
            ("candidate_models = '{}', candidate_texts = '{}'", "jobs_candidates_shape"),
            ("candidate_models = '[0:1]={a,b}', candidate_texts = '[0:1]={a,b}'", "jobs_candidates_shape"),
            ("candidate_models = '{{a},{b}}', candidate_texts = '{{a},{b}}'", "jobs_candidates_shape"),
            ("candidate_models = '{a,b}', candidate_texts = '{a,b}', candidate_ranks = '{1}'", "jobs_candidates_shape"),
            ("candidate_models = '{a,b}', candidate_texts = '{a,b}', candidate_scores = '{1,2,3}'", "jobs_candidates_shape"),
            ("candidate_ranks = '{1}'", "jobs_candidates_shape"),
            ("candidate_models = '{a,b}', candidate_texts = '{a,b}', candidate_ranks = '{0,1}'", "jobs_candidate_ranks_positive"),
            ("comparison_size = 2, comparison_logits = '{}'", "jobs_comparison_matrix_shape"),
            ("comparison_size = 3, comparison_logits = '{1,2,3}'", "jobs_comparison_matrix_shape"),
            ("comparison_size = 2, comparison_logits = '{1,NULL}'", "jobs_comparison_matrix_shape"),
            ("comparison_size = 1, comparison_logits = '{}'", "jobs_comparison_matrix_shape"),
            ("comparison_logits = '{1,2}'", "jobs_comparison_matrix_shape"),
            ("fusion_text = 'x'", "jobs_fusion_whole"),
            ("fusion_text = 'x', fusion_fuser = 'top1', fusion_top_k = 1, fusion_source_indexes = '{0}'", "jobs_fusion_whole"),
        ]
        for (assignment, constraint) in refused {
            do {
                try await conn.execute(PostgresQuery(unsafeSQL: "UPDATE jobs SET \(assignment) WHERE job_id = 'j'"))
                XCTFail("\(assignment) must be refused")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "23514", "\(assignment): \(error)")
                XCTAssertTrue(error.message.contains(constraint), "\(assignment): \(error.message)")
            }
        }
        // What the tables held is accepted: ranks and scores NULL per candidate or for the whole job.
        try await conn.execute("""
            UPDATE jobs SET candidate_models = '{a,b}', candidate_texts = '{"",NULL-ish}', candidate_ranks = '{NULL,1}',
                            comparison_size = 2, comparison_logits = '{1,-1}',
                            fusion_text = '', fusion_fuser = 'top1', fusion_top_k = 1, fusion_source_indexes = '{}', fusion_generated_tokens = 0
             WHERE job_id = 'j'
            """)
        let rows = try await conn.query("SELECT row(c.*)::text AS r FROM candidates c ORDER BY idx").map { try $0.decode("r", as: String.self) }
        XCTAssertEqual(rows, ["(j,0,a,\"\",,)", "(j,1,b,NULL-ish,1,)"])
        await conn.close()
    }
}

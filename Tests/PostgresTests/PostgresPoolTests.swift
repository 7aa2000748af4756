import BlendTestSupport
import Foundation
import Postgres
import XCTest

final class PostgresPoolTests: DatabaseTestCase {
    func testPoolNeverOpensMoreThanItsLimitAndServesEveryCaller() async throws {
        let pool = PostgresPool(url: db.url, maxConnections: 3)
        let pids = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<24 {
                group.addTask {
                    try await pool.withConnection { conn in
                        try await conn.query("SELECT pg_backend_pid() AS pid, pg_sleep(0.02)")[0].decode("pid", as: Int.self)
                    }
                }
            }
            return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
        }
        XCTAssertLessThanOrEqual(pids.count, 3)
        let open = await pool.openConnections
        XCTAssertLessThanOrEqual(open, 3)
        await pool.close()
    }

    func testPoolReplacesConnectionsAfterTheServerRestarts() async throws {
        guard ProcessInfo.processInfo.environment["BLENDD_TEST_PG_DIR"] != nil else {
            throw XCTSkip("BLENDD_TEST_PG_BIN/BLENDD_TEST_PG_DIR unset: run through scripts/test.sh")
        }
        let pool = PostgresPool(url: db.url, maxConnections: 2)
        let before = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) }

        XCTAssertTrue(restartTestServer(), "pg_ctl restart failed")

        // The idle connection died with the old server: the pool notices and opens a new one.
        let after = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self) }
        XCTAssertNotEqual(before, after)
        await pool.close()
    }

    func testConnectionKilledMidUseIsDiscardedAndTheErrorIsTransient() async throws {
        let pool = PostgresPool(url: db.url, maxConnections: 1)
        let admin = try await PostgresConnection.connect(db.url)
        do {
            try await pool.withConnection { conn in
                let pid = try await conn.query("SELECT pg_backend_pid() AS pid")[0].decode("pid", as: Int.self)
                try await admin.query("SELECT pg_terminate_backend(\(pid))")
                try await conn.query("SELECT 1")
            }
            XCTFail("a terminated backend must fail the statement")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isTransient, "\(error)")
        }
        let seven = try await pool.withConnection { try await $0.query("SELECT 7 AS n")[0].decode("n", as: Int.self) }
        XCTAssertEqual(seven, 7)
        await admin.close()
        await pool.close()
    }
}

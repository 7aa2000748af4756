import BlendTestSupport
import Foundation
import Postgres
import XCTest

final class PostgresConnectionTests: DatabaseTestCase {
    func testHostileStringsAreBoundParametersAndRoundTripVerbatim() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        try await conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        let hostile = ["it's", "'; DROP TABLE notes; --", "\"quoted\" \\ back\\slash \\x00", "$1 $2", "😀 日本語 e\u{301}", "line\nbreak\ttab", ""]
        for text in hostile { try await conn.execute("INSERT INTO notes (body) VALUES (\(text))") }
        let rows = try await conn.query("SELECT body FROM notes ORDER BY id")
        XCTAssertEqual(try rows.map { try $0.decode("body", as: String.self) }, hostile)
        let found = try await conn.query("SELECT count(*) AS n FROM notes WHERE body = \("'; DROP TABLE notes; --")")
        XCTAssertEqual(try found[0].decode("n", as: Int.self), 1)
        await conn.close()
    }

    func testNulBytesAreRefusedBeforeAnythingIsSent() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        do {
            try await conn.execute("SELECT \("a\u{0}b")::text")
            XCTFail("a NUL byte must be refused")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .invalidParameter)
            XCTAssertEqual(error.description, "postgres invalidParameter error: parameter $1 contains a NUL byte, which PostgreSQL text cannot hold in \"SELECT $1::text\"")
        }
        // Wherever it sits, in a parameter of any length, after multi-byte scalars.
        let long = String(repeating: "é😀 text ", count: 20_000)
        for text in ["\u{0}", "\u{0}x", "x\u{0}", long + "\u{0}", "\u{0}" + long, long + "\u{0}" + long, "😀\u{0}😀"] {
            do {
                try await conn.execute("SELECT 1 WHERE \("ok") <> \(text)")
                XCTFail("a NUL byte at \(text.utf8.firstIndex(of: 0).map { text.utf8.distance(from: text.utf8.startIndex, to: $0) } ?? -1) must be refused")
            } catch let error as PostgresError {
                XCTAssertEqual(error.kind, .invalidParameter)
                XCTAssertTrue(error.message.hasPrefix("parameter $2 contains a NUL byte"), error.message)
            }
        }
        let clean = try await conn.query("SELECT length(\(long)) AS n")[0].decode("n", as: Int.self)
        XCTAssertEqual(clean, long.unicodeScalars.count, "text without NUL goes through")
        let one = try await conn.query("SELECT 1 AS one")[0].decode("one", as: Int.self)
        XCTAssertEqual(one, 1, "the connection stays usable")
        await conn.close()
    }

    func testServerErrorsCarrySQLStateMessageAndStatement() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        try await conn.execute("CREATE TABLE t (k text PRIMARY KEY)")
        try await conn.execute("INSERT INTO t VALUES (\("x"))")
        do {
            try await conn.execute("INSERT INTO t VALUES (\("x"))")
            XCTFail("duplicate key must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "23505")
            XCTAssertEqual(error.kind, .server)
            XCTAssertFalse(error.isTransient)
            XCTAssertEqual(error.statement, "INSERT INTO t VALUES ($1)")
            XCTAssertTrue(error.message.contains("duplicate key"), error.message)
            XCTAssertEqual(error.detail, "Key (k)=(x) already exists.")
        }
        do {
            try await conn.query("SELECT * FROM missing_table")
            XCTFail("missing table must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42P01")
        }
        await conn.close()
    }

    func testTransactionThatFailsMidwayLeavesNothingBehind() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        try await conn.execute("CREATE TABLE t (k int PRIMARY KEY)")
        struct Abort: Error {}
        do {
            try await conn.transaction { tx in
                try await tx.execute("INSERT INTO t VALUES (\(1))")
                try await tx.execute("INSERT INTO t VALUES (\(2))")
                throw Abort()
            }
            XCTFail("the transaction must rethrow")
        } catch is Abort {}
        do {
            try await conn.transaction { tx in
                try await tx.execute("INSERT INTO t VALUES (\(3))")
                try await tx.execute("INSERT INTO t VALUES (\(3))")
            }
            XCTFail("duplicate key must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "23505")
        }
        let count = try await conn.query("SELECT count(*) AS n FROM t")[0].decode("n", as: Int.self)
        XCTAssertEqual(count, 0)
        try await conn.transaction { tx in try await tx.execute("INSERT INTO t VALUES (\(4))") }
        let k = try await conn.query("SELECT k FROM t")[0].decode("k", as: Int.self)
        XCTAssertEqual(k, 4)
        await conn.close()
    }

    func testTypedDecoding() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        let when = Date(timeIntervalSince1970: 1_795_000_000.125)
        let row = try await conn.query("""
            SELECT \(42)::int AS i, \(Int64.max)::bigint AS big, \(2.5)::float8 AS d, \(true)::bool AS b,
                   \(when)::timestamptz AS ts, \(PostgresBytes([0, 1, 254, 255]))::bytea AS raw,
                   \(PostgresJSON(text: #"{"a": [1, "x"]}"#))::jsonb AS doc, \([3, 1, 2])::int[] AS arr,
                   NULL::text AS missing, \(PostgresTextArray(["a,b", "q\"uote", nil, "back\\slash"]))::text[] AS texts
            """)[0]
        XCTAssertEqual(try row.decode("i", as: Int.self), 42)
        XCTAssertEqual(try row.decode("big", as: Int64.self), .max)
        XCTAssertEqual(try row.decode("d", as: Double.self), 2.5)
        XCTAssertEqual(try row.decode("b", as: Bool.self), true)
        XCTAssertEqual(try row.decode("ts", as: Date.self).timeIntervalSince1970, when.timeIntervalSince1970, accuracy: 1e-6)
        XCTAssertEqual(try row.decode("raw", as: PostgresBytes.self).bytes, [0, 1, 254, 255])
        XCTAssertEqual(try row.decode("doc", as: PostgresJSON.self).text, #"{"a": [1, "x"]}"#)
        XCTAssertEqual(try row.decode("arr", as: [Int].self), [3, 1, 2])
        XCTAssertEqual(try row.decode("texts", as: PostgresTextArray.self).elements, ["a,b", "q\"uote", nil, "back\\slash"])
        XCTAssertNil(try row.decode("missing", as: String?.self))
        XCTAssertThrowsError(try row.decode("missing", as: String.self)) { error in
            XCTAssertTrue(String(describing: error).contains("column missing as String: is NULL"), "\(error)")
        }
        XCTAssertThrowsError(try row.decode("nope", as: Int.self))
        await conn.close()
    }

    func testConnectionFailureIsTransientAndNamesTheTarget() async throws {
        do {
            _ = try await PostgresConnection.connect("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
            XCTFail("port 1 has no server")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .connection)
            XCTAssertTrue(error.isTransient)
            XCTAssertTrue(error.message.contains("127.0.0.1:1"), error.message)
            XCTAssertFalse(error.message.contains("secret"), "passwords never reach messages: \(error.message)")
        }
    }
}

import Foundation
import Postgres
import XCTest

/// Arrays sent as one parameter (the result store sends a batch's texts and bytes this way)
/// reach the server element for element: generated strings full of array-literal syntax, SQL
/// quoting and non-BMP characters, NULL next to the text "NULL", empty next to absent.
final class PostgresArrayTests: DatabaseTestCase {
    static let pieces = ["\"", "\\", "{", "}", ",", " ", "NULL", "null", "'", "\t", "\n", "a", "é", "😀", "𝄞", "\u{10FFFF}",
                         "\\x00", "$1", "()", "[]", "\u{1}", "ARRAY", "\r\n"]

    func testGeneratedTextArraysRoundTripElementForElement() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        var rng = Generator(seed: 0xA11A)
        for round in 0..<60 {
            let count = round == 0 ? 0 : Int.random(in: 1...300, using: &rng)
            let elements: [String?] = (0..<count).map { _ in
                switch Int.random(in: 0..<10, using: &rng) {
                case 0: return nil
                case 1: return ""
                case 2: return "NULL"
                default: return (0..<Int.random(in: 1...12, using: &rng)).map { _ in Self.pieces.randomElement(using: &rng)! }.joined()
                }
            }
            let rows = try await conn.query("""
                SELECT u, u IS NULL AS absent, n FROM unnest(\(PostgresTextArray(elements))::text[]) WITH ORDINALITY AS t(u, n) ORDER BY n
                """)
            XCTAssertEqual(rows.count, elements.count, "round \(round)")
            for (row, element) in zip(rows, elements) {
                XCTAssertEqual(try row.decode("u", as: String?.self), element, "round \(round)")
                XCTAssertEqual(try row.decode("absent", as: Bool.self), element == nil)
            }
            // The array's own text decodes back too.
            let back = try await conn.query("SELECT \(PostgresTextArray(elements))::text[] AS a")[0].decode("a", as: PostgresTextArray.self)
            XCTAssertEqual(back.elements, elements, "round \(round)")
        }
        await conn.close()
    }

    func testByteaArraysCarryAnyBytesAndNull() async throws {
        let conn = try await PostgresConnection.connect(db.url)
        var rng = Generator(seed: 0xB17E)
        for round in 0..<30 {
            let values: [[UInt8]?] = (0..<Int.random(in: 1...100, using: &rng)).map { _ in
                Int.random(in: 0..<6, using: &rng) == 0 ? nil : (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            let rows = try await conn.query("""
                SELECT b, n FROM unnest(\(PostgresTextArray(values.map { $0.map { PostgresBytes($0).postgresText! } }))::bytea[]) WITH ORDINALITY AS t(b, n) ORDER BY n
                """)
            XCTAssertEqual(try rows.map { try $0.decode("b", as: PostgresBytes?.self)?.bytes }, values, "round \(round)")
        }
        await conn.close()
    }
}

/// SplitMix64, so every run generates the same inputs (this target does not see BlendCore's).
private struct Generator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

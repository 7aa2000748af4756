import BlendTestSupport
import Foundation
import Postgres
import XCTest

/// The SQL the README and the operator guide show users runs against the migrated schema.
final class DocumentedSQLTests: XCTestCase {
    func testEverySQLExampleInTheDocsRuns() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        let conn = try await PostgresConnection.connect(db.url)
        var statements: [String] = []
        for doc in ["README.md", "docs/operations.md"] {
            let text = try String(contentsOf: RepositoryLayout.root.appendingPathComponent(doc), encoding: .utf8)
            for block in text.components(separatedBy: "```sql").dropFirst() {
                let sql = block.components(separatedBy: "```")[0]
                let code = sql.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }.joined(separator: "\n")
                statements += code.split(separator: ";").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            }
        }
        XCTAssertGreaterThanOrEqual(statements.count, 5)
        for statement in statements {
            do {
                try await conn.executeScript(statement)
            } catch {
                XCTFail("documented SQL fails: \(statement)\n\(error)")
            }
        }
        await conn.close()
        try await db.drop()
    }
}

import BlendTestSupport
import XCTest

/// A test class with a fresh, empty database per test (skipped without a server).
class DatabaseTestCase: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.create()
    }

    override func tearDown() async throws {
        try await db?.drop()
    }
}

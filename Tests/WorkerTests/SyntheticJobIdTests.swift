import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Postgres
import XCTest
@testable import Worker

/// A rejected message without a readable job_id gets an id from its Kafka coordinates. That id
/// must never equal a valid job id, in either order of arrival.
final class SyntheticJobIdTests: XCTestCase {
    var db: TestDatabase!
    var pool: PostgresPool!
    var store: ResultStore!
    let processor = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: TopCandidateFuser(), workerId: "w1")

    override func setUp() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        db = try await TestDatabase.migrated()
        pool = PostgresPool(url: db.url, maxConnections: 2)
        store = ResultStore(pool: pool, eventsTopic: "blend.events", dlqTopic: "blend.jobs.dlq")
    }

    override func tearDown() async throws {
        await pool?.close()
        try await db?.drop()
    }

    private func message(offset: Int64, _ json: String) -> IncomingMessage {
        IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 3, offset: offset), key: nil,
                        value: Array(json.utf8), timestamp: nil)
    }

    private func valid(_ id: String) -> String {
        #"{"job_id":"\#(id)","instruction":"Q","candidates":[{"model":"a","text":"yes"},{"model":"b","text":"no"}]}"#
    }

    /// What the worker does with one message: validate, look up, process, store.
    private func run(_ m: IncomingMessage) async throws -> JobOutcome {
        let validated = processor.validate([m])
        let outcome = await processor.process(validated, isStored: try await store.existingJobIds(validated.jobIds))[0]
        try await store.store([outcome], workerId: "w1")
        return outcome
    }

    private func rows() async throws -> [String] {
        try await pool.withConnection { conn in
            try await conn.query("""
                SELECT j.job_id || ' ' || j.status || ' ' || (SELECT string_agg(o.event_id, ',' ORDER BY o.event_id) FROM outbox o WHERE o.job_id = j.job_id) AS r
                  FROM jobs j ORDER BY j.job_id COLLATE "C"
                """).map { try $0.decode("r", as: String.self) }
        }
    }

    func testSyntheticIdsAreOutsideTheJobIdAlphabet() {
        let id = MessageCoordinates(topic: "blend.jobs", partition: 3, offset: 42).syntheticJobId
        guard case .failure(let rejection) = JobValidator().validate(Array(valid(id).utf8)) else { return XCTFail("\(id) is a valid job id") }
        XCTAssertEqual(rejection.violations.map(\.code), [.invalidJobId])
    }

    func testAnInvalidMessageThenAValidJobNamedLikeItsCoordinatesBothGetTheirOutcome() async throws {
        let first = try await run(message(offset: 7, "not json"))
        XCTAssertEqual(first.status, .rejected)
        // The old synthetic form, and any other id a producer might pick, is a job of its own.
        for id in ["kafka:blend.jobs:3:7", "kafka.blend.jobs.3.7"] {
            let second = try await run(message(offset: 8, valid(id)))
            XCTAssertEqual(second.status, .completed, id)
        }
        let stored = try await rows()
        XCTAssertEqual(stored, [
            "kafka.blend.jobs.3.7 completed kafka.blend.jobs.3.7/completed",
            "kafka/blend.jobs/3/7 rejected kafka/blend.jobs/3/7/dlq,kafka/blend.jobs/3/7/rejected",
            "kafka:blend.jobs:3:7 completed kafka:blend.jobs:3:7/completed",
        ])
    }

    func testAValidJobThenAnInvalidMessageAtTheOffsetItsIdNamesBothGetTheirOutcome() async throws {
        for id in ["kafka:blend.jobs:3:9", "kafka.blend.jobs.3.9"] {
            let first = try await run(message(offset: 1, valid(id)))
            XCTAssertEqual(first.status, .completed)
        }
        let poison = try await run(message(offset: 9, #"{"instruction":"no id","candidates":[]}"#))
        XCTAssertEqual(poison.status, .rejected, "the poison message is not taken for an already stored job")
        let stored = try await rows()
        XCTAssertEqual(stored, [
            "kafka.blend.jobs.3.9 completed kafka.blend.jobs.3.9/completed",
            "kafka/blend.jobs/3/9 rejected kafka/blend.jobs/3/9/dlq,kafka/blend.jobs/3/9/rejected",
            "kafka:blend.jobs:3:9 completed kafka:blend.jobs:3:9/completed",
        ])
        // Redelivered, the poison message is acknowledged without a second copy.
        let again = try await run(message(offset: 9, #"{"instruction":"no id","candidates":[]}"#))
        XCTAssertNil(again.status)
        let after = try await rows()
        XCTAssertEqual(after, stored)
    }
}

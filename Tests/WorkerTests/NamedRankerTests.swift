import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Kafka
import Postgres
import XCTest
@testable import Worker

/// Several rankers in one worker (`models.rankers`): each job is ranked by the one it names in
/// `rank.model` (or the default), jobs sharing a ranker share its batches, and results record which served.
final class NamedRankerTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func rankers() throws -> RankerSet {
        RankerSet(["pairrm": try PairRMRanker(directory: fixtures.appendingPathComponent("pairrm-tiny").path),
                   "oasst-rm": try RewardModelRanker(directory: fixtures.appendingPathComponent("oasst-rm-tiny").path),
                   "consensus": ConsensusRanker()],
                  defaultName: "pairrm")
    }

    /// Generated jobs, each naming one of the rankers (or none), with duplicate candidates now and then.
    static func jobs(count: Int, seed: UInt64) -> [(id: String, model: String?, json: String)] {
        var rng = SplitMix64(seed: seed)
        let names: [String?] = [nil, "pairrm", "oasst-rm", "consensus"]
        let words = ["Paris", "capital", "42", "!!!", "the", "ünï", "日本", "x\u{200B}y", "1,000,000", "answer"]
        return (0..<count).map { i in
            let model = names[Int(rng.next() % UInt64(names.count))]
            let n = 2 + Int(rng.next() % 4)
            var texts = (0..<n).map { _ in (0..<(1 + Int(rng.next() % 8))).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ") }
            if rng.next() % 4 == 0 { texts[n - 1] = texts[0] }
            let candidates = texts.enumerated().map { #"{"model":"m\#($0.offset)","text":\#(jsonString($0.element))}"# }.joined(separator: ",")
            let rank = model.map { #","rank":{"model":"\#($0)"}"# } ?? ""
            return ("j-\(i)", model, #"{"job_id":"j-\#(i)","instruction":"Question \#(i)?","candidates":[\#(candidates)]\#(rank),"fuse":false}"#)
        }
    }

    func testEachJobIsRankedByTheRankerItNamesExactlyAsThatRankerAloneRanksIt() async throws {
        let set = try Self.rankers()
        let p = BatchProcessor(validator: JobValidator(), rankers: set, fuser: TopCandidateFuser(), workerId: "w1")
        let jobs = Self.jobs(count: 40, seed: 7)
        let messages = jobs.enumerated().map { i, job in
            IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: Int64(i)), key: nil,
                            value: Array(job.json.utf8), timestamp: nil)
        }
        let outcomes = await p.process(p.validate(messages), isStored: [])
        XCTAssertEqual(Set(jobs.map { $0.model ?? "pairrm" }).count, 3, "the generated batch mixes every ranker")
        for (job, outcome) in zip(jobs, outcomes) {
            XCTAssertEqual(outcome.status, .completed, outcome.error ?? "")
            let ranker = set.rankers[job.model ?? "pairrm"]!
            XCTAssertEqual(outcome.models["ranker"], ranker.label)
            XCTAssertEqual(outcome.rank?.ranker, ranker.label)
            guard case .success(let parsed) = JobValidator().validate(Array(job.json.utf8)) else { return XCTFail(job.json) }
            let alone = await ranker.rank([RankRequest(job: parsed)])
            let expected = try alone[0].get()
            XCTAssertEqual(outcome.rank?.ranks, expected.ranks, job.json)
            XCTAssertEqual(outcome.rank?.scores.map(\.bitPattern), expected.scores.map(\.bitPattern), "bit-identical to ranking alone: \(job.json)")
            XCTAssertEqual(outcome.event?.data.models?["ranker"], ranker.label)
        }
    }

    /// Every kind names its ranker too, and each is answered as that ranker alone answers it.
    func testEveryJobKindIsServedByTheRankerItNames() async throws {
        let set = try Self.rankers()
        let p = BatchProcessor(validator: JobValidator(), rankers: set, fuser: TopCandidateFuser(), workerId: "w1")
        let candidates = #"[{"model":"a","text":"Paris."},{"model":"b","text":"Lyon, 42!"},{"model":"c","text":"Paris."}]"#
        var jobs: [String] = []
        for (i, ranker) in ["pairrm", "oasst-rm", "consensus"].enumerated() {
            let rank = #""rank":{"model":"\#(ranker)"}"#
            jobs += [
                #"{"job_id":"c\#(i)","task":"compare","instruction":"Capital?","pairs":[{"a":"Paris.","b":"Lyon."},{"a":"x","b":"x"}],\#(rank)}"#,
                #"{"job_id":"b\#(i)","task":"best_of_n","instruction":"Capital?","candidates":\#(candidates),"rank":{"model":"\#(ranker)","seed":3}}"#,
                #"{"job_id":"w\#(i)","task":"worst_of_n","instruction":"Capital?","candidates":\#(candidates),"select":{"method":"full"},\#(rank)}"#,
                #"{"job_id":"r\#(i)","task":"reward","instruction":"Capital?","candidates":\#(candidates),"reward":{"reference":"shortest"},\#(rank)}"#,
            ]
        }
        let outcomes = await p.process(p.validate(jobs.enumerated().map {
            IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: Int64($0.offset)), key: nil,
                            value: Array($0.element.utf8), timestamp: nil)
        }), isStored: [])
        for (json, outcome) in zip(jobs, outcomes) {
            XCTAssertEqual(outcome.status, .completed, "\(json): \(outcome.error ?? outcome.rejection?.description ?? "")")
            guard case .success(let job) = JobValidator().validate(Array(json.utf8)) else { return XCTFail(json) }
            let ranker = set.rankers[job.rank.model!]!
            XCTAssertEqual(outcome.models["ranker"], ranker.label, json)
            XCTAssertNil(outcome.models["fuser"], "only blend jobs are fused")
            // The wire format keeps the ranker's name for every kind.
            guard case .success(let again) = JobValidator().validate(Array(try JSONEncoder().encode(job))) else { return XCTFail(json) }
            XCTAssertEqual(again.rank.model, job.rank.model)
            let solo = BatchProcessor(validator: JobValidator(), rankers: RankerSet(single: ranker, name: job.rank.model!),
                                      fuser: TopCandidateFuser(), workerId: "w1")
            let alone = await solo.process(solo.validate([outcome.message]), isStored: [])[0]
            XCTAssertTrue(outcome.compare != nil || outcome.selection != nil || outcome.reward != nil, json)
            XCTAssertEqual(outcome.compare, alone.compare, json)
            XCTAssertEqual(outcome.selection, alone.selection, json)
            XCTAssertEqual(outcome.reward, alone.reward, json)
        }
        let unserved = #"{"job_id":"u","task":"reward","instruction":"q","candidates":\#(candidates),"rank":{"model":"nope"}}"#
        let seeded = #"{"job_id":"s","task":"compare","instruction":"q","pairs":[{"a":"x","b":"y"}],"rank":{"seed":1}}"#
        let refused = await p.process(p.validate([unserved, seeded].enumerated().map {
            IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: Int64(100 + $0.offset)), key: nil,
                            value: Array($0.element.utf8), timestamp: nil)
        }), isStored: [])
        XCTAssertEqual(refused.map { $0.rejection?.violations.map(\.code) ?? [] }, [[.unknownRanker], [.fieldNotForTask]])
    }

    func testAJobNamingAnUnservedRankerIsRejectedAndTheOthersAreRanked() async throws {
        let p = BatchProcessor(validator: JobValidator(), rankers: try Self.rankers(), fuser: TopCandidateFuser(), workerId: "w1")
        let bad = #"{"job_id":"bad","instruction":"q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}],"rank":{"model":"gpt-judge"}}"#
        let good = #"{"job_id":"good","instruction":"q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}],"rank":{"model":"oasst-rm"},"fuse":false}"#
        let outcomes = await p.process(p.validate([bad, good].enumerated().map {
            IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: Int64($0.offset)), key: nil,
                            value: Array($0.element.utf8), timestamp: nil)
        }), isStored: [])
        XCTAssertEqual(outcomes.map(\.status), [.rejected, .completed])
        XCTAssertEqual(outcomes[0].rejection?.violations.map(\.message),
                       [#"no ranker named "gpt-judge" is configured; configured: consensus, oasst-rm, pairrm"#])
        XCTAssertEqual(outcomes[1].models["ranker"]?.hasPrefix("reward-model:oasst-rm-tiny@"), true, outcomes[1].models["ranker"] ?? "")
    }

    /// Through the real broker and database: the jobs table and the events name the ranker that served each job.
    func testTheWorkerServesSeveralRankersAndStoresWhichOneRankedEachJob() async throws {
        guard TestDatabase.serverURL != nil else { throw XCTSkip(TestDatabase.skipMessage) }
        let db = try await TestDatabase.migrated()
        let broker = try EmbeddedKafkaBroker(brokers: 1)
        for (topic, partitions) in [("blend.jobs", Int32(2)), ("blend.events", 2), ("blend.jobs.dlq", 1)] {
            try broker.createTopic(topic, partitions: partitions)
        }
        var c = WorkerIntegrationTestCase.configuration(workerId: "w-named", broker: broker, db: db)
        c.batching.maxJobs = 8
        c.batching.maxWaitMilliseconds = 20
        let set = try Self.rankers()
        let jobs = Self.jobs(count: 12, seed: 11)
        let producer = try KafkaProducer(configuration: broker.configuration)
        for r in try await producer.send(jobs.map { ProducerMessage(topic: "blend.jobs", key: $0.id, value: Array($0.json.utf8)) }) {
            _ = try r.get()
        }
        let service = try WorkerService(config: c, rankers: set, fuser: TopCandidateFuser())
        let running = Task { try await service.run() }
        let consumer = try KafkaConsumer(configuration: broker.configuration, options: .init(groupId: "reader-\(UUID())", topics: ["blend.events"]))
        var rankerOfEvent: [String: String] = [:]
        let deadline = Date().addingTimeInterval(60)
        while rankerOfEvent.count < jobs.count && Date() < deadline {
            for m in await consumer.nextBatch(maxCount: 100, maxWait: .milliseconds(200)) {
                let event = try JSONSerialization.jsonObject(with: Data(m.bytes)) as! [String: Any]
                let data = event["data"] as! [String: Any]
                rankerOfEvent[data["job_id"] as! String] = (data["models"] as? [String: String])?["ranker"]
            }
        }
        await consumer.close()
        await service.stop()
        try await running.value

        let conn = try await PostgresConnection.connect(db.url)
        let rows = try await conn.query("SELECT job_id, status, ranker FROM jobs ORDER BY job_id")
        XCTAssertEqual(rows.count, jobs.count)
        let expected = Dictionary(uniqueKeysWithValues: jobs.map { ($0.id, set.rankers[$0.model ?? "pairrm"]!.label) })
        for row in rows {
            let id = try row.decode("job_id", as: String.self)
            XCTAssertEqual(try row.decode("status", as: String.self), "completed")
            XCTAssertEqual(try row.decode("ranker", as: String.self), expected[id], id)
            XCTAssertEqual(rankerOfEvent[id], expected[id], id)
        }
        let fleet = try await conn.query("SELECT ranker FROM workers WHERE worker_id = 'w-named'")
        XCTAssertEqual(try fleet.first?.decode("ranker", as: String.self), set.label, "the workers table lists every ranker served")
        XCTAssertTrue(set.label.hasPrefix("pairrm=pairrm:"), set.label)
        await conn.close()
        try await db.drop()
    }
}

private func jsonString(_ s: String) -> String { String(decoding: try! JSONEncoder().encode(s), as: UTF8.self) }

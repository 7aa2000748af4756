import BlendCore
import BlendTestSupport
import Foundation
import Inference
import Kafka
import Postgres
import XCTest
@testable import Worker

/// Continuous fusion through the real worker, broker and database: fuse jobs of mixed lengths and beams
/// finish out of order, yet committed offsets never pass a job whose outcome is not stored, a worker
/// stopped mid-run loses nothing (the next one finishes the rest), every job is stored once with one event,
/// and every fused text is what the job gets fused alone.
final class ContinuousFusionTests: WorkerIntegrationTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    func config(workerId: String, drainSeconds: Double) -> BlendConfiguration {
        var c = configuration(workerId: workerId, drainSeconds: drainSeconds)
        c.batching.maxJobs = 4
        c.batching.maxWaitMilliseconds = 5
        c.batching.continuousFusion = true
        c.batching.maxFusingJobs = 12
        // Worker A stops with almost no drain time, so its relay may leave rows claimed; with short claims they
        // expire within B's drain time and B publishes them (as another worker's relay would, after a claim).
        c.outbox.claimSeconds = 7
        c.kafka.deliveryTimeoutMilliseconds = 2000
        return c
    }

    /// Job i: fuse jobs of 1…90 forced tokens and 1–4 beams (some sampled), with rank-only and invalid ones between.
    static func payload(_ i: Int) -> String {
        let candidates = #"[{"model":"a","text":"The answer is \#(i)."},{"model":"b","text":"I think it is \#(i * 3) or so."},{"model":"c","text":"Bananas \#(i % 5)."}]"#
        switch i % 9 {
        case 4: return #"{"job_id":"job-\#(i)","instruction":"Rank only \#(i)","candidates":\#(candidates),"fuse":false}"#
        case 7: return #"{"job_id":"job-\#(i)","candidates":[]}"#
        default:
            let tokens = [90, 1, 3, 40, 2, 17, 60, 5][i % 8]
            let beams = [4, 1, 2, 3, 1, 4, 2, 1][(i / 3) % 8]
            let sample = beams == 1 && i % 2 == 0 ? #","do_sample":true,"top_p":0.9"# : ""
            return #"{"job_id":"job-\#(i)","instruction":"Which is right? \#(i)","candidates":\#(candidates),"fuse":{"top_k":2,"max_new_tokens":\#(tokens),"min_new_tokens":\#(tokens),"num_beams":\#(beams),"length_penalty":\#(i % 3 == 0 ? "1.5" : "1.0")\#(sample)}}"#
        }
    }

    func testFusionsFinishOutOfOrderCommitOnlyBelowUnstoredJobsAndAStoppedWorkerLosesNothing() async throws {
        let fuser = try GenFuser(directory: Self.fixtures.appendingPathComponent("t5-tiny").path)
        let count = 72
        let producer = try KafkaProducer(configuration: broker.configuration)
        let reports = try await producer.send((0..<count).map { i in
            ProducerMessage(topic: "blend.jobs", key: "k\(i % 5)", value: Array(Self.payload(i).utf8))
        }).map { try $0.get() }
        // Which job sits at each partition offset.
        var jobAt: [Int32: [Int64: String]] = [:]
        for (i, r) in reports.enumerated() { jobAt[r.partition, default: [:]][r.offset] = i % 9 == 7 ? nil : "job-\(i)" }

        let conn = try await PostgresConnection.connect(db.url)
        let admin = try KafkaAdmin(configuration: broker.configuration)
        /// Reads the committed offsets, then the stored jobs: every message below a committed offset must be stored.
        func checkCommitsAreStored(_ context: String) async throws -> Int64 {
            let lag = try await admin.consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
            let rows = try await conn.query("SELECT kafka_partition, kafka_offset FROM jobs")
            var stored = Set<[Int64]>()
            for row in rows { stored.insert([Int64(try row.decode("kafka_partition", as: Int.self)), Int64(try row.decode("kafka_offset", as: Int.self))]) }
            var committedTotal: Int64 = 0
            for p in lag {
                guard let committed = p.committed, committed > 0 else { continue }
                committedTotal += committed
                for offset in 0..<committed where !stored.contains([Int64(p.partition), offset]) {
                    XCTFail("\(context): partition \(p.partition) committed \(committed) past unstored offset \(offset) (\(jobAt[p.partition]?[offset] ?? "rejected"))")
                }
            }
            return committedTotal
        }

        // Worker A runs until about a third is stored, sampled all along, then stops with almost no drain time.
        let first = try WorkerService(config: config(workerId: "w-a", drainSeconds: 0.05), ranker: ConsensusRanker(), fuser: fuser)
        let runningA = Task { try await first.run() }
        var samples = 0
        while try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n", as: Int.self) < count / 3 {
            _ = try await checkCommitsAreStored("worker A, sample \(samples)")
            samples += 1
            try await Task.sleep(for: .milliseconds(20))
        }
        await first.stop()
        try await runningA.value
        let committedAfterA = try await checkCommitsAreStored("after worker A stopped")

        // Worker B finishes the rest.
        let second = try WorkerService(config: config(workerId: "w-b", drainSeconds: 10), ranker: ConsensusRanker(), fuser: fuser)
        let runningB = Task { try await second.run() }
        let deadline = Date().addingTimeInterval(120)
        while try await conn.query("SELECT count(*) AS n FROM jobs")[0].decode("n", as: Int.self) < count && Date() < deadline {
            _ = try await checkCommitsAreStored("worker B")
            try await Task.sleep(for: .milliseconds(20))
        }
        // Let the relay publish before stopping (the drain flushes the outbox too).
        await second.stop()
        try await runningB.value
        let committedAfterB = try await checkCommitsAreStored("after worker B stopped")
        XCTAssertEqual(committedAfterB, Int64(count), "every offset is committed after B's clean stop (A had committed \(committedAfterA))")

        // Every job stored once, with one event; fusions as many as fuse jobs.
        let jobs = try await conn.query("SELECT job_id, status, kafka_partition, kafka_offset, finished_at FROM jobs")
        XCTAssertEqual(jobs.count, count)
        let fuseIds = (0..<count).filter { $0 % 9 != 4 && $0 % 9 != 7 }.map { "job-\($0)" }
        let fusions = try await conn.query("SELECT job_id, text, generated_tokens FROM fusions")
        XCTAssertEqual(Set(try fusions.map { try $0.decode("job_id", as: String.self) }), Set(fuseIds))
        let outbox = try await conn.query("SELECT job_id, count(*) AS n FROM outbox WHERE topic = 'blend.events' GROUP BY job_id")
        XCTAssertEqual(outbox.count, count, "rejected jobs have events too")
        XCTAssertTrue(try outbox.allSatisfy { try $0.decode("n", as: Int.self) == 1 }, "one event per job")
        let events = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n", as: Int.self)
        XCTAssertEqual(events, 0, "the relay published everything")

        // Out of order: in some partition a later job was stored before an earlier one.
        var byPartition: [Int: [(offset: Int, finished: Date)]] = [:]
        for row in jobs {
            byPartition[try row.decode("kafka_partition", as: Int.self), default: []]
                .append((try row.decode("kafka_offset", as: Int.self), try row.decode("finished_at", as: Date.self)))
        }
        let inversions = byPartition.values.reduce(0) { total, entries in
            let sorted = entries.sorted { $0.offset < $1.offset }
            return total + zip(sorted, sorted.dropFirst()).filter { $0.finished > $1.finished }.count
        }
        XCTAssertGreaterThan(inversions, 0, "short fusions behind long ones finish first")

        // Each fused text is what the job fuses to alone, through the micro-batch path.
        let alone = BatchProcessor(validator: JobValidator(), ranker: ConsensusRanker(), fuser: fuser, workerId: "alone")
        var texts: [String: String] = [:]
        for row in fusions { texts[try row.decode("job_id", as: String.self)] = try row.decode("text", as: String.self) }
        for i in (0..<count) where i % 9 != 4 && i % 9 != 7 {
            let message = IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 0, offset: 0), key: nil,
                                          value: Array(Self.payload(i).utf8), timestamp: nil)
            let outcome = await alone.process(alone.validate([message]), isStored: [])[0]
            XCTAssertEqual(texts["job-\(i)"], outcome.fusion?.text, "job-\(i)")
        }
        await conn.close()
        XCTAssertGreaterThan(samples, 0)
    }

    /// A worker process fusing continuously is killed (SIGKILL) mid-run and restarted: whatever was committed
    /// at the kill was stored, and in the end every job is stored once with one event and everything commits.
    func testAContinuousFusionWorkerKilledMidRunLosesNothing() async throws {
        let count = 60
        let producer = try KafkaProducer(configuration: broker.configuration)
        let reports = try await producer.send((0..<count).map { i in
            ProducerMessage(topic: "blend.jobs", key: "k\(i % 7)", value: Array(Self.payload(i).utf8))
        }).map { try $0.get() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-cfkill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["BLENDD_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["BLENDD_DATABASE_URL"] = db.url
        env["BLENDD_KAFKA_PROPERTY_SESSION_TIMEOUT_MS"] = "6000"
        env["BLENDD_KAFKA_PROPERTY_HEARTBEAT_INTERVAL_MS"] = "500"
        env["BLENDD_BATCHING_MAX_JOBS"] = "4"
        env["BLENDD_BATCHING_CONTINUOUS_FUSION"] = "true"
        env["BLENDD_MODELS_FUSER"] = Self.fixtures.appendingPathComponent("t5-tiny").path
        env["BLENDD_OUTBOX_POLL_MS"] = "50"
        func startWorker(_ name: String) -> pid_t {
            var e = env
            e["BLENDD_WORKER_ID"] = name
            return spawnProcess([RepositoryLayout.blenddExecutable.path, "worker"], stderrPath: dir.appendingPathComponent("\(name).log").path, environment: e)!
        }
        let conn = try await PostgresConnection.connect(db.url)
        func stored() async throws -> Set<[Int64]> {
            Set(try await conn.query("SELECT kafka_partition, kafka_offset FROM jobs").map {
                [Int64(try $0.decode("kafka_partition", as: Int.self)), Int64(try $0.decode("kafka_offset", as: Int.self))]
            })
        }
        let admin = try KafkaAdmin(configuration: broker.configuration)

        let first = startWorker("w-kill")
        try await eventually(within: 120, "a quarter stored before the kill") { try await stored().count >= count / 4 }
        kill(first, SIGKILL)
        XCTAssertEqual(waitForExit(first), 128 + SIGKILL)
        let committed = try await admin.consumerGroupLag(groupId: "blendd", topic: "blend.jobs")
        let storedAtKill = try await stored()
        XCTAssertLessThan(storedAtKill.count, count, "the kill happened mid-run")
        for r in reports {
            guard let mark = committed.first(where: { $0.partition == r.partition })?.committed, r.offset < mark else { continue }
            XCTAssertTrue(storedAtKill.contains([Int64(r.partition), r.offset]), "\(r.partition)@\(r.offset) was committed (\(mark)) before it was stored")
        }

        let second = startWorker("w-after")
        try await eventually(within: 180, "all jobs stored, announced and committed") {
            let unsent: Int = try await conn.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0].decode("n")
            let lag = try await admin.consumerGroupLag(groupId: "blendd", topic: "blend.jobs").map(\.lag).reduce(0, +)
            return try await stored().count == count && unsent == 0 && lag == 0
        }
        kill(second, SIGTERM)
        XCTAssertEqual(waitForExit(second), 0)
        let outbox = try await conn.query("SELECT count(*) AS n, count(DISTINCT job_id) AS d FROM outbox WHERE topic = 'blend.events'")[0]
        XCTAssertEqual(try outbox.decode("n", as: Int.self), count, "one event per job")
        XCTAssertEqual(try outbox.decode("d", as: Int.self), count)
        let fused = try await conn.query("SELECT count(*) AS n FROM fusions")[0].decode("n", as: Int.self)
        XCTAssertEqual(fused, (0..<count).filter { $0 % 9 != 4 && $0 % 9 != 7 }.count)
        await conn.close()
    }
}

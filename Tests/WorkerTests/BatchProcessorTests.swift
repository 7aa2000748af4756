import BlendCore
import Foundation
import Inference
import XCTest
@testable import Worker

final class BatchProcessorTests: XCTestCase {
    /// Fails the jobs whose id starts with "boom", ranks the others with the real consensus ranker:
    /// stands in for a model that throws on one input of a batch.
    struct PartlyFailingRanker: CandidateRanker {
        let label = "consensus-chrf"
        func rank(_ requests: [RankRequest]) async -> [Result<RankOutcome, RankingError>] {
            let inner = await ConsensusRanker().rank(requests)
            return zip(requests, inner).map { request, result in
                request.jobId.hasPrefix("boom") ? .failure(RankingError(jobId: request.jobId, message: "tensor NaN in layer 3")) : result
            }
        }
        func run(_ tasks: [RankTask]) async -> [Result<TaskOutcome, RankingError>] {
            let inner = await ConsensusRanker().run(tasks)
            return zip(tasks, inner).map { task, result in
                task.jobId.hasPrefix("boom") ? .failure(RankingError(jobId: task.jobId, message: "tensor NaN in layer 3")) : result
            }
        }
    }

    private func processor(ranker: any CandidateRanker = ConsensusRanker()) -> BatchProcessor {
        BatchProcessor(validator: JobValidator(), ranker: ranker, fuser: TopCandidateFuser(), workerId: "w1",
                       clock: { Date(timeIntervalSince1970: 1_800_000_000) })
    }

    private func message(_ json: String, offset: Int64) -> IncomingMessage {
        IncomingMessage(coordinates: MessageCoordinates(topic: "blend.jobs", partition: 2, offset: offset), key: nil,
                        value: Array(json.utf8), timestamp: Date(timeIntervalSince1970: 1_799_999_999))
    }

    private func job(_ id: String, fuse: String = #"{"top_k": 2}"#) -> String {
        """
        {"job_id":"\(id)","instruction":"Name the capital of France.","candidates":[
          {"model":"m0","text":"I like turtles."},
          {"model":"m1","text":"The capital of France is Paris."},
          {"model":"m2","text":"Paris is the capital of France."}],"fuse":\(fuse),"metadata":{"tenant":"a"}}
        """
    }

    func testMixedBatchGivesOneOutcomePerMessageInOrder() async throws {
        let p = processor()
        let batch = p.validate([
            message(job("ok-1"), offset: 10),
            message(#"{"job_id":"bad-1","instruction":"x","candidates":[]}"#, offset: 11),
            message("not json", offset: 12),
            message(job("ok-2", fuse: "false"), offset: 13),
        ])
        XCTAssertEqual(batch.jobIds, ["ok-1", "bad-1", "kafka/blend.jobs/2/12", "ok-2"])
        let outcomes = await p.process(batch, isStored: [])
        XCTAssertEqual(outcomes.map(\.status), [.completed, .rejected, .rejected, .completed])

        let ok = outcomes[0]
        XCTAssertEqual(ok.rank?.ranks[0], 3)
        let fusion = try XCTUnwrap(ok.fusion)
        XCTAssertEqual(fusion.topK, 2)
        XCTAssertEqual(fusion.fuser, "top1")
        XCTAssertEqual(fusion.text, ok.job!.candidates[fusion.sourceIndexes[0]].text)
        XCTAssertEqual(ok.rank?.ranks[fusion.sourceIndexes[0]], 1)
        XCTAssertEqual(ok.event?.type, "blend.job.completed")
        XCTAssertEqual(ok.event?.id, "ok-1/completed")
        XCTAssertEqual(ok.event?.data.metadata, .object([.init("tenant", .string("a"))]))
        XCTAssertEqual(ok.event?.data.kafka, EventData.KafkaCoordinates(topic: "blend.jobs", partition: 2, offset: 10))
        XCTAssertEqual(ok.event?.data.ranking?.map(\.model), ["m0", "m1", "m2"])
        XCTAssertEqual(ok.event?.data.timingsMs?["queue"] ?? -1, 1000, accuracy: 1e-6)

        XCTAssertEqual(outcomes[1].event?.type, "blend.job.rejected")
        XCTAssertEqual(Set(outcomes[1].event?.data.violations?.map(\.code) ?? []), [.tooFewCandidates])
        XCTAssertEqual(outcomes[2].event?.subject, "kafka/blend.jobs/2/12")
        XCTAssertEqual(outcomes[2].rejection?.violations.map(\.code), [.notJSON])
        XCTAssertNil(outcomes[3].fusion, "fuse: false ranks only")
        XCTAssertNotNil(outcomes[3].rank)
    }

    func testStoredAndRepeatedJobsAreAcknowledgedWithoutRecomputation() async {
        let p = processor()
        let batch = p.validate([message(job("again"), offset: 1), message(job("new"), offset: 2), message(job("new"), offset: 3)])
        let outcomes = await p.process(batch, isStored: ["again"])
        XCTAssertEqual(outcomes.map(\.status), [nil, .completed, nil])
        XCTAssertNil(outcomes[0].event)
        XCTAssertNil(outcomes[2].event)
        XCTAssertEqual(outcomes.map(\.message.coordinates.offset), [1, 2, 3], "every message is accounted for, so its offset can be committed")
    }

    func testAJobThatFailsInInferenceIsFailedAndTheBatchGoesOn() async {
        let p = processor(ranker: PartlyFailingRanker())
        let outcomes = await p.process(p.validate([message(job("boom-1"), offset: 1), message(job("fine"), offset: 2)]), isStored: [])
        XCTAssertEqual(outcomes.map(\.status), [.failed, .completed])
        XCTAssertEqual(outcomes[0].error, "ranking job boom-1 failed: tensor NaN in layer 3")
        XCTAssertEqual(outcomes[0].event?.type, "blend.job.failed")
        XCTAssertEqual(outcomes[0].event?.data.error, outcomes[0].error)
        XCTAssertNil(outcomes[0].fusion)
    }

    func testTheFixtureCheckpointsRankAndFuseABatch() async throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
        let ranker = try PairRMRanker(directory: fixtures.appendingPathComponent("pairrm-tiny").path)
        let fuser = try GenFuser(directory: fixtures.appendingPathComponent("t5-tiny").path)
        let p = BatchProcessor(validator: JobValidator(), ranker: ranker, fuser: fuser, workerId: "w1")
        let outcomes = await p.process(p.validate([
            message(job("m-1", fuse: #"{"top_k": 2, "max_new_tokens": 8}"#), offset: 1),
            message(job("m-2", fuse: #"{"top_k": 3, "max_new_tokens": 8, "num_beams": 1}"#), offset: 2),
            message(job("m-3", fuse: #"{"top_k": 2, "max_new_tokens": 8, "num_beams": 2, "do_sample": true}"#), offset: 3),
        ]), isStored: [])
        // The contract already refuses beam sampling, so the third job is rejected before any model runs.
        XCTAssertEqual(outcomes.map(\.status), [.completed, .completed, .rejected], outcomes.map { $0.error ?? "" }.joined(separator: "; "))
        for ok in outcomes.prefix(2) {
            let rank = try XCTUnwrap(ok.rank)
            XCTAssertNotNil(rank.comparisons, "max_logits keeps the pairwise matrix")
            let fusion = try XCTUnwrap(ok.fusion)
            XCTAssertTrue(fusion.fuser.hasPrefix("genfuser:t5-tiny@"))
            XCTAssertGreaterThan(fusion.generatedTokens, 0)
            XCTAssertLessThanOrEqual(fusion.generatedTokens, 8)
            XCTAssertEqual(fusion.sourceIndexes.map { rank.ranks[$0] }, fusion.sourceIndexes.map { rank.ranks[$0] }.sorted())
        }
        // Both jobs have the same candidates and source, so the same ranking, whatever their batch-mates.
        XCTAssertEqual(outcomes[0].rank?.ranks, outcomes[1].rank?.ranks)
        XCTAssertEqual(outcomes[2].rejection?.violations.map(\.code), [.optionOutOfRange])
    }
}

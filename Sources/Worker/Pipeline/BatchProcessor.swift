import BlendCore
import Foundation
import Inference

/// The compute half of the pipeline for one micro-batch: validate every message, rank all
/// valid jobs together, pick each job's top-k, fuse them together, and describe each outcome.
/// It does no I/O: the caller says which job ids are already stored, and stores the result.
public struct BatchProcessor: Sendable {
    public var validator: JobValidator
    /// Every ranker served, by name; a job picks one with `rank.model`.
    public var rankers: RankerSet
    public var fuser: any CandidateFuser
    public var workerId: String
    public var clock: @Sendable () -> Date

    /// The ranker of jobs that name none.
    public var ranker: any CandidateRanker { rankers.defaultRanker }

    public init(validator: JobValidator, rankers: RankerSet, fuser: any CandidateFuser, workerId: String,
                clock: @escaping @Sendable () -> Date = Date.init) {
        var validator = validator
        // A job may name only the rankers served here.
        validator.rankers = Set(rankers.names)
        self.validator = validator
        self.rankers = rankers
        self.fuser = fuser
        self.workerId = workerId
        self.clock = clock
    }

    public init(validator: JobValidator, ranker: any CandidateRanker, fuser: any CandidateFuser, workerId: String,
                clock: @escaping @Sendable () -> Date = Date.init) {
        self.init(validator: validator, rankers: RankerSet(single: ranker), fuser: fuser, workerId: workerId, clock: clock)
    }

    /// Validates every message once; the caller then asks the store which of `jobIds` exist.
    public func validate(_ messages: [IncomingMessage]) -> ValidatedBatch {
        let verdicts = messages.map { validator.validate($0.value ?? []) }
        let ids = zip(messages, verdicts).map { message, verdict in
            switch verdict {
            case .success(let job): job.jobId
            case .failure(let rejection): rejection.jobId ?? message.coordinates.syntheticJobId
            }
        }
        return ValidatedBatch(messages: messages, verdicts: verdicts, jobIds: ids)
    }

    /// - Parameter isStored: the job ids of this batch whose results already exist.
    /// - Parameter deferFusion: leave fusions to the caller: such outcomes carry `pendingFusion` and no event
    ///   (see `completeFusion`).
    public func process(_ batch: ValidatedBatch, isStored: Set<String>, deferFusion: Bool = false) async -> [JobOutcome] {
        let messages = batch.messages
        let started = clock()
        var outcomes: [JobOutcome?] = Array(repeating: nil, count: messages.count)
        var work: [(slot: Int, job: BlendJob)] = []
        var seen = isStored
        let models = ["ranker": ranker.label, "fuser": fuser.label]

        for (slot, message) in messages.enumerated() {
            let queueMs = message.timestamp.map { max(0, started.timeIntervalSince($0) * 1000) }
            switch batch.verdicts[slot] {
            case .success(let job):
                if seen.contains(job.jobId) {
                    outcomes[slot] = JobOutcome(kind: .alreadyStored, jobId: job.jobId, message: message, job: job,
                                                timingsMs: [:], models: models)
                } else {
                    seen.insert(job.jobId)
                    work.append((slot, job))
                }
            case .failure(let rejection):
                let jobId = batch.jobIds[slot]
                if seen.contains(jobId) {
                    outcomes[slot] = JobOutcome(kind: .alreadyStored, jobId: jobId, message: message, timingsMs: [:], models: models)
                    continue
                }
                seen.insert(jobId)
                var outcome = JobOutcome(kind: .outcome(status: .rejected), jobId: jobId, message: message,
                                         rejection: rejection, timingsMs: queueMs.map { ["queue": $0] } ?? [:], models: models)
                outcome.event = event(for: outcome, metadata: nil)
                outcomes[slot] = outcome
            }
        }

        let rankStart = clock()
        // Every kind of every job in one call per ranker; each result records the ranker that served it.
        let answers = await rankers.run(work.map { ($0.job.rank.model, RankTask(job: $0.job)) })
        let rankMs = clock().timeIntervalSince(rankStart) * 1000

        var fuseSlots: [Int] = []
        var fuseRequests: [FuseRequest] = []
        var partial: [Int: JobOutcome] = [:]
        for (index, item) in work.enumerated() {
            let message = messages[item.slot]
            var timings = ["rank": rankMs]
            if let t = message.timestamp { timings["queue"] = max(0, started.timeIntervalSince(t) * 1000) }
            let served = answers[index].servedBy
            // Only blend jobs are fused: the other kinds name their ranker alone.
            var outcome = JobOutcome(kind: .outcome(status: .completed), jobId: item.job.jobId, message: message, job: item.job,
                                     timingsMs: timings, models: item.job.task == .blend ? ["ranker": served, "fuser": fuser.label] : ["ranker": served])
            switch answers[index].result {
            case .failure(let error):
                outcome.kind = .outcome(status: .failed)
                outcome.error = error.description
            case .success(.compare(let compared)): outcome.compare = compared.result(for: item.job)
            case .success(.select(let selected)): outcome.selection = selected.result(for: item.job)
            case .success(.reward(let rewarded)): outcome.reward = rewarded.result(for: item.job)
            case .success(.rank(let ranked)):
                outcome.rank = RankedJob(ranks: ranked.ranks, scores: ranked.scores, comparisons: ranked.comparisons,
                                         ranker: served, forwardPasses: ranked.forwardPasses)
                if let options = item.job.fuse {
                    let top = RankAggregation.topK(ranks: ranked.ranks, k: min(options.topK, item.job.candidates.count))
                    outcome.fusion = EventData.Fusion(text: "", fuser: fuser.label, topK: top.count, sourceIndexes: top, generatedTokens: 0)
                    fuseSlots.append(item.slot)
                    fuseRequests.append(FuseRequest(jobId: item.job.jobId, instruction: item.job.instruction, input: item.job.input,
                                                    candidates: top.map { item.job.candidates[$0].text }, options: options))
                }
            }
            partial[item.slot] = outcome
        }

        if deferFusion {
            for (i, slot) in fuseSlots.enumerated() { partial[slot]?.pendingFusion = fuseRequests[i] }
        } else if !fuseRequests.isEmpty {
            let fuseStart = clock()
            let fuseResults = await fuser.fuse(fuseRequests)
            let fuseMs = clock().timeIntervalSince(fuseStart) * 1000
            for (i, slot) in fuseSlots.enumerated() {
                guard var outcome = partial[slot] else { continue }
                outcome.timingsMs["fuse"] = fuseMs
                switch fuseResults[i] {
                case .success(let fused):
                    outcome.fusion?.text = fused.text
                    outcome.fusion?.generatedTokens = fused.generatedTokens
                case .failure(let error):
                    outcome.kind = .outcome(status: .failed)
                    outcome.error = error.description
                    outcome.fusion = nil
                }
                partial[slot] = outcome
            }
        }

        for (slot, var outcome) in partial {
            if outcome.pendingFusion == nil { outcome.event = event(for: outcome, metadata: outcome.job?.metadata) }
            outcomes[slot] = outcome
        }
        return outcomes.map { $0! }
    }

    /// The same job, recorded as failed with `reason` (used when its result cannot be stored).
    public func failed(_ outcome: JobOutcome, reason: String) -> JobOutcome {
        var failed = outcome
        failed.kind = .outcome(status: .failed)
        failed.error = reason
        failed.rank = nil
        failed.compare = nil
        failed.selection = nil
        failed.reward = nil
        failed.fusion = nil
        failed.rejection = nil
        failed.event = event(for: failed, metadata: failed.job?.metadata)
        return failed
    }

    func event(for outcome: JobOutcome, metadata: ExactJSON?) -> CompletionEvent? {
        guard let status = outcome.status else { return nil }
        let ranking = outcome.rank.map { ranked in
            ranked.ranks.indices.map { i in
                EventData.RankedCandidate(index: i, model: outcome.job?.candidates[i].model ?? "", rank: ranked.ranks[i],
                                          score: Double(ranked.scores[i]))
            }
        }
        let c = outcome.message.coordinates
        var data = EventData(jobId: outcome.jobId, status: status, ranking: ranking, fused: outcome.fusion,
                             error: outcome.error, violations: outcome.rejection?.violations,
                             timingsMs: outcome.timingsMs.isEmpty ? nil : outcome.timingsMs, models: outcome.models,
                             metadata: metadata,
                             kafka: EventData.KafkaCoordinates(topic: c.topic, partition: Int(c.partition), offset: c.offset))
        // A blend job's event keeps its shape; other kinds name themselves and carry their answer.
        if let task = outcome.job?.task, task != .blend { data.task = task }
        data.compare = outcome.compare
        data.selection = outcome.selection
        data.reward = outcome.reward
        return CompletionEvent(data: data, workerId: workerId, time: clock())
    }
}

/// Messages with their validation verdicts, between `validate` and `process`.
public struct ValidatedBatch: Sendable {
    public let messages: [IncomingMessage]
    public let verdicts: [Result<BlendJob, JobRejection>]
    /// The job id each message names, or its synthetic id when none could be read.
    public let jobIds: [String]
}

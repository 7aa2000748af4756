import BlendCore
import Foundation
import XCTest

/// The job kinds in the contract: every kind's own fields and codes, boundaries, and generated conversations.
final class JobKindsValidatorTests: XCTestCase {
    let validator = JobValidator()

    private func validate(_ object: [String: Any], limits: JobLimits = .defaults) -> Result<BlendJob, JobRejection> {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return JobValidator(limits: limits).validate(Array(data))
    }

    private func codes(_ object: [String: Any], limits: JobLimits = .defaults) -> [String: Violation.Code] {
        guard case .failure(let rejection) = validate(object, limits: limits) else { XCTFail("accepted: \(object)"); return [:] }
        return Dictionary(rejection.violations.map { ($0.path, $0.code) }, uniquingKeysWith: { a, _ in a })
    }

    static var candidates: [[String: Any]] { [["model": "m0", "text": "Paris."], ["model": "m1", "text": "Lyon, I think."], ["model": "m2", "text": "Rome"]] }
    static var pairs: [[String: Any]] { [["a": "Paris.", "b": "Lyon."], ["a": "Rome.", "b": "Paris is the capital."]] }

    static func base(_ task: JobTask) -> [String: Any] {
        var job: [String: Any] = ["job_id": "k-\(task.rawValue)", "task": task.rawValue, "instruction": "Capital of France?"]
        switch task {
        case .blend, .bestOfN, .worstOfN, .reward: job["candidates"] = candidates
        case .compare: job["pairs"] = pairs
        }
        return job
    }

    /// A value of each kind field that would be valid for its own kind.
    static var kindFieldValues: [String: Any] { [
        "candidates": candidates, "rank": ["seed": 3], "fuse": false, "pairs": pairs,
        "conversations": [["a": [["role": "USER", "content": "hi"], ["role": "ASSISTANT", "content": "hello"]],
                           "b": [["role": "USER", "content": "hi"], ["role": "ASSISTANT", "content": "hey"]]]],
        "compare": ["mode": "[A,B]"], "select": ["method": "full"], "reward": ["reference": "first"],
    ] }

    func testEveryKindAcceptsItsMinimalJobAndDefaultsItsOptions() throws {
        for task in JobTask.allCases {
            let job = try validate(Self.base(task)).get()
            XCTAssertEqual(job.task, task)
            switch task {
            case .blend: XCTAssertNotNil(job.fuse)
            case .compare:
                XCTAssertEqual(job.compare?.mode, .both)
                XCTAssertEqual(job.compareItems.map(\.a), ["Paris.", "Rome."])
                XCTAssertEqual(job.compareItems.map(\.source), ["Capital of France?", "Capital of France?"])
                XCTAssertNil(job.fuse)
            case .bestOfN, .worstOfN: XCTAssertEqual(job.select?.method, .bubble); XCTAssertNil(job.fuse)
            case .reward: XCTAssertEqual(job.reward?.reference, .mode(.longest)); XCTAssertNil(job.fuse)
            }
        }
        var blend = Self.base(.blend)
        blend.removeValue(forKey: "task")
        XCTAssertEqual(try validate(blend).get().task, .blend, "no task is a blend job")
    }

    /// Encoding a validated job and validating it again gives the same job, for every kind; a blend job
    /// encodes without `task`, as it always did.
    func testEveryKindRoundTripsThroughItsWireFormat() throws {
        for task in JobTask.allCases {
            var object = Self.base(task)
            if task == .reward { object["reward"] = ["reference_text": "Paris, of course."] }
            if task == .bestOfN { object["rank"] = ["seed": 99]; object["select"] = ["method": "full"] }
            let job = try validate(object).get()
            let encoded = try JSONEncoder().encode(job)
            let again = try validator.validate(Array(encoded)).get()
            XCTAssertEqual(again, job, "\(task)")
            let keys = Set((try JSONSerialization.jsonObject(with: encoded) as! [String: Any]).keys)
            XCTAssertEqual(keys.contains("task"), task != .blend)
            XCTAssertEqual(try JSONDecoder().decode(BlendJob.self, from: encoded), job)
        }
    }

    /// Every kind field added to every kind that does not own it: field_not_for_task at that field, whatever
    /// else the job holds.
    func testAFieldOfAnotherKindIsRejectedInEveryKind() {
        for task in JobTask.allCases {
            for (field, value) in Self.kindFieldValues where !task.ownFields.contains(field) {
                var object = Self.base(task)
                object[field] = value
                let found = codes(object)
                XCTAssertEqual(found[field], .fieldNotForTask, "\(field) in a \(task) job: \(found)")
            }
        }
    }

    func testUnknownTaskAndOptionValuesHaveTheirOwnCodes() {
        var o = Self.base(.blend); o["task"] = "rank"
        XCTAssertEqual(codes(o)["task"], .unknownTask)
        o = Self.base(.blend); o["task"] = 3
        XCTAssertEqual(codes(o)["task"], .wrongType)
        o = Self.base(.compare); o["compare"] = ["mode": "[A,B]-[B,A]"]
        XCTAssertEqual(codes(o)["compare.mode"], .unknownCompareMode)
        o = Self.base(.bestOfN); o["select"] = ["method": "tournament"]
        XCTAssertEqual(codes(o)["select.method"], .unknownSelectMethod)
        o = Self.base(.reward); o["reward"] = ["reference": "max_length"]
        XCTAssertEqual(codes(o)["reward.reference"], .unknownReferenceMode)
        o = Self.base(.reward); o["reward"] = ["reference": "first", "reference_text": "x"]
        XCTAssertEqual(codes(o)["reward.reference_text"], .conflictingFields)
        o = Self.base(.reward); o["reward"] = ["reference_text": "  "]
        XCTAssertEqual(codes(o)["reward.reference_text"], .emptyText)
        o = Self.base(.worstOfN); o["rank"] = ["mode": "bubble", "seed": 1]
        XCTAssertEqual(codes(o)["rank.mode"], .fieldNotForTask)
        o = Self.base(.compare); o["compare"] = ["mode": "[A,B]", "temperature": 1]
        XCTAssertEqual(codes(o)["compare.temperature"], .unknownField)
        for mode in ReferenceMode.allCases {
            o = Self.base(.reward); o["reward"] = ["reference": mode.rawValue]
            XCTAssertEqual(try validate(o).get().reward?.reference, .mode(mode))
        }
        for mode in CompareMode.allCases {
            o = Self.base(.compare); o["compare"] = ["mode": mode.rawValue]
            XCTAssertEqual(try validate(o).get().compare?.mode, mode)
        }
    }

    func testPairCountsAtTheirBoundaries() throws {
        var limits = JobLimits.defaults
        limits.maxPairs = 5
        func job(pairs n: Int) -> [String: Any] {
            var o = Self.base(.compare)
            o["pairs"] = (0..<n).map { ["a": "answer \($0)", "b": "other \($0)"] }
            return o
        }
        XCTAssertEqual(codes(job(pairs: 0), limits: limits)["pairs"], .noPairs)
        XCTAssertEqual(try validate(job(pairs: 1), limits: limits).get().pairs?.count, 1)
        XCTAssertEqual(try validate(job(pairs: 5), limits: limits).get().pairs?.count, 5)
        XCTAssertEqual(codes(job(pairs: 6), limits: limits)["pairs"], .tooManyPairs)
        XCTAssertEqual(try validate(job(pairs: JobLimits.defaults.maxPairs)).get().pairs?.count, JobLimits.defaults.maxPairs)
        XCTAssertEqual(codes(job(pairs: JobLimits.defaults.maxPairs + 1))["pairs"], .tooManyPairs)

        var none = Self.base(.compare); none.removeValue(forKey: "pairs")
        XCTAssertEqual(codes(none)["pairs"], .noPairs)
        var both = Self.base(.compare); both["conversations"] = Self.kindFieldValues["conversations"]
        XCTAssertEqual(codes(both)["conversations"], .conflictingFields)
        var blank = Self.base(.compare); blank["pairs"] = [["a": " ", "b": "x"], ["a": "x"], ["a": "x", "b": "y", "c": "z"]]
        let found = codes(blank)
        XCTAssertEqual(found["pairs[0].a"], .emptyText)
        XCTAssertEqual(found["pairs[1].b"], .missingField)
        XCTAssertEqual(found["pairs[2].c"], .unknownField)
        var noQuestion = Self.base(.compare); noQuestion["instruction"] = ""
        XCTAssertEqual(codes(noQuestion)["instruction"], .emptyText)
    }

    /// best_of_n, worst_of_n and reward take candidates with the blend job's limits.
    func testCandidateCountsAtTheirBoundariesForEveryCandidateKind() throws {
        var limits = JobLimits.defaults
        limits.maxCandidates = 4
        for task in [JobTask.bestOfN, .worstOfN, .reward] {
            func job(_ n: Int) -> [String: Any] {
                var o = Self.base(task)
                o["candidates"] = (0..<n).map { ["model": "m\($0)", "text": "answer \($0)"] }
                return o
            }
            XCTAssertEqual(codes(job(1), limits: limits)["candidates"], .tooFewCandidates, "\(task)")
            XCTAssertEqual(try validate(job(2), limits: limits).get().candidates.count, 2)
            XCTAssertEqual(try validate(job(4), limits: limits).get().candidates.count, 4)
            XCTAssertEqual(codes(job(5), limits: limits)["candidates"], .tooManyCandidates, "\(task)")
            var none = Self.base(task); none.removeValue(forKey: "candidates")
            XCTAssertEqual(codes(none)["candidates"], .missingField)
        }
    }

    // MARK: Conversations

    /// A random valid pair of conversations: the same user turns, different assistant turns.
    static func conversations(turns: Int, seed: UInt64) -> (a: [[String: String]], b: [[String: String]]) {
        var g = SplitMix64(seed: seed)
        var a: [[String: String]] = [], b: [[String: String]] = []
        let words = ["Paris", "é", "naïve", "\u{1F600}", "line\nbreak", "tab\there", "<Response 1>", "USER:", "  spaced  "]
        func text() -> String { (0..<Int.random(in: 1...4, using: &g)).map { _ in words.randomElement(using: &g)! }.joined(separator: " ") }
        for _ in 0..<turns {
            let question = text()
            a.append(["role": "USER", "content": question]); b.append(["role": "USER", "content": question])
            a.append(["role": "ASSISTANT", "content": text()]); b.append(["role": "ASSISTANT", "content": text()])
        }
        return (a, b)
    }

    func conversationJob(_ pairs: [(a: [[String: String]], b: [[String: String]])]) -> [String: Any] {
        ["job_id": "conv", "task": "compare", "conversations": pairs.map { ["a": $0.a, "b": $0.b] }]
    }

    func testGeneratedConversationsAreAcceptedAndFlattenedAsTheReferenceDoes() throws {
        for seed in UInt64(0)..<40 {
            let c = Self.conversations(turns: Int(seed % 4) + 1, seed: seed)
            let job = try validate(conversationJob([c])).get()
            let item = try XCTUnwrap(job.compareItems.first)
            let users = stride(from: 0, to: c.a.count, by: 2).map { c.a[$0]["content"]! }
            let input = users.enumerated().map { "USER: \($1)\nAssistant: <Response \($0 + 1)>" }.joined(separator: "\n")
            XCTAssertEqual(item.source, ConversationFlattening.instruction + input)
            XCTAssertTrue(item.source.hasPrefix("Finish the following coversation in each i-th turn"), "the reference's misspelling stays")
            let answers = stride(from: 1, to: c.b.count, by: 2).map { c.b[$0]["content"]! }
            XCTAssertEqual(item.b, answers.enumerated().map { "<Response \($0 + 1)>: \($1)" }.joined(separator: "\n"))
            XCTAssertEqual(job.instruction, "")
        }
    }

    /// Every way a generated conversation pair can be broken gets its code at the turn that breaks it.
    func testBrokenConversationsAreRejectedWithTheReasonAndTheTurn() {
        for seed in UInt64(0)..<30 {
            let c = Self.conversations(turns: Int(seed % 3) + 2, seed: seed)
            let turn = 2 * Int(seed % 2)   // a user turn: 0 or 2
            var b = c.b; b[turn]["content"]! += " (changed)"
            XCTAssertEqual(codes(conversationJob([c, (c.a, b)]))["conversations[1].b[\(turn)]"], .conversationUserTurnsDiffer)
            b = c.b; b[turn + 1]["role"] = "USER"
            XCTAssertEqual(codes(conversationJob([(c.a, b)]))["conversations[0].b[\(turn + 1)]"], .conversationNotAlternating)
            var a = c.a; a[0]["role"] = "user"
            XCTAssertEqual(codes(conversationJob([(a, c.b)]))["conversations[0].a[0]"], .conversationNotAlternating, "roles are exact")
            b = Array(c.b.dropLast(2))
            XCTAssertEqual(codes(conversationJob([(c.a, b)]))["conversations[0]"], .conversationTurnCountsDiffer)
            b = Array(c.b.dropLast())
            XCTAssertEqual(codes(conversationJob([(c.a, b)]))["conversations[0].b[\(b.count)]"], .conversationNotAlternating)
            b = c.b; b[turn + 1]["content"] = ""
            XCTAssertEqual(codes(conversationJob([(c.a, b)]))["conversations[0].b[\(turn + 1)]"], .conversationEmptyTurn)
        }
        XCTAssertEqual(codes(conversationJob([([], [])]))["conversations[0].a"], .conversationEmpty)
        var withInstruction = conversationJob([Self.conversations(turns: 1, seed: 1)])
        withInstruction["instruction"] = "Judge these."
        XCTAssertEqual(codes(withInstruction)["instruction"], .fieldNotForTask)
        var badTurn = conversationJob([Self.conversations(turns: 1, seed: 1)])
        badTurn["conversations"] = [["a": [["role": "USER"]], "b": "nope"]]
        let found = codes(badTurn)
        XCTAssertEqual(found["conversations[0].a[0].content"], .missingField)
        XCTAssertEqual(found["conversations[0].b"], .wrongType)
    }

    func testCompletedEventTypesNameTheKind() {
        XCTAssertEqual(JobTask.blend.completedEventType, "blend.job.completed")
        XCTAssertEqual(JobTask.allCases.map(\.completedEventType), [
            "blend.job.completed", "blend.job.compare.completed", "blend.job.best_of_n.completed",
            "blend.job.worst_of_n.completed", "blend.job.reward.completed",
        ])
        let failed = CompletionEvent(data: EventData(jobId: "x", status: .failed, error: "boom"), workerId: "w", time: Date())
        XCTAssertEqual(failed.type, "blend.job.failed")
    }

    func testJudgementProbabilitiesAndVerdicts() {
        for x in stride(from: Float(-40), through: 40, by: 0.37) {
            for mode in CompareMode.allCases {
                let j = PairJudgement.pairwise(ab: x, ba: -x / 3, mode: mode)
                XCTAssertTrue((0...1).contains(j.probability))
                XCTAssertEqual(j.verdict, j.logit > 0 ? .a : j.logit < 0 ? .b : .tie)
                // The probability always agrees with the verdict's side.
                if j.logit > 0 { XCTAssertGreaterThanOrEqual(j.probability, 0.5) }
                if j.logit < 0 { XCTAssertLessThanOrEqual(j.probability, 0.5) }
            }
        }
        XCTAssertEqual(PairJudgement.pairwise(ab: 0.25, ba: 0.25, mode: .both).verdict, .tie)
        XCTAssertEqual(PairJudgement.pairwise(ab: 1, ba: nil, mode: .forward).referenceLogit, 1)
        XCTAssertEqual(PairJudgement.pairwise(ab: nil, ba: 1, mode: .reverse).referenceLogit, 1, "the reference's un-negated [B,A]")
        XCTAssertEqual(PairJudgement.pairwise(ab: nil, ba: 1, mode: .reverse).logit, -1)
        XCTAssertEqual(PairJudgement.pairwise(ab: 1, ba: -1, mode: .both).referenceLogit, 2, "the reference's sum")
        XCTAssertEqual(PairJudgement.pairwise(ab: 1, ba: -1, mode: .both).logit, 1, "our average")
        XCTAssertEqual(PairJudgement.sigmoid(-1000), 0)
        XCTAssertEqual(PairJudgement.sigmoid(1000), 1)
    }
}

import Foundation

/// Turns the bytes of a jobs-topic message into a `BlendJob`, or into every violation it has.
/// The same rules are stated in `schemas/job.schema.json`.
public struct JobValidator: Sendable {
    public var limits: JobLimits
    /// The ranker names a job may ask for in `rank.model` (those the worker serves); nil accepts any well-formed name.
    public var rankers: Set<String>?

    public init(limits: JobLimits = .defaults, rankers: Set<String>? = nil) {
        self.limits = limits
        self.rankers = rankers
    }

    public static let topLevelFields: Set<String> = Set(["job_id", "task", "instruction", "input", "metadata"]).union(JobTask.kindFields)
    static let candidateFields: Set<String> = ["model", "text"]
    static let rankFields: Set<String> = ["mode", "seed", "model"]
    static let pairFields: Set<String> = ["a", "b"]
    static let turnFields: Set<String> = ["role", "content"]
    static let compareFields: Set<String> = ["mode"]
    static let selectFields: Set<String> = ["method"]
    static let rewardFields: Set<String> = ["reference", "reference_text"]
    static let fuseFields = Set(BlendJob.FuseOptions.CodingKeys.allCases.map(\.rawValue))
    /// Largest integer a JSON number carries exactly (2^53).
    static let maxExactInteger: Double = 9_007_199_254_740_992

    public func validate(_ bytes: some Collection<UInt8>) -> Result<BlendJob, JobRejection> {
        let bytes = Array(bytes)
        var violations: [Violation] = []
        if bytes.count > limits.maxJobBytes {
            violations.append(Violation(.jobTooLarge, at: "", "the message is \(bytes.count) bytes; at most \(limits.maxJobBytes) are allowed"))
        }
        if let offset = UTF8Validation.firstInvalidOffset(in: bytes) {
            violations.append(Violation(.invalidUTF8, at: "", "the message is not valid UTF-8 (first bad byte at offset \(offset))"))
            return .failure(JobRejection(jobId: nil, violations: violations))
        }
        let parsed: JSONParser.Result
        do {
            parsed = try JSONParser.parse(bytes, maxDepth: JobLimits.maxNestingDepth)
        } catch {
            violations.append(Violation(.notJSON, at: "", "the message is not JSON: \(error)"))
            return .failure(JobRejection(jobId: nil, violations: violations))
        }
        var reported: Set<String> = []
        for issue in parsed.issues where reported.insert("\(issue.kind) \(issue.path)").inserted {
            switch issue.kind {
            case .loneSurrogate:
                violations.append(Violation(.loneSurrogate, at: issue.path, "a \\u escape at byte \(issue.offset) is a lone UTF-16 surrogate, which is no character"))
            case .duplicateKey:
                violations.append(Violation(.duplicateField, at: issue.path, "the key appears more than once in its object (again at byte \(issue.offset))"))
            case .nestingTooDeep:
                violations.append(Violation(.nestingTooDeep, at: issue.path, "arrays and objects nest deeper than \(JobLimits.maxNestingDepth) levels here (the job object is level 1)"))
            }
        }
        return validate(exact: parsed.value, priorViolations: violations)
    }

    /// Validates a document built in code (numbers as Doubles).
    public func validate(document: JSONValue, priorViolations: [Violation] = []) -> Result<BlendJob, JobRejection> {
        validate(exact: ExactJSON(document), priorViolations: priorViolations)
    }

    public func validate(exact: ExactJSON, priorViolations: [Violation] = []) -> Result<BlendJob, JobRejection> {
        var check = Checker(limits: limits, rankers: rankers, violations: priorViolations)
        let document = exact.jsonValue
        guard case .object(let fields) = document else {
            check.add(.notObject, "", "a job must be a JSON object, found \(document.typeName)")
            return .failure(JobRejection(jobId: nil, violations: check.violations))
        }
        check.unknownFields(in: fields, allowed: Self.topLevelFields, at: "")

        let jobId = check.jobId(fields["job_id"])
        guard let task = check.task(fields["task"]) else {
            // Without a kind the rest of the job has no rules to follow; the common fields are still checked.
            _ = check.text(fields["instruction"], at: "instruction", required: false, mayBeEmpty: true)
            _ = check.text(fields["input"], at: "input", required: false, mayBeEmpty: true)
            _ = check.metadata(exact["metadata"])
            return .failure(JobRejection(jobId: jobId, violations: check.violations))
        }
        check.fieldsOfOtherKinds(in: fields, task: task)

        // Conversations carry their own instruction and input: the reference's constant and the user turns.
        let conversational = task == .compare && fields["conversations"] != nil
        var instruction: String? = ""
        var input: String? = ""
        if conversational {
            for field in ["instruction", "input"] where fields[field] != nil {
                check.add(.fieldNotForTask, field, "\(field) does not apply to conversations: they are judged against the reference's constant instruction and their user turns")
            }
        } else {
            instruction = check.text(fields["instruction"], at: "instruction", required: true, mayBeEmpty: true)
            input = check.text(fields["input"], at: "input", required: false, mayBeEmpty: true)
            if let instruction, let input,
               instruction.allSatisfy(\.isWhitespace), input.allSatisfy(\.isWhitespace) {
                let what = task == .compare ? "judge the pairs" : "rank the candidates"
                check.add(.emptyText, "instruction", "instruction and input are both empty; there is nothing to \(what) against")
            }
        }
        // The kind's fields first, then metadata: violations are reported in the order of the job's sections.
        var make: ((ExactJSON?) -> BlendJob)?
        switch task {
        case .blend:
            let candidates = check.candidates(fields["candidates"])
            let rank = check.rankOptions(fields["rank"])
            let candidateCount: Int? = if case .array(let items) = fields["candidates"] { items.count } else { nil }
            let fuse = check.fuseOptions(fields["fuse"], candidateCount: candidateCount)
            if let jobId, let instruction, let candidates, let rank, let fuse {
                let fuseOptions: BlendJob.FuseOptions? = if case .fuse(let o) = fuse { o } else { nil }
                make = { BlendJob(jobId: jobId, instruction: instruction, input: input ?? "", candidates: candidates,
                                  rank: rank, fuse: fuseOptions, metadata: $0) }
            }
        case .compare:
            let pairs = check.comparePairs(fields["pairs"], conversations: fields["conversations"])
            let options = check.compareOptions(fields["compare"])
            let rank = check.rankOptions(fields["rank"], seedOnlyFor: task)
            if let jobId, let instruction, let pairs, let options, let rank {
                make = { BlendJob(jobId: jobId, task: .compare, instruction: instruction, input: input ?? "", rank: rank,
                                  pairs: pairs.pairs, conversations: pairs.conversations, compare: options, metadata: $0) }
            }
        case .bestOfN, .worstOfN:
            let candidates = check.candidates(fields["candidates"])
            let rank = check.rankOptions(fields["rank"], seedOnlyFor: task)
            let select = check.selectOptions(fields["select"])
            if let jobId, let instruction, let candidates, let rank, let select {
                make = { BlendJob(jobId: jobId, task: task, instruction: instruction, input: input ?? "", candidates: candidates,
                                  rank: rank, select: select, metadata: $0) }
            }
        case .reward:
            let candidates = check.candidates(fields["candidates"])
            let reward = check.rewardOptions(fields["reward"])
            let rank = check.rankOptions(fields["rank"], seedOnlyFor: task)
            if let jobId, let instruction, let candidates, let reward, let rank {
                make = { BlendJob(jobId: jobId, task: .reward, instruction: instruction, input: input ?? "", candidates: candidates,
                                  rank: rank, reward: reward, metadata: $0) }
            }
        }
        let metadata = check.metadata(exact["metadata"])
        guard check.violations.isEmpty, let make else {
            return .failure(JobRejection(jobId: jobId, violations: check.violations))
        }
        return .success(make(metadata))
    }
}

/// Collects violations while reading a job's fields; every reader returns nil when its field is unusable.
private struct Checker {
    let limits: JobLimits
    let rankers: Set<String>?
    var violations: [Violation]

    mutating func add(_ code: Violation.Code, _ path: String, _ message: String) {
        violations.append(Violation(code, at: path, message))
    }

    mutating func unknownFields(in fields: [String: JSONValue], allowed: Set<String>, at path: String) {
        for key in fields.keys.sorted() where !allowed.contains(key) {
            add(.unknownField, JSONPath.member(path, key), "\(Self.quote(key)) is not a field here; allowed: \(allowed.sorted().joined(separator: ", "))")
        }
    }

    mutating func wrongType(_ value: JSONValue, at path: String, expected: String) {
        add(.wrongType, path, "expected \(expected), found \(value.typeName)")
    }

    mutating func jobId(_ value: JSONValue?) -> String? {
        guard let value else { add(.missingField, "job_id", "job_id is required"); return nil }
        guard case .string(let id) = value else { wrongType(value, at: "job_id", expected: "a string"); return nil }
        if id.isEmpty || id.utf8.count > JobLimits.maxJobIdLength {
            add(.invalidJobId, "job_id", "job_id must be 1 to \(JobLimits.maxJobIdLength) characters long, found \(id.utf8.count)")
            return nil
        }
        if let bad = id.unicodeScalars.first(where: { !Self.isJobIdScalar($0) }) {
            add(.invalidJobId, "job_id", "job_id \(Self.quote(id)) has \(Self.quote(String(bad))) outside [A-Za-z0-9._:-]")
            return nil
        }
        return id
    }

    static func isJobIdScalar(_ s: Unicode.Scalar) -> Bool {
        switch s {
        case "a"..."z", "A"..."Z", "0"..."9", ".", "_", ":", "-": true
        default: false
        }
    }

    mutating func text(_ value: JSONValue?, at path: String, required: Bool, mayBeEmpty: Bool) -> String? {
        guard let value else {
            if required { add(.missingField, path, "\(path) is required") }
            return required ? nil : ""
        }
        guard case .string(let text) = value else { wrongType(value, at: path, expected: "a string"); return nil }
        let bytes = text.utf8.count
        if bytes > limits.maxTextBytes {
            add(.textTooLarge, path, "\(path) is \(bytes) bytes; at most \(limits.maxTextBytes) are allowed")
            return nil
        }
        if !mayBeEmpty, text.allSatisfy(\.isWhitespace) {
            add(.emptyText, path, "\(path) is empty")
            return nil
        }
        if text.utf8.contains(0) {
            add(.nulCharacter, path, "\(path) contains the character U+0000, which cannot be stored")
            return nil
        }
        return text
    }

    mutating func candidates(_ value: JSONValue?) -> [BlendJob.Candidate]? {
        guard let value else { add(.missingField, "candidates", "candidates is required"); return nil }
        guard case .array(let items) = value else { wrongType(value, at: "candidates", expected: "an array"); return nil }
        if items.count < JobLimits.minCandidates {
            add(.tooFewCandidates, "candidates", "a job needs at least \(JobLimits.minCandidates) candidates, found \(items.count)")
        } else if items.count > limits.maxCandidates {
            add(.tooManyCandidates, "candidates", "a job may have at most \(limits.maxCandidates) candidates, found \(items.count)")
        }
        var result: [BlendJob.Candidate] = []
        for (i, item) in items.enumerated() {
            let path = "candidates[\(i)]"
            guard case .object(let fields) = item else { wrongType(item, at: path, expected: "an object"); continue }
            unknownFields(in: fields, allowed: JobValidator.candidateFields, at: path)
            let model = modelName(fields["model"], at: "\(path).model")
            let text = text(fields["text"], at: "\(path).text", required: true, mayBeEmpty: false)
            if let model, let text { result.append(.init(model: model, text: text)) }
        }
        return result.count == items.count && (JobLimits.minCandidates...limits.maxCandidates).contains(items.count) ? result : nil
    }

    mutating func modelName(_ value: JSONValue?, at path: String) -> String? {
        guard let value else { add(.missingField, path, "\(path) is required"); return nil }
        guard case .string(let name) = value else { wrongType(value, at: path, expected: "a string"); return nil }
        if name.allSatisfy(\.isWhitespace) { add(.emptyText, path, "\(path) is empty"); return nil }
        if name.utf8.contains(0) { add(.nulCharacter, path, "\(path) contains the character U+0000, which cannot be stored"); return nil }
        if name.count > limits.maxModelNameLength {
            add(.textTooLarge, path, "\(path) is \(name.count) characters; at most \(limits.maxModelNameLength) are allowed")
            return nil
        }
        return name
    }

    /// - Parameter seedOnlyFor: a job of another kind than blend: its `rank` carries no mode (best/worst-of-n:
    ///   the bubble seed and the ranker; compare and reward: the ranker only).
    mutating func rankOptions(_ value: JSONValue?, seedOnlyFor task: JobTask? = nil) -> BlendJob.RankOptions? {
        guard let value else { return BlendJob.RankOptions() }
        guard case .object(let fields) = value else { wrongType(value, at: "rank", expected: "an object"); return nil }
        unknownFields(in: fields, allowed: JobValidator.rankFields, at: "rank")
        if let task, fields["mode"] != nil {
            let how = task == .bestOfN || task == .worstOfN ? "it chooses with select.method; rank may only carry the seed and the ranker"
                : "rank may only name the ranker"
            add(.fieldNotForTask, "rank.mode", "rank.mode does not apply to a \(task.rawValue) job: \(how)")
            return nil
        }
        if let task, task == .compare || task == .reward, fields["seed"] != nil {
            add(.fieldNotForTask, "rank.seed", "rank.seed does not apply to a \(task.rawValue) job: nothing in it is ordered at random; rank may only name the ranker")
            return nil
        }
        var options = BlendJob.RankOptions()
        var ok = true
        if let mode = fields["mode"] {
            if case .string(let name) = mode {
                if let m = RankMode(rawValue: name) { options.mode = m } else {
                    add(.unknownRankMode, "rank.mode", "unknown rank mode \(Self.quote(name)); known: \(RankMode.allCases.map(\.rawValue).joined(separator: ", "))")
                    ok = false
                }
            } else { wrongType(mode, at: "rank.mode", expected: "a string"); ok = false }
        }
        if let seed = fields["seed"] {
            if let s = seedValue(seed, at: "rank.seed") { options.seed = s } else { ok = false }
        }
        if let model = fields["model"] {
            if case .string(let name) = model {
                if let problem = BlendConfiguration.Models.rankerNameProblem(name) {
                    add(.unknownRanker, "rank.model", "\(Self.quote(name)) is not a ranker name: \(problem)")
                    ok = false
                } else if let served = rankers, !served.contains(name) {
                    add(.unknownRanker, "rank.model", "no ranker named \(Self.quote(name)) is configured; configured: \(served.sorted().joined(separator: ", "))")
                    ok = false
                } else {
                    options.model = name
                }
            } else { wrongType(model, at: "rank.model", expected: "a string"); ok = false }
        }
        return ok ? options : nil
    }

    enum FuseChoice { case rankOnly, fuse(BlendJob.FuseOptions) }

    /// `fuse` is `false` (rank only), `true` (defaults) or an object of generation options; nil when invalid.
    mutating func fuseOptions(_ value: JSONValue?, candidateCount: Int?) -> FuseChoice? {
        // The default top_k (3) shrinks to the candidate count; an explicit one must fit.
        var defaults = BlendJob.FuseOptions()
        defaults.topK = min(defaults.topK, max(1, candidateCount ?? defaults.topK))
        guard let value else { return .fuse(defaults) }
        switch value {
        case .bool(false): return .rankOnly
        case .bool(true): return .fuse(defaults)
        case .object(let fields):
            unknownFields(in: fields, allowed: JobValidator.fuseFields, at: "fuse")
            let before = violations.count
            var o = defaults
            let topKCap = min(limits.maxTopK, candidateCount ?? limits.maxTopK)
            if let v = integer(fields["top_k"], at: "fuse.top_k") {
                if (1...max(1, topKCap)).contains(v) { o.topK = v } else {
                    add(.topKOutOfRange, "fuse.top_k", "top_k must be between 1 and \(topKCap) (the smaller of max_top_k \(limits.maxTopK) and the candidate count), found \(v)")
                }
            }
            o.maxNewTokens = ranged(fields["max_new_tokens"], "fuse.max_new_tokens", 1...limits.maxNewTokens) ?? o.maxNewTokens
            o.minNewTokens = ranged(fields["min_new_tokens"], "fuse.min_new_tokens", 0...o.maxNewTokens) ?? o.minNewTokens
            o.numBeams = ranged(fields["num_beams"], "fuse.num_beams", 1...limits.maxBeams) ?? o.numBeams
            o.lengthPenalty = rangedReal(fields["length_penalty"], "fuse.length_penalty", -10...10, openLow: false) ?? o.lengthPenalty
            o.earlyStopping = boolean(fields["early_stopping"], at: "fuse.early_stopping") ?? o.earlyStopping
            o.doSample = boolean(fields["do_sample"], at: "fuse.do_sample") ?? o.doSample
            o.temperature = rangedReal(fields["temperature"], "fuse.temperature", 0...100, openLow: true) ?? o.temperature
            o.topP = rangedReal(fields["top_p"], "fuse.top_p", 0...1, openLow: true) ?? o.topP
            o.sampleTopK = ranged(fields["sample_top_k"], "fuse.sample_top_k", 0...1000) ?? o.sampleTopK
            if let seed = fields["seed"] { o.seed = seedValue(seed, at: "fuse.seed") }
            if o.doSample && o.numBeams > 1 {
                add(.optionOutOfRange, "fuse.num_beams", "sampling (do_sample true) decodes one beam; num_beams must be 1, found \(o.numBeams)")
            }
            return violations.count == before ? .fuse(o) : nil
        default:
            wrongType(value, at: "fuse", expected: "an object or a boolean")
            return nil
        }
    }

    mutating func metadata(_ value: ExactJSON?) -> ExactJSON? {
        guard let value else { return nil }
        guard case .object = value else { wrongType(value.jsonValue, at: "metadata", expected: "an object"); return nil }
        let size = value.serialized().utf8.count
        if size > limits.maxMetadataBytes {
            add(.metadataTooLarge, "metadata", "metadata is \(size) bytes as JSON; at most \(limits.maxMetadataBytes) are allowed")
            return nil
        }
        if let path = Self.firstNul(in: value, at: "metadata") {
            add(.nulCharacter, path, "\(path) contains the character U+0000, which PostgreSQL cannot store as text")
            return nil
        }
        return value
    }

    /// The path of the first key or string holding U+0000, if any.
    static func firstNul(in value: ExactJSON, at path: String) -> String? {
        switch value {
        case .string(let s): return s.utf8.contains(0) ? path : nil
        case .array(let items):
            for (i, item) in items.enumerated() { if let p = firstNul(in: item, at: JSONPath.index(path, i)) { return p } }
        case .object(let members):
            for member in members {
                let memberPath = JSONPath.member(path, member.key)
                if member.key.utf8.contains(0) { return memberPath }
                if let p = firstNul(in: member.value, at: memberPath) { return p }
            }
        default: break
        }
        return nil
    }

    mutating func integer(_ value: JSONValue?, at path: String) -> Int? {
        guard let value else { return nil }
        // Below 2^53 strictly: 2^53 + 1 reads as 2^53, so 2^53 itself may stand for a larger literal.
        guard case .number(let n) = value, n.rounded() == n, abs(n) < JobValidator.maxExactInteger else {
            wrongType(value, at: path, expected: "an integer"); return nil
        }
        return Int(n)
    }

    mutating func ranged(_ value: JSONValue?, _ path: String, _ range: ClosedRange<Int>) -> Int? {
        guard let v = integer(value, at: path) else { return nil }
        guard range.contains(v) else {
            add(.optionOutOfRange, path, "\(path) must be between \(range.lowerBound) and \(range.upperBound), found \(v)")
            return nil
        }
        return v
    }

    mutating func rangedReal(_ value: JSONValue?, _ path: String, _ range: ClosedRange<Double>, openLow: Bool) -> Double? {
        guard let value else { return nil }
        guard case .number(let v) = value else { wrongType(value, at: path, expected: "a number"); return nil }
        let low = openLow ? v > range.lowerBound : v >= range.lowerBound
        guard low, v <= range.upperBound else {
            let lowText = openLow ? "greater than \(Self.format(range.lowerBound))" : "at least \(Self.format(range.lowerBound))"
            add(.optionOutOfRange, path, "\(path) must be \(lowText) and at most \(Self.format(range.upperBound)), found \(Self.format(v))")
            return nil
        }
        return v
    }

    mutating func boolean(_ value: JSONValue?, at path: String) -> Bool? {
        guard let value else { return nil }
        guard case .bool(let b) = value else { wrongType(value, at: path, expected: "a boolean"); return nil }
        return b
    }

    mutating func seedValue(_ value: JSONValue, at path: String) -> UInt64? {
        guard let v = integer(value, at: path) else { return nil }
        guard v >= 0 else { add(.optionOutOfRange, path, "\(path) must be a non-negative integer, found \(v)"); return nil }
        return UInt64(v)
    }

    mutating func task(_ value: JSONValue?) -> JobTask? {
        guard let value else { return .blend }
        guard case .string(let name) = value else { wrongType(value, at: "task", expected: "a string"); return nil }
        guard let task = JobTask(rawValue: name) else {
            add(.unknownTask, "task", "unknown task \(Self.quote(name)); known: \(JobTask.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return task
    }

    mutating func fieldsOfOtherKinds(in fields: [String: JSONValue], task: JobTask) {
        for key in fields.keys.sorted() where JobTask.kindFields.contains(key) && !task.ownFields.contains(key) {
            let owners = JobTask.kinds(owning: key).map(\.rawValue).joined(separator: ", ")
            add(.fieldNotForTask, key, "\(key) does not apply to a \(task.rawValue) job; it belongs to \(owners) jobs")
        }
    }

    /// `pairs` or `conversations` (exactly one, 1 to `limits.maxPairs` items); nil when invalid.
    mutating func comparePairs(_ pairs: JSONValue?, conversations: JSONValue?) -> (pairs: [BlendJob.ComparePair]?, conversations: [BlendJob.ConversationPair]?)? {
        switch (pairs, conversations) {
        case (nil, nil):
            add(.noPairs, "pairs", "a compare job needs pairs (or conversations) to judge")
            return nil
        case (.some, .some):
            add(.conflictingFields, "conversations", "a compare job judges either pairs or conversations, not both")
            return nil
        case (.some(let value), nil):
            guard let items = pairItems(value, at: "pairs") else { return nil }
            var result: [BlendJob.ComparePair] = []
            for (i, item) in items.enumerated() {
                let path = "pairs[\(i)]"
                guard case .object(let fields) = item else { wrongType(item, at: path, expected: "an object"); continue }
                unknownFields(in: fields, allowed: JobValidator.pairFields, at: path)
                let a = text(fields["a"], at: "\(path).a", required: true, mayBeEmpty: false)
                let b = text(fields["b"], at: "\(path).b", required: true, mayBeEmpty: false)
                if let a, let b { result.append(.init(a: a, b: b)) }
            }
            return result.count == items.count ? (result, nil) : nil
        case (nil, .some(let value)):
            guard let items = pairItems(value, at: "conversations") else { return nil }
            var result: [BlendJob.ConversationPair] = []
            for (i, item) in items.enumerated() {
                let path = "conversations[\(i)]"
                guard case .object(let fields) = item else { wrongType(item, at: path, expected: "an object"); continue }
                unknownFields(in: fields, allowed: JobValidator.pairFields, at: path)
                let a = turns(fields["a"], at: "\(path).a")
                let b = turns(fields["b"], at: "\(path).b")
                guard let a, let b else { continue }
                switch ConversationFlattening.flatten(a: a, b: b) {
                case .success: result.append(.init(a: a, b: b))
                case .failure(let problem): conversationProblem(problem, at: path)
                }
            }
            return result.count == items.count ? (nil, result) : nil
        }
    }

    private mutating func pairItems(_ value: JSONValue, at path: String) -> [JSONValue]? {
        guard case .array(let items) = value else { wrongType(value, at: path, expected: "an array"); return nil }
        if items.isEmpty {
            add(.noPairs, path, "\(path) is empty; a compare job needs at least one pair to judge")
            return nil
        }
        if items.count > limits.maxPairs {
            add(.tooManyPairs, path, "a compare job may judge at most \(limits.maxPairs) pairs, found \(items.count)")
            return nil
        }
        return items
    }

    /// The turns of one side; shape only (the flattening judges roles and contents).
    private mutating func turns(_ value: JSONValue?, at path: String) -> [ConversationTurn]? {
        guard let value else { add(.missingField, path, "\(path) is required"); return nil }
        guard case .array(let items) = value else { wrongType(value, at: path, expected: "an array of turns"); return nil }
        var result: [ConversationTurn] = []
        for (i, item) in items.enumerated() {
            let turnPath = "\(path)[\(i)]"
            guard case .object(let fields) = item else { wrongType(item, at: turnPath, expected: "an object"); continue }
            unknownFields(in: fields, allowed: JobValidator.turnFields, at: turnPath)
            let role = text(fields["role"], at: "\(turnPath).role", required: true, mayBeEmpty: true)
            let content = text(fields["content"], at: "\(turnPath).content", required: true, mayBeEmpty: true)
            if let role, let content { result.append(ConversationTurn(role: role, content: content)) }
        }
        return result.count == items.count ? result : nil
    }

    private mutating func conversationProblem(_ problem: ConversationProblem, at path: String) {
        let code: Violation.Code = switch problem.kind {
        case .empty: .conversationEmpty
        case .emptyTurn: .conversationEmptyTurn
        case .notAlternating: .conversationNotAlternating
        case .turnCountsDiffer: .conversationTurnCountsDiffer
        case .userTurnsDiffer: .conversationUserTurnsDiffer
        }
        // A user turn that differs is pointed at on side b (a's is the one b must repeat).
        var at = path
        if let side = problem.side ?? (problem.turn != nil ? "b" : nil) { at += ".\(side)" }
        if let turn = problem.turn { at += "[\(turn)]" }
        add(code, at, problem.message)
    }

    mutating func compareOptions(_ value: JSONValue?) -> BlendJob.CompareOptions? {
        guard let value else { return BlendJob.CompareOptions() }
        guard case .object(let fields) = value else { wrongType(value, at: "compare", expected: "an object"); return nil }
        unknownFields(in: fields, allowed: JobValidator.compareFields, at: "compare")
        guard let mode = fields["mode"] else { return BlendJob.CompareOptions() }
        guard case .string(let name) = mode else { wrongType(mode, at: "compare.mode", expected: "a string"); return nil }
        guard let m = CompareMode(rawValue: name) else {
            add(.unknownCompareMode, "compare.mode", "unknown compare mode \(Self.quote(name)); known: \(CompareMode.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return BlendJob.CompareOptions(mode: m)
    }

    mutating func selectOptions(_ value: JSONValue?) -> BlendJob.SelectOptions? {
        guard let value else { return BlendJob.SelectOptions() }
        guard case .object(let fields) = value else { wrongType(value, at: "select", expected: "an object"); return nil }
        unknownFields(in: fields, allowed: JobValidator.selectFields, at: "select")
        guard let method = fields["method"] else { return BlendJob.SelectOptions() }
        guard case .string(let name) = method else { wrongType(method, at: "select.method", expected: "a string"); return nil }
        guard let m = SelectMethod(rawValue: name) else {
            add(.unknownSelectMethod, "select.method", "unknown select method \(Self.quote(name)); known: \(SelectMethod.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return BlendJob.SelectOptions(method: m)
    }

    mutating func rewardOptions(_ value: JSONValue?) -> BlendJob.RewardOptions? {
        guard let value else { return BlendJob.RewardOptions() }
        guard case .object(let fields) = value else { wrongType(value, at: "reward", expected: "an object"); return nil }
        unknownFields(in: fields, allowed: JobValidator.rewardFields, at: "reward")
        switch (fields["reference"], fields["reference_text"]) {
        case (nil, nil):
            return BlendJob.RewardOptions()
        case (.some, .some):
            add(.conflictingFields, "reward.reference_text", "a reward job names its reference by a rule (reference) or gives it (reference_text), not both")
            return nil
        case (.some(let mode), nil):
            guard case .string(let name) = mode else { wrongType(mode, at: "reward.reference", expected: "a string"); return nil }
            guard let m = ReferenceMode(rawValue: name) else {
                add(.unknownReferenceMode, "reward.reference", "unknown reference mode \(Self.quote(name)); known: \(ReferenceMode.allCases.map(\.rawValue).joined(separator: ", "))")
                return nil
            }
            return BlendJob.RewardOptions(reference: .mode(m))
        case (nil, .some(let value)):
            guard let t = text(value, at: "reward.reference_text", required: true, mayBeEmpty: false) else { return nil }
            return BlendJob.RewardOptions(reference: .text(t))
        }
    }

    static func format(_ v: Double) -> String {
        v.rounded() == v && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    /// Quotes a user value for a message, shortened so a log line stays readable.
    static func quote(_ s: String) -> String {
        let shown = s.count > 40 ? String(s.prefix(40)) + "…" : s
        return "\"" + shown.unicodeScalars.map { $0.value < 0x20 ? String(format: "\\u%04X", $0.value) : String($0) }.joined() + "\""
    }
}

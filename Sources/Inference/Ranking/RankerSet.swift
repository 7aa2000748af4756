/// The rankers one worker serves, by the names jobs give in `rank.model` (`models.rankers`), and the
/// one that serves jobs naming none. Jobs of a batch that share a ranker share its forward batches.
public struct RankerSet: Sendable {
    public let rankers: [String: any CandidateRanker]
    public let defaultName: String

    public init(_ rankers: [String: any CandidateRanker], defaultName: String) {
        precondition(rankers[defaultName] != nil, "the default ranker \(defaultName) is not among \(rankers.keys.sorted())")
        self.rankers = rankers
        self.defaultName = defaultName
    }

    /// One ranker, serving every job under the name `default`.
    public init(single ranker: any CandidateRanker, name: String = "default") {
        self.init([name: ranker], defaultName: name)
    }

    public var names: [String] { rankers.keys.sorted() }
    public var defaultRanker: any CandidateRanker { rankers[defaultName]! }

    /// The ranker a job asked for (nil: the default). Names are checked by the validator, so an unknown
    /// one cannot reach here; it falls back to the default rather than trap.
    public func ranker(named name: String?) -> (name: String, ranker: any CandidateRanker) {
        if let name, let ranker = rankers[name] { return (name, ranker) }
        return (defaultName, defaultRanker)
    }

    /// The positions of `requested` grouped by the ranker that serves each, groups in name order.
    func partition(_ requested: [String?]) -> [(name: String, ranker: any CandidateRanker, indexes: [Int])] {
        var groups: [String: [Int]] = [:]
        for (i, name) in requested.enumerated() { groups[ranker(named: name).name, default: []].append(i) }
        return groups.keys.sorted().map { ($0, rankers[$0]!, groups[$0]!) }
    }

    /// Answers each task with the ranker it names (nil: the default), in one call per ranker so the tasks that share
    /// a ranker share its forward batches; results in the order given, each with the label of the ranker that served it.
    public func run(_ tasks: [(ranker: String?, task: RankTask)]) async -> [(result: Result<TaskOutcome, RankingError>, servedBy: String)] {
        var answers = [(result: Result<TaskOutcome, RankingError>, servedBy: String)?](repeating: nil, count: tasks.count)
        for group in partition(tasks.map(\.ranker)) {
            let results = await group.ranker.run(group.indexes.map { tasks[$0].task })
            for (index, result) in zip(group.indexes, results) { answers[index] = (result, group.ranker.label) }
        }
        return answers.map { $0! }
    }

    /// For logs and the workers table: the label of a lone ranker, else `name=label` pairs with the default first.
    public var label: String {
        if rankers.count == 1 { return defaultRanker.label }
        let others = names.filter { $0 != defaultName }
        return ([defaultName] + others).map { "\($0)=\(rankers[$0]!.label)" }.joined(separator: ",")
    }
}

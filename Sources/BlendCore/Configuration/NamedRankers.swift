/// The rankers a worker serves, by the names jobs use in `rank.model`.
extension BlendConfiguration.Models {
    /// The name `models.ranker` is served under (and the weight-free ranker when no ranker is configured).
    public static let unnamedRanker = "default"

    /// Every ranker by name, names in order: `models.rankers`, plus `default` for `models.ranker` when it
    /// is set or when nothing is named (an empty directory is the weight-free consensus ranker).
    public var namedRankers: [(name: String, directory: String)] {
        var all = rankers.map { (name: $0.key, directory: $0.value) }
        if !ranker.isEmpty || rankers.isEmpty { all.append((Self.unnamedRanker, ranker)) }
        return all.sorted { $0.name < $1.name }
    }

    /// Which ranker serves jobs that name none, or why that cannot be decided.
    public enum DefaultRanker: Sendable, Equatable {
        case ranker(String)
        case unresolved(String)
    }

    /// The ranker of jobs that name none, or why it cannot be decided.
    public var resolvedDefaultRanker: DefaultRanker {
        let names = namedRankers.map(\.name)
        if !defaultRanker.isEmpty {
            return names.contains(defaultRanker) ? .ranker(defaultRanker)
                : .unresolved("names no configured ranker (\(defaultRanker); configured: \(names.joined(separator: ", ")))")
        }
        if names.contains(Self.unnamedRanker) { return .ranker(Self.unnamedRanker) }
        if names.count == 1 { return .ranker(names[0]) }
        return .unresolved("must name the ranker of jobs without rank.model, one of \(names.joined(separator: ", "))")
    }

    /// Ranker names are what a job may write in `rank.model`: 1–64 of [A-Za-z0-9._-], starting with a letter or digit.
    public static func rankerNameProblem(_ name: String) -> String? {
        let allowed = name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
        }
        guard !name.isEmpty, name.utf8.count <= 64, allowed, let first = name.utf8.first, first != 0x2E, first != 0x5F, first != 0x2D else {
            return "a ranker name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        }
        return nil
    }
}

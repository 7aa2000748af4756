import Foundation

/// PairRM (spec §1): the DeBERTa-v3 encoder, the three markers and the head
/// Linear(2h→h) → tanh → Linear(h→tasks) applied to [h_source; h_candidate1] and
/// [h_source; h_candidate2]; the pair logit is the task mean of u₁ − u₂ (> 0: candidate 1 is better).
/// Loads `llm-blender/PairRM` (RankerConfig layout) and `llm-blender/PairRM-hf` directories unchanged.
public final class PairRMModel: Sendable {
    public let configuration: DebertaConfiguration
    public let tokenizer: Tokenizer
    public let encoder: DebertaEncoder
    public let inputBuilder: PairInputBuilder
    let headInnerWeight: Tensor
    let headInnerBias: Tensor
    let headOuterWeight: Tensor
    let headOuterBias: Tensor
    /// Names the checkpoint in results: `pairrm:<directory name>@<fingerprint of config and weight files>`.
    public let label: String

    public static let weightPrefix = "pretrained_model."

    public init(directory: String) throws {
        var config = try DebertaConfiguration.load(directory: directory)
        let store = try WeightStore.open(directory: directory)
        // The published checkpoint resized its vocabulary after adding the markers: the embedding is authoritative.
        if let shape = store.shape(of: Self.weightPrefix + "embeddings.word_embeddings.weight"), shape.count == 2 {
            config.vocabularySize = shape[0]
        }
        let tokenizer = try Tokenizer.load(directory: directory)
        guard tokenizer.family == .debertaV2 else {
            throw CheckpointError.config(path: directory, reason: "PairRM needs a DeBERTa-v2 tokenizer (spm.model), found \(tokenizer.family.rawValue)")
        }
        func marker(_ configured: Int?, _ token: String) throws -> Int {
            if let configured { return configured }
            guard let id = tokenizer.id(of: token), tokenizer.addedTokens.contains(where: { $0.id == id }) else {
                throw CheckpointError.config(path: directory, reason: "the tokenizer has no added token \(token) (PairRM's markers are in added_tokens.json)")
            }
            return id
        }
        config.sourcePrefixId = try marker(config.sourcePrefixId, "<|source|>")
        config.candidate1PrefixId = try marker(config.candidate1PrefixId, "<|candidate1|>")
        config.candidate2PrefixId = try marker(config.candidate2PrefixId, "<|candidate2|>")
        config.candidatePrefixId = try marker(config.candidatePrefixId, "<|candidate|>")
        if tokenizer.count > config.vocabularySize {
            throw CheckpointError.config(path: directory, reason: "the tokenizer has \(tokenizer.count) ids but the embedding only \(config.vocabularySize) rows")
        }

        let reader = store.reader(prefix: "")
        reader.ignore { $0.hasSuffix("position_ids") }
        let backbone = store.reader(prefix: Self.weightPrefix)
        backbone.ignore { !$0.hasPrefix(Self.weightPrefix) || $0.hasSuffix("position_ids") }
        let h = config.hiddenSize
        encoder = try DebertaEncoder(configuration: config, reader: backbone)
        headInnerWeight = try reader.take("head_layer.1.weight", [h, 2 * h])
        headInnerBias = try reader.take("head_layer.1.bias", [h])
        headOuterWeight = try reader.take("head_layer.4.weight", [config.tasks, h])
        headOuterBias = try reader.take("head_layer.4.bias", [config.tasks])
        reader.ignore { $0.hasPrefix(Self.weightPrefix) }
        // Report backbone and head problems together.
        var problems: [CheckpointError.TensorProblem] = []
        for r in [backbone, reader] {
            do { try r.finish() } catch CheckpointError.tensors(let found) { problems += found }
        }
        if !problems.isEmpty { throw CheckpointError.tensors(problems) }

        self.configuration = config
        self.tokenizer = tokenizer
        self.inputBuilder = PairInputBuilder(tokenizer: tokenizer, configuration: config)
        self.label = "pairrm:\((directory as NSString).standardizingPath.split(separator: "/").last.map(String.init) ?? "model")@\(Self.fingerprint(directory: directory, store: store))"
    }

    /// Pair logits ℓ(left, right) for pairs assembled by `inputBuilder`, in one packed forward pass.
    public func logits(_ pairs: [PairInput]) -> [Float] {
        guard !pairs.isEmpty else { return [] }
        let (hidden, offsets) = encoder.forward(pairs.map(\.ids))
        let h = configuration.hiddenSize
        // Rows 0..<n: [h_s; h_1], rows n..<2n: [h_s; h_2], one GEMM through the head for both.
        let n = pairs.count
        var features = [Float](repeating: 0, count: 2 * n * 2 * h)
        for (p, pair) in pairs.enumerated() {
            let base = offsets[p]
            for (row, marker) in [(p, pair.candidate1Position), (n + p, pair.candidate2Position)] {
                let s = (base + pair.sourcePosition) * h, m = (base + marker) * h
                features.replaceSubrange((row * 2 * h)..<(row * 2 * h + h), with: hidden.storage[s..<(s + h)])
                features.replaceSubrange((row * 2 * h + h)..<((row + 1) * 2 * h), with: hidden.storage[m..<(m + h)])
            }
        }
        let inner = Kernels.tanh(Kernels.linear(Tensor(shape: [2 * n, 2 * h], storage: features),
                                                weight: headInnerWeight, bias: headInnerBias))
        let u = Kernels.linear(inner, weight: headOuterWeight, bias: headOuterBias)
        let tasks = configuration.tasks
        return (0..<n).map { p in
            var sum: Float = 0
            for t in 0..<tasks { sum += u.storage[p * tasks + t] - u.storage[(n + p) * tasks + t] }
            return sum / Float(tasks)
        }
    }

    /// FNV-1a over config.json and the weight files' names and sizes: cheap to compute on a 1.7 GB
    /// checkpoint and different whenever the files are replaced by other ones.
    static func fingerprint(directory: String, store: WeightStore) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: some Sequence<UInt8>) { for b in bytes { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 } }
        let config = (directory as NSString).appendingPathComponent("config.json")
        mix(FileManager.default.contents(atPath: config) ?? Data())
        for name in store.names { mix(name.utf8); mix(String(describing: store.shape(of: name) ?? []).utf8) }
        return String(format: "%08x", UInt32(truncatingIfNeeded: hash ^ (hash >> 32)))
    }
}

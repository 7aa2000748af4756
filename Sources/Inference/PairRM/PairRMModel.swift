import BlendCore
import Foundation

/// PairRM's network (spec §1.5): the DeBERTa-v3 encoder and the head Linear(2h→h) → tanh → Linear(h→tasks)
/// applied to [h_source; h_candidate1] and [h_source; h_candidate2]; the pair logit is the task mean of
/// u₁ − u₂ (> 0: candidate 1 is better).
public final class PairRMNetwork: Sendable {
    public let configuration: DebertaConfiguration
    public let encoder: DebertaEncoder
    let headInnerWeight: Tensor
    let headInnerBias: Tensor
    let headOuterWeight: Tensor
    let headOuterBias: Tensor

    public static let backbonePrefix = "pretrained_model."

    /// Takes the backbone under `pretrained_model.` and the head as the hub checkpoints name them;
    /// every missing, mis-shaped or unexpected tensor is reported in one error.
    public init(configuration config: DebertaConfiguration, store: WeightStore, precision: ModelPrecision = .fp32) throws {
        let prefix = Self.backbonePrefix
        let head = store.reader(prefix: "")
        head.ignore { $0.hasPrefix(prefix) || $0.hasSuffix("position_ids") }
        let backbone = store.reader(prefix: prefix)
        backbone.ignore { !$0.hasPrefix(prefix) || $0.hasSuffix("position_ids") }
        let h = config.hiddenSize
        encoder = try DebertaEncoder(configuration: config, reader: backbone, precision: precision)
        headInnerWeight = try head.take("head_layer.1.weight", [h, 2 * h])
        headInnerBias = try head.take("head_layer.1.bias", [h])
        headOuterWeight = try head.take("head_layer.4.weight", [config.tasks, h])
        headOuterBias = try head.take("head_layer.4.bias", [config.tasks])
        var problems: [CheckpointError.TensorProblem] = []
        for reader in [backbone, head] {
            do { try reader.finish() } catch CheckpointError.tensors(let found) { problems += found }
        }
        if !problems.isEmpty { throw CheckpointError.tensors(problems) }
        configuration = config
    }

    /// Pair logits ℓ(left, right) in one packed forward pass.
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
        // Each feature row is its own item: `linearRows` keeps a pair's head output independent of its batch-mates.
        let inner = Kernels.tanh(Kernels.linearRows(Tensor(shape: [2 * n, 2 * h], storage: features),
                                                    weight: headInnerWeight, bias: headInnerBias))
        let u = Kernels.linearRows(inner, weight: headOuterWeight, bias: headOuterBias)
        let tasks = configuration.tasks
        return (0..<n).map { p in
            var sum: Float = 0
            for t in 0..<tasks { sum += u.storage[p * tasks + t] - u.storage[(n + p) * tasks + t] }
            return sum / Float(tasks)
        }
    }
}

/// PairRM as published: network, tokenizer and input builder, loaded from an `llm-blender/PairRM`
/// (RankerConfig layout) or `llm-blender/PairRM-hf` directory unchanged.
public final class PairRMModel: Sendable {
    public let configuration: DebertaConfiguration
    public let tokenizer: Tokenizer
    public let network: PairRMNetwork
    public let inputBuilder: PairInputBuilder
    /// Names the checkpoint in results: `pairrm:<directory name>@<fingerprint>` (see `WeightStore.label`).
    public let label: String

    public var encoder: DebertaEncoder { network.encoder }

    /// `precision` applies to the encoder's dense layers (the head stays fp32) and appears in the label (`+bf16`).
    public init(directory: String, precision: ModelPrecision = .fp32) throws {
        var config = try DebertaConfiguration.load(directory: directory)
        let store = try WeightStore.open(directory: directory)
        // The published checkpoint resized its vocabulary after adding the markers: the embedding is authoritative.
        if let shape = store.shape(of: PairRMNetwork.backbonePrefix + "embeddings.word_embeddings.weight"), shape.count == 2 {
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
        network = try PairRMNetwork(configuration: config, store: store, precision: precision)
        self.configuration = config
        self.tokenizer = tokenizer
        self.inputBuilder = PairInputBuilder(tokenizer: tokenizer, configuration: config)
        self.label = "pairrm:" + WeightStore.label(directory: directory, store: store) + (precision == .fp32 ? "" : "+" + precision.rawValue)
    }

    /// Pair logits ℓ(left, right) for pairs assembled by `inputBuilder`, in one packed forward pass.
    public func logits(_ pairs: [PairInput]) -> [Float] { network.logits(pairs) }

}

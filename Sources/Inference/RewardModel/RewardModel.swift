import Foundation

/// The network of `DebertaV2ForSequenceClassification` with one label: the DeBERTa-v3 encoder, HF's
/// ContextPooler (dense on the `[CLS]` hidden state, then the configured activation; its dropout is the
/// identity at inference) and the classifier. The logit is the reward: higher is better.
public final class RewardModelNetwork: Sendable {
    public let configuration: DebertaConfiguration
    public let head: RewardModelHead
    public let encoder: DebertaEncoder
    let poolerWeight: Tensor
    let poolerBias: Tensor
    let classifierWeight: Tensor
    let classifierBias: Tensor

    public static let backbonePrefix = "deberta."

    /// Takes the backbone under `deberta.` and `pooler.dense` / `classifier` as transformers saves them; every
    /// missing, mis-shaped or unexpected tensor is reported in one error.
    public init(configuration config: DebertaConfiguration, head: RewardModelHead, store: WeightStore) throws {
        let prefix = Self.backbonePrefix
        let top = store.reader(prefix: "")
        top.ignore { $0.hasPrefix(prefix) || $0.hasSuffix("position_ids") }
        let backbone = store.reader(prefix: prefix)
        backbone.ignore { !$0.hasPrefix(prefix) || $0.hasSuffix("position_ids") }
        let h = config.hiddenSize
        encoder = try DebertaEncoder(configuration: config, reader: backbone)
        poolerWeight = try top.take("pooler.dense.weight", [h, h])
        poolerBias = try top.take("pooler.dense.bias", [h])
        classifierWeight = try top.take("classifier.weight", [1, h])
        classifierBias = try top.take("classifier.bias", [1])
        var problems: [CheckpointError.TensorProblem] = []
        for reader in [backbone, top] {
            do { try reader.finish() } catch CheckpointError.tensors(let found) { problems += found }
        }
        if !problems.isEmpty { throw CheckpointError.tensors(problems) }
        configuration = config
        self.head = head
    }

    /// One score per sequence, in one packed forward pass.
    public func scores(_ sequences: [[Int]]) -> [Float] {
        guard !sequences.isEmpty else { return [] }
        let (hidden, offsets) = encoder.forward(sequences)
        let h = configuration.hiddenSize
        var first = [Float](repeating: 0, count: sequences.count * h)
        for (s, offset) in offsets.enumerated() {
            first.replaceSubrange((s * h)..<((s + 1) * h), with: hidden.storage[(offset * h)..<((offset + 1) * h)])
        }
        // Each pooled row is its own item: `linearRows` keeps a sequence's score independent of its batch-mates,
        // so a job scores the same bits whichever other jobs share its batch (a GEMM's blocking depends on the row count).
        let pooled = head.activation.apply(Kernels.linearRows(Tensor(shape: [sequences.count, h], storage: first),
                                                              weight: poolerWeight, bias: poolerBias))
        return Kernels.linearRows(pooled, weight: classifierWeight, bias: classifierBias).storage
    }
}

/// A pointwise reward model as published, e.g. `OpenAssistant/reward-model-deberta-v3-large-v2`: network,
/// tokenizer and pair encoder, loaded from the hub directory unchanged (config.json naming
/// `DebertaV2ForSequenceClassification`, weights, spm.model and the tokenizer files).
public final class RewardModel: Sendable {
    public let configuration: DebertaConfiguration
    public let network: RewardModelNetwork
    public let encoder: RewardPairEncoder
    /// Names the checkpoint in results: `reward-model:<directory name>@<fingerprint>` (see `WeightStore.label`).
    public let label: String

    public var tokenizer: Tokenizer { encoder.tokenizer }

    public init(directory: String) throws {
        var config = try DebertaConfiguration.load(directory: directory)
        let head = try RewardModelHead.load(directory: directory, hiddenSize: config.hiddenSize)
        let store = try WeightStore.open(directory: directory)
        // The hub checkpoint's embedding has more rows than the tokenizer has ids (128 100 against 128 001).
        if let shape = store.shape(of: RewardModelNetwork.backbonePrefix + "embeddings.word_embeddings.weight"), shape.count == 2 {
            config.vocabularySize = shape[0]
        }
        let tokenizer = try Tokenizer.load(directory: directory)
        guard tokenizer.family == .debertaV2 else {
            throw CheckpointError.config(path: directory, reason: "a DeBERTa reward model needs a DeBERTa-v2 tokenizer (spm.model), found \(tokenizer.family.rawValue)")
        }
        if tokenizer.count > config.vocabularySize {
            throw CheckpointError.config(path: directory, reason: "the tokenizer has \(tokenizer.count) ids but the embedding only \(config.vocabularySize) rows")
        }
        network = try RewardModelNetwork(configuration: config, head: head, store: store)
        configuration = config
        encoder = RewardPairEncoder(tokenizer: tokenizer, maxLength: head.maxLength)
        label = "reward-model:" + WeightStore.label(directory: directory, store: store)
    }

    /// Scores of encoded pairs in one packed forward pass.
    public func scores(_ sequences: [[Int]]) -> [Float] { network.scores(sequences) }
}

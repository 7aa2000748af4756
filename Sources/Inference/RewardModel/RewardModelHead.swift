import Foundation

/// The part of a `DebertaV2ForSequenceClassification` config.json that the backbone's `DebertaConfiguration`
/// does not cover: HF's ContextPooler (dense on the first token's hidden state, then `pooler_hidden_act`) and
/// the classifier on top of it. Only a one-label classifier is a reward model; anything else is refused.
public struct RewardModelHead: Sendable, Equatable {
    public enum Activation: String, Sendable, CaseIterable {
        case gelu
        case geluNew = "gelu_new"
        case geluPyTorchTanh = "gelu_pytorch_tanh"
        case tanh
        case relu
        case linear

        func apply(_ x: Tensor) -> Tensor {
            switch self {
            case .gelu: Kernels.geluErf(x)
            case .geluNew, .geluPyTorchTanh: Kernels.geluTanh(x)
            case .tanh: Kernels.tanh(x)
            case .relu: Tensor(shape: x.shape, storage: x.storage.map { max($0, 0) })
            case .linear: x
            }
        }
    }

    public static let architecture = "DebertaV2ForSequenceClassification"

    public var poolerHiddenSize: Int
    public var activation: Activation
    /// Largest number of ids in one (question, answer) sequence, template included.
    public var maxLength: Int

    /// Whether `directory`'s config.json declares the sequence-classification architecture (a pointwise
    /// reward model such as OpenAssistant/reward-model-deberta-v3-large-v2) rather than PairRM.
    public static func declared(in directory: String) -> Bool {
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let json = try? CheckpointError.readJSONObject(path) else { return false }
        return (json["architectures"] as? [String])?.contains(architecture) == true
    }

    /// Reads config.json and tokenizer_config.json. The sequence cap is the tokenizer's `model_max_length`, or
    /// `max_position_embeddings` when the tokenizer declares none (transformers writes a huge sentinel then).
    public static func load(directory: String, hiddenSize: Int) throws -> RewardModelHead {
        let path = (directory as NSString).appendingPathComponent("config.json")
        let json = try CheckpointError.readJSONObject(path)
        func fail(_ reason: String) -> CheckpointError { .config(path: path, reason: reason) }
        guard (json["architectures"] as? [String])?.contains(architecture) == true else {
            throw fail("architectures does not name \(architecture)")
        }
        let labels = (json["num_labels"] as? Int) ?? (json["id2label"] as? [String: Any])?.count ?? 2
        guard labels == 1 else { throw fail("num_labels is \(labels); a reward model has exactly one (its score)") }
        let pooler = (json["pooler_hidden_size"] as? Int) ?? hiddenSize
        guard pooler == hiddenSize else { throw fail("pooler_hidden_size \(pooler) differs from hidden_size \(hiddenSize)") }
        let name = (json["pooler_hidden_act"] as? String) ?? "gelu"
        guard let activation = Activation(rawValue: name) else {
            throw fail("pooler_hidden_act \(name) is not supported (\(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var maxLength = (json["max_position_embeddings"] as? Int) ?? 512
        let tokenizerConfig = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        if FileManager.default.fileExists(atPath: tokenizerConfig),
           let declared = try CheckpointError.readJSONObject(tokenizerConfig)["model_max_length"] as? NSNumber,
           declared.doubleValue >= 3, declared.doubleValue <= 1_000_000 {
            maxLength = declared.intValue
        }
        guard maxLength >= 3 else { throw fail("max_position_embeddings \(maxLength) leaves no room for [CLS] q [SEP] a [SEP]") }
        return RewardModelHead(poolerHiddenSize: pooler, activation: activation, maxLength: maxLength)
    }
}

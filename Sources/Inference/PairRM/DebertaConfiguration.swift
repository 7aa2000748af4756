import Foundation

/// The structure of a DeBERTa-v2/v3 backbone with PairRM's head, from either layout on the hub:
/// `llm-blender/PairRM-hf` (a HF DeBERTa-v2 config plus PairRM fields) or `llm-blender/PairRM`
/// (a `RankerConfig` whose `model_name` names the backbone; we read that backbone's config.json when
/// `model_name` is a local directory, else use the published structure of the named DeBERTa-v3 model).
public struct DebertaConfiguration: Sendable, Equatable {
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var layerNormEps: Float
    public var positionBuckets: Int
    /// Resolved: −1 in the config means `max_position_embeddings`.
    public var maxRelativePositions: Int
    public var tasks: Int
    /// Token budgets of PairRM's input (spec §1.4): 1224 source, 412 per candidate.
    public var sourceMaxLength: Int
    public var candidateMaxLength: Int
    /// Marker ids; nil means "look them up in the tokenizer" (the RankerConfig layout does not store them).
    public var sourcePrefixId: Int?
    public var candidate1PrefixId: Int?
    public var candidate2PrefixId: Int?
    public var candidatePrefixId: Int?

    public var headSize: Int { hiddenSize / heads }
    /// Rows of the relative-embedding table the attention reads (`pos_ebd_size` × 2).
    public var attentionSpan: Int { positionBuckets > 0 ? positionBuckets : maxRelativePositions }

    /// Structures of the public DeBERTa-v3 backbones (their config.json, which PairRM's reference code downloads).
    static let knownBackbones: [String: (hidden: Int, layers: Int, heads: Int, intermediate: Int)] = [
        "microsoft/deberta-v3-large": (1024, 24, 16, 4096),
        "microsoft/deberta-v3-base": (768, 12, 12, 3072),
        "microsoft/deberta-v3-small": (768, 6, 12, 3072),
        "microsoft/deberta-v3-xsmall": (384, 12, 6, 1536),
    ]

    public static func load(directory: String) throws -> DebertaConfiguration {
        let path = (directory as NSString).appendingPathComponent("config.json")
        let json = try CheckpointError.readJSONObject(path)
        if json["ranker_type"] != nil {
            return try fromRankerConfig(json, path: path, directory: directory)
        }
        return try fromModelConfig(json, path: path, ranker: nil)
    }

    /// PairRM on a published DeBERTa-v3 backbone (e.g. `microsoft/deberta-v3-large`) with the hub
    /// checkpoint's vocabulary (128 005 rows) and marker ids: the shape benchmarks build random weights for.
    public static func pairRM(backbone: String) throws -> DebertaConfiguration {
        var config = try fromRankerConfig(["ranker_type": "pairranker", "model_name": backbone], path: "built-in \(backbone)",
                                          directory: "/nonexistent")
        config.vocabularySize = 128_005
        (config.sourcePrefixId, config.candidate1PrefixId, config.candidate2PrefixId, config.candidatePrefixId) = (128_001, 128_002, 128_003, 128_004)
        return config
    }

    static func fromRankerConfig(_ ranker: [String: Any], path: String, directory: String) throws -> DebertaConfiguration {
        if let type = ranker["ranker_type"] as? String, type != "pairranker" {
            throw CheckpointError.config(path: path, reason: "ranker_type \(type) is not supported (only pairranker, i.e. PairRM)")
        }
        guard let name = ranker["model_name"] as? String else {
            throw CheckpointError.config(path: path, reason: "RankerConfig has no model_name naming its backbone")
        }
        let local = name.hasPrefix("/") ? name : (directory as NSString).appendingPathComponent(name)
        let localConfig = (local as NSString).appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: localConfig) {
            return try fromModelConfig(try CheckpointError.readJSONObject(localConfig), path: localConfig, ranker: ranker)
        }
        guard let known = knownBackbones[name] else {
            throw CheckpointError.config(path: path, reason: "backbone \(name) is neither a local directory with config.json nor one of \(knownBackbones.keys.sorted().joined(separator: ", "))")
        }
        // The vocabulary was resized after adding LLM-Blender's tokens; the loader takes it from the embedding.
        let backbone: [String: Any] = [
            "model_type": "deberta-v2", "hidden_size": known.hidden, "num_hidden_layers": known.layers,
            "num_attention_heads": known.heads, "intermediate_size": known.intermediate, "vocab_size": 128_100,
            "layer_norm_eps": 1e-7, "position_buckets": 256, "max_relative_positions": -1,
            "max_position_embeddings": 512, "relative_attention": true, "pos_att_type": ["p2c", "c2p"],
            "share_att_key": true, "norm_rel_ebd": "layer_norm", "position_biased_input": false,
            "type_vocab_size": 0, "hidden_act": "gelu",
        ]
        return try fromModelConfig(backbone, path: path, ranker: ranker)
    }

    static func fromModelConfig(_ json: [String: Any], path: String, ranker: [String: Any]?) throws -> DebertaConfiguration {
        func fail(_ reason: String) -> CheckpointError { .config(path: path, reason: reason) }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = json[key] as? Int { return v }
            if let fallback { return fallback }
            throw fail("\(key) is missing")
        }
        if let type = json["model_type"] as? String, type != "deberta-v2" {
            throw fail("model_type \(type) is not deberta-v2 (DeBERTa-v2/v3)")
        }
        // What this implementation computes; anything else is refused rather than silently run differently.
        if (json["relative_attention"] as? Bool) != true { throw fail("relative_attention must be true") }
        if (json["position_biased_input"] as? Bool) ?? true { throw fail("position_biased_input must be false (DeBERTa-v3)") }
        if (json["share_att_key"] as? Bool) != true { throw fail("share_att_key must be true") }
        let posAtt: [String]
        if let list = json["pos_att_type"] as? [String] { posAtt = list } else if let s = json["pos_att_type"] as? String {
            posAtt = s.split(separator: "|").map(String.init)
        } else { posAtt = [] }
        if Set(posAtt) != ["p2c", "c2p"] { throw fail("pos_att_type must be [p2c, c2p], found \(posAtt)") }
        if let norm = json["norm_rel_ebd"] as? String, norm != "layer_norm" { throw fail("norm_rel_ebd \(norm) is not supported") }
        if json["norm_rel_ebd"] == nil { throw fail("norm_rel_ebd must be layer_norm") }
        if try int("type_vocab_size", 0) != 0 { throw fail("token type embeddings are not supported") }
        if let act = json["hidden_act"] as? String, act != "gelu" { throw fail("hidden_act \(act) is not supported (gelu)") }
        let hidden = try int("hidden_size")
        if let e = json["embedding_size"] as? Int, e != hidden { throw fail("embedding_size \(e) differs from hidden_size") }
        if let k = json["conv_kernel_size"] as? Int, k > 0 { throw fail("conv layers are not supported") }
        let heads = try int("num_attention_heads")
        guard hidden % heads == 0 else { throw fail("hidden_size \(hidden) is not a multiple of \(heads) heads") }
        var maxRelative = try int("max_relative_positions", -1)
        if maxRelative < 1 { maxRelative = try int("max_position_embeddings", 512) }
        let eps = (json["layer_norm_eps"] as? Double) ?? 1e-7
        func rankerInt(_ keys: [String], _ fallback: Int) -> Int {
            for key in keys { if let v = (ranker?[key] ?? json[key]) as? Int { return v } }
            return fallback
        }
        return DebertaConfiguration(
            vocabularySize: try int("vocab_size"), hiddenSize: hidden, layers: try int("num_hidden_layers"), heads: heads,
            intermediateSize: try int("intermediate_size"), layerNormEps: Float(eps),
            positionBuckets: try int("position_buckets", -1), maxRelativePositions: maxRelative,
            tasks: rankerInt(["n_tasks"], 1),
            sourceMaxLength: rankerInt(["source_maxlength", "source_max_length"], 1224),
            candidateMaxLength: rankerInt(["candidate_maxlength", "candidate_max_length"], 412),
            sourcePrefixId: ranker == nil ? json["source_prefix_id"] as? Int : nil,
            candidate1PrefixId: ranker == nil ? json["cand1_prefix_id"] as? Int : nil,
            candidate2PrefixId: ranker == nil ? json["cand2_prefix_id"] as? Int : nil,
            candidatePrefixId: ranker == nil ? json["cand_prefix_id"] as? Int : nil)
    }

    /// DeBERTa's log-bucketed relative position (HF `make_log_bucket_position`), computed in Float32 as
    /// PyTorch does so the boundaries fall on the same distances.
    public func bucket(_ relative: Int) -> Int {
        guard positionBuckets > 0, maxRelativePositions > 0 else { return relative }
        let mid = positionBuckets / 2
        if relative < mid && relative > -mid { return relative }
        let absolute = abs(relative)
        if absolute <= mid { return relative }
        let ratio = logf(Float(absolute) / Float(mid)) / logf(Float(maxRelativePositions - 1) / Float(mid))
        let logPosition = ceilf(ratio * Float(mid - 1)) + Float(mid)
        return Int(logPosition) * (relative < 0 ? -1 : 1)
    }
}

import Foundation

/// The structure of a T5 v1.1 / Flan-T5 checkpoint (GenFuser's `google/flan-t5-xl` base), from the
/// directory's config.json, with generation ids overridden by generation_config.json when present.
public struct T5Configuration: Sendable, Equatable {
    public var vocabularySize: Int
    public var modelSize: Int
    public var headSize: Int
    public var feedForwardSize: Int
    public var encoderLayers: Int
    public var decoderLayers: Int
    public var heads: Int
    public var relativeBuckets: Int
    public var relativeMaxDistance: Int
    public var layerNormEps: Float
    /// Gated-GELU FFN (v1.1) with the tanh GELU; the original T5's ReLU FFN is refused.
    public var gatedGELU: Bool
    /// When true the decoder output is scaled by d_model^−½ and `shared` is the output layer.
    public var tiedEmbeddings: Bool
    public var decoderStartId: Int
    public var eosId: Int
    public var padId: Int

    public var innerSize: Int { heads * headSize }

    /// The published Flan-T5 shapes (`small`, `base`, `large`, `xl`), for benchmarks on random weights.
    public static func flanT5(_ size: String) -> T5Configuration? {
        let shapes: [String: (d: Int, ff: Int, heads: Int, layers: Int)] = [
            "small": (512, 1024, 6, 8), "base": (768, 2048, 12, 12), "large": (1024, 2816, 16, 24), "xl": (2048, 5120, 32, 24),
        ]
        guard let s = shapes[size] else { return nil }
        return T5Configuration(vocabularySize: 32128, modelSize: s.d, headSize: 64, feedForwardSize: s.ff, encoderLayers: s.layers,
                               decoderLayers: s.layers, heads: s.heads, relativeBuckets: 32, relativeMaxDistance: 128,
                               layerNormEps: 1e-6, gatedGELU: true, tiedEmbeddings: false, decoderStartId: 0, eosId: 1, padId: 0)
    }

    public static func load(directory: String) throws -> T5Configuration {
        let path = (directory as NSString).appendingPathComponent("config.json")
        let json = try CheckpointError.readJSONObject(path)
        func fail(_ reason: String) -> CheckpointError { .config(path: path, reason: reason) }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = json[key] as? Int { return v }
            if let fallback { return fallback }
            throw fail("\(key) is missing")
        }
        if let type = json["model_type"] as? String, type != "t5" { throw fail("model_type \(type) is not t5") }
        let projection = (json["feed_forward_proj"] as? String) ?? "relu"
        guard projection == "gated-gelu" else {
            throw fail("feed_forward_proj \(projection) is not supported (T5 v1.1 / Flan-T5 use gated-gelu)")
        }
        if let act = json["dense_act_fn"] as? String, act != "gelu_new" { throw fail("dense_act_fn \(act) is not supported (gelu_new)") }
        let layers = try int("num_layers")
        var config = T5Configuration(
            vocabularySize: try int("vocab_size"), modelSize: try int("d_model"), headSize: try int("d_kv"),
            feedForwardSize: try int("d_ff"), encoderLayers: layers, decoderLayers: try int("num_decoder_layers", layers),
            heads: try int("num_heads"), relativeBuckets: try int("relative_attention_num_buckets", 32),
            relativeMaxDistance: try int("relative_attention_max_distance", 128),
            layerNormEps: Float((json["layer_norm_epsilon"] as? Double) ?? 1e-6), gatedGELU: true,
            tiedEmbeddings: (json["tie_word_embeddings"] as? Bool) ?? true,
            decoderStartId: try int("decoder_start_token_id", 0), eosId: try int("eos_token_id", 1), padId: try int("pad_token_id", 0))
        let generation = (directory as NSString).appendingPathComponent("generation_config.json")
        if FileManager.default.fileExists(atPath: generation) {
            let g = try CheckpointError.readJSONObject(generation)
            if let v = g["decoder_start_token_id"] as? Int { config.decoderStartId = v }
            if let v = g["eos_token_id"] as? Int { config.eosId = v }
            if let v = g["pad_token_id"] as? Int { config.padId = v }
        }
        return config
    }

    /// T5's relative position bucket (HF `_relative_position_bucket`) for `relative` = key − query,
    /// with the logarithm in Float32 as PyTorch computes it.
    public func bucket(_ relative: Int, bidirectional: Bool) -> Int {
        var buckets = relativeBuckets
        var result = 0
        let distance: Int
        if bidirectional {
            buckets /= 2
            if relative > 0 { result += buckets }
            distance = abs(relative)
        } else {
            distance = max(-relative, 0)
        }
        let maxExact = buckets / 2
        if distance < maxExact { return result + distance }
        let scale = Float(log(Double(relativeMaxDistance) / Double(maxExact)))
        let large = maxExact + Int(logf(Float(distance) / Float(maxExact)) / scale * Float(buckets - maxExact))
        return result + min(large, buckets - 1)
    }
}

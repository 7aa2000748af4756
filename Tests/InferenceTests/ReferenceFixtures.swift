import Foundation
@testable import Inference

/// The committed outputs of scripts/fixtures/generate.py (see Tests/Fixtures/README.md).
enum ReferenceFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path

    static func path(_ relative: String) -> String { (root as NSString).appendingPathComponent(relative) }

    struct TokenizerCase: Decodable {
        var text: String
        var ids: [Int]
        var ids_special: [Int]
        var ids_trunc_right_8: [Int]
        var ids_trunc_left_8: [Int]
        var decoded: String
    }

    struct Pair: Decodable {
        var source: String
        var left: String
        var right: String
        var input_ids: [Int]
        var logit: Double
    }

    struct Job: Decodable {
        var source: String
        var candidates: [String]
        var matrix: [[Double]]
    }

    struct FusionPrompt: Decodable {
        var instruction: String
        var input: String
        var candidates: [String]
        var prompt: String
        var input_ids: [Int]
    }

    struct Generation: Decodable {
        struct Settings: Decodable {
            var num_beams: Int
            var length_penalty: Double?
            var early_stopping: Bool?
            var min_new_tokens: Int?
        }
        var settings: Settings
        var max_new_tokens: Int
        var ids: [[Int]]
    }

    struct Reference: Decodable {
        var deberta_tokenizer: [TokenizerCase]
        var t5_tokenizer: [TokenizerCase]
        var deberta_marker_ids: [String: Int]
        var deberta_buckets: [Int]
        var pairs: [Pair]
        var pairrm_jobs: [Job]
        var fusion_prompts: [FusionPrompt]
        var t5_generate: [Generation]
        var t5_batch: [Int]
    }

    static let reference: Reference = {
        let data = FileManager.default.contents(atPath: path("reference/reference.json"))!
        return try! JSONDecoder().decode(Reference.self, from: data)
    }()

    static let tensors: WeightStore = try! WeightStore.open(file: path("reference/reference.safetensors"))
}

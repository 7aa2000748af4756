import Foundation
import XCTest
@testable import Inference

/// Ids and decodes on 20,480 generated strings (runs of digits/punctuation/letters, mixed scripts, whitespace
/// runs, zero-width and control characters at every position, combining marks, emoji sequences, every added
/// token embedded in text) equal the reference's: transformers 4.46.3's fast tokenizer from `tokenizer.json`,
/// and the one it converts from the SentencePiece model when `tokenizer.json` is absent
/// (scripts/fixtures/differential.py).
final class TokenizerDifferentialTests: XCTestCase {
    struct Subset: Decodable, Equatable {
        var special: [Int]
        var right8: [Int]
        var left8: [Int]
    }

    struct Records: Decodable {
        var ids: [[Int]]
        var decoded: [String]
        var decoded_special: [String: String]
        var subset: [String: Subset]
    }

    /// Converted-path values that differ from the `tokenizer.json` path's.
    struct Difference: Decodable {
        var ids: [String: [Int]]
        var decoded: [String: String]
        var decoded_special: [String: String]
        var subset: [String: Subset]
    }

    struct ModelRecords: Decodable {
        var json: Records
        var converted: Difference
        enum CodingKeys: String, CodingKey {
            case json = "tokenizer.json"
            case converted
        }
    }

    struct Edit: Decodable {
        var id: Int
        var piece: String
        var score: Double
    }

    struct Variant: Decodable {
        var model: String
        var count: Int
        /// The strings it covers, when not the first `count`.
        var indices: [Int]?
        /// Vocabulary entries replaced in the model's tokenizer.json.
        var edits: [Edit]?
        /// With byte fallback switched on, and the decoder (as JSON text) that replaces the model's.
        var byte_fallback: Bool?
        var decoder: String?
        var ids: [[Int]]
        var decoded: [String]
        var decoded_special: [String: String]
        var subset: [String: Subset]
        var clean_up_tokenization_spaces: Bool
    }

    struct Fixture: Decodable {
        var strings: [String]
        var kinds: [String]
        var models: [String: ModelRecords]
        var variants: [String: Variant]
    }

    static let fixture: Fixture = {
        let path = ReferenceFixtures.path("differential/tokenizer-strings.json.gz")
        let gunzip = Process()
        gunzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gunzip.arguments = ["-dc", path]
        let pipe = Pipe()
        gunzip.standardOutput = pipe
        try! gunzip.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        gunzip.waitUntilExit()
        precondition(gunzip.terminationStatus == 0, "gzip -dc \(path) failed")
        return try! JSONDecoder().decode(Fixture.self, from: data)
    }()

    /// A copy of a fixture's tokenizer files without tokenizer.json, its config edited, so loading converts.
    static func conversionDirectory(_ model: String, edit: (inout [String: Any]) -> Void = { _ in }) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-conv-\(model)-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for name in ["spm.model", "spiece.model", "special_tokens_map.json", "added_tokens.json", "tokenizer_config.json"] {
            let from = ReferenceFixtures.path("\(model)/\(name)")
            guard FileManager.default.fileExists(atPath: from) else { continue }
            try FileManager.default.copyItem(atPath: from, toPath: (dir as NSString).appendingPathComponent(name))
        }
        let configPath = (dir as NSString).appendingPathComponent("tokenizer_config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        return dir
    }

    /// Compares every string; returns the number that disagree in any way, and fails with the first few.
    @discardableResult
    func compare(_ tokenizer: Tokenizer, label: String, count: Int, indices: [Int]? = nil, ids: (Int) -> [Int],
                 decoded: (Int) -> String, decodedSpecial: (Int) -> String, subset: (Int) -> Subset?) throws -> Int {
        let strings = indices.map { $0.map { Self.fixture.strings[$0] } } ?? Self.fixture.strings
        let kinds = indices.map { $0.map { Self.fixture.kinds[$0] } } ?? Self.fixture.kinds
        var mismatches: [Int] = []
        var byKind: [String: Int] = [:]
        var checkedSubsets = 0
        for k in 0..<count {
            let s = strings[k]
            let ours = try tokenizer.encode(s, addSpecialTokens: false)
            var same = ours == ids(k)
            same = same && tokenizer.decode(ids(k)) == decoded(k)
            same = same && tokenizer.decode(ids(k), skipSpecialTokens: false) == decodedSpecial(k)
            if let expected = subset(k) {
                checkedSubsets += 1
                let got = Subset(special: try tokenizer.encode(s), right8: try tokenizer.encode(s, maxLength: 8),
                                 left8: try tokenizer.encode(s, maxLength: 8, truncation: .left))
                same = same && got == expected
            }
            if !same {
                mismatches.append(k)
                byKind[kinds[k], default: 0] += 1
            }
        }
        print("\(label): \(count - mismatches.count)/\(count) strings agree (\(checkedSubsets) with template and truncation); mismatches by kind \(byKind)")
        for k in mismatches.prefix(5) {
            let s = strings[k]
            XCTFail("\(label) string \(k) \(s.debugDescription): ids \(try tokenizer.encode(s, addSpecialTokens: false)) expected \(ids(k)); decode \(tokenizer.decode(ids(k)).debugDescription) expected \(decoded(k).debugDescription); with specials \(tokenizer.decode(ids(k), skipSpecialTokens: false).debugDescription) expected \(decodedSpecial(k).debugDescription)")
        }
        XCTAssertEqual(mismatches.count, 0, label)
        return mismatches.count
    }

    func checkTokenizerJSON(_ model: String) throws {
        let r = try XCTUnwrap(Self.fixture.models[model]).json
        let tokenizer = try Tokenizer.load(directory: ReferenceFixtures.path(model))
        XCTAssertEqual(tokenizer.source, .tokenizerJSON)
        XCTAssertGreaterThanOrEqual(r.ids.count, 20_000)
        try compare(tokenizer, label: "\(model) tokenizer.json", count: r.ids.count, ids: { r.ids[$0] }, decoded: { r.decoded[$0] },
                    decodedSpecial: { r.decoded_special[String($0)] ?? r.decoded[$0] }, subset: { r.subset[String($0)] })
    }

    func checkConversion(_ model: String) throws {
        let m = try XCTUnwrap(Self.fixture.models[model])
        let base = m.json, diff = m.converted
        let dir = try Self.conversionDirectory(model)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tokenizer = try Tokenizer.load(directory: dir)
        XCTAssertEqual(tokenizer.source, .sentencePieceConversion)
        try compare(tokenizer, label: "\(model) converted", count: base.ids.count,
                    ids: { diff.ids[String($0)] ?? base.ids[$0] },
                    decoded: { diff.decoded[String($0)] ?? base.decoded[$0] },
                    decodedSpecial: { diff.decoded_special[String($0)] ?? base.decoded_special[String($0)] ?? base.decoded[$0] },
                    subset: { diff.subset[String($0)] ?? base.subset[String($0)] })
    }

    func testDebertaTokenizerJSONMatchesTheReferenceOnGeneratedStrings() throws { try checkTokenizerJSON("pairrm-tiny") }
    func testT5TokenizerJSONMatchesTheReferenceOnGeneratedStrings() throws { try checkTokenizerJSON("t5-tiny") }
    func testDebertaConversionWithoutTokenizerJSONMatchesTheReference() throws { try checkConversion("pairrm-tiny") }
    func testT5ConversionWithoutTokenizerJSONMatchesTheReference() throws { try checkConversion("t5-tiny") }

    /// The two T5 pipelines really differ (WhitespaceSplit in tokenizer.json, a `▁` Replace in the converter),
    /// so the conversion fixture is not a copy of the tokenizer.json one.
    func testTheT5PathsDifferOnSomeStrings() throws {
        let diff = try XCTUnwrap(Self.fixture.models["t5-tiny"]).converted
        XCTAssertGreaterThan(diff.ids.count, 0)
    }

    /// The model's tokenizer.json with some vocabulary entries replaced, as the generator replaced them.
    static func editedTokenizer(_ model: String, _ edits: [Edit], byteFallback: Bool? = nil, decoder: String? = nil) throws -> Tokenizer {
        let files = try TokenizerDirectory(ReferenceFixtures.path(model))
        var pipeline = try TokenizerPipeline(tokenizerJSON: files.tokenizerJSON!, data: files.tokenizerJSONData!, path: model)
        var vocabulary = Array(zip(pipeline.model.pieces, pipeline.model.scores)).map { (piece: $0.0, score: $0.1) }
        for e in edits { vocabulary[e.id] = (e.piece, e.score) }
        pipeline.model = try UnigramModel(vocabulary: vocabulary, unknownId: pipeline.model.unknownId,
                                          byteFallback: byteFallback ?? pipeline.model.byteFallback)
        if let decoder {
            pipeline.decoder = try TokenizerPipeline.decoder(JSONSerialization.jsonObject(with: Data(decoder.utf8)) as! [String: Any])
        }
        return Tokenizer(family: try files.family(), source: .tokenizerJSON, pipeline: pipeline,
                         cleanUpSpaces: (files.config["clean_up_tokenization_spaces"] as? Bool) ?? false)
    }

    /// Runs of repeated characters over vocabularies with run pieces (`99`, `999`, `...`, `▁999`...): many
    /// segmentations score the same, and the reference's tie rule decides (the issue's `99999` → `9 9 999`
    /// and `.......` → `. ...` cases).
    func testRunsOverTieProneVocabulariesFollowTheReferenceTieRule() throws {
        for model in ["pairrm-tiny", "t5-tiny"] {
            let variant = try XCTUnwrap(Self.fixture.variants["\(model)/run-pieces"])
            XCTAssertNil(variant.byte_fallback)
            let edits = try XCTUnwrap(variant.edits)
            XCTAssertGreaterThanOrEqual(edits.count, 10)
            let tokenizer = try Self.editedTokenizer(model, edits)
            let piece = try XCTUnwrap(edits.first { $0.piece == "999" })
            XCTAssertTrue(variant.ids.contains { $0.contains(piece.id) }, "the run pieces are used")
            try compare(tokenizer, label: "\(model)/run-pieces", count: variant.count, indices: variant.indices,
                        ids: { variant.ids[$0] }, decoded: { variant.decoded[$0] },
                        decodedSpecial: { variant.decoded_special[String($0)] ?? variant.decoded[$0] },
                        subset: { variant.subset[String($0)] })
        }
    }

    /// Byte fallback: characters no piece covers become `<0xXX>` pieces, and the ByteFallback decoder chain
    /// (Replace `▁`, ByteFallback, Fuse, Strip) turns them back into text, or into U+FFFD for invalid bytes.
    func testByteFallbackAndItsDecoderChainMatchTheReference() throws {
        let variant = try XCTUnwrap(Self.fixture.variants["pairrm-tiny/byte-fallback"])
        let tokenizer = try Self.editedTokenizer("pairrm-tiny", try XCTUnwrap(variant.edits), byteFallback: variant.byte_fallback,
                                                 decoder: variant.decoder)
        let byteIds = Set(try XCTUnwrap(variant.edits).map(\.id))
        XCTAssertGreaterThan(variant.ids.filter { $0.contains(where: byteIds.contains) }.count, 500, "the fallback is exercised")
        try compare(tokenizer, label: "pairrm-tiny/byte-fallback", count: variant.count, indices: variant.indices,
                    ids: { variant.ids[$0] }, decoded: { variant.decoded[$0] },
                    decodedSpecial: { variant.decoded_special[String($0)] ?? variant.decoded[$0] },
                    subset: { variant.subset[String($0)] })
    }

    /// The trailing case: a space then a zero-width character at the end keeps its `▁` (DeBERTa's
    /// Strip runs before the charsmap removes U+200B).
    func testASpaceBeforeATrailingZeroWidthCharacterKeepsItsMetaspace() throws {
        let k = try XCTUnwrap(Self.fixture.strings.firstIndex(of: "Yes \u{200B}"))
        let tokenizer = try Tokenizer.load(directory: ReferenceFixtures.path("pairrm-tiny"))
        let expected = try XCTUnwrap(Self.fixture.models["pairrm-tiny"]).json.ids[k]
        XCTAssertEqual(expected.last, tokenizer.id(of: "▁"))
        XCTAssertEqual(try tokenizer.encode("Yes \u{200B}", addSpecialTokens: false), expected)
    }

    /// Converter flags the checkpoints do not set, transformers 4.46's clean-up default, and directories whose
    /// added tokens are listed only in added_tokens.json and special_tokens_map.json.
    func testConverterFlagsAndTheCleanUpDefaultMatchTheReference() throws {
        let edits: [String: (inout [String: Any]) -> Void] = [
            "t5-tiny/legacy-false": { $0["legacy"] = false },
            "t5-tiny/no-clean-up-key": { $0.removeValue(forKey: "clean_up_tokenization_spaces") },
            "pairrm-tiny/lowercase-split-by-punct": { $0["do_lower_case"] = true; $0["split_by_punct"] = true },
            "pairrm-tiny/no-added-tokens-decoder": { $0.removeValue(forKey: "added_tokens_decoder") },
            "t5-tiny/no-added-tokens-decoder": { $0.removeValue(forKey: "added_tokens_decoder") },
        ]
        for (name, variant) in Self.fixture.variants.sorted(by: { $0.key < $1.key }) where variant.edits == nil {
            let edit = try XCTUnwrap(edits[name], name)
            let dir = try Self.conversionDirectory(variant.model, edit: edit)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let tokenizer = try Tokenizer.load(directory: dir)
            XCTAssertEqual(tokenizer.cleanUpSpaces, variant.clean_up_tokenization_spaces, name)
            try compare(tokenizer, label: name, count: variant.count, ids: { variant.ids[$0] }, decoded: { variant.decoded[$0] },
                        decodedSpecial: { variant.decoded_special[String($0)] ?? variant.decoded[$0] },
                        subset: { variant.subset[String($0)] })
        }
        XCTAssertEqual(Set(Self.fixture.variants.filter { $0.value.edits == nil }.keys), Set(edits.keys))
    }
}

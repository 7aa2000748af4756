import XCTest
@testable import Inference

/// Ids must equal the reference tokenizer's (tokenizers running the shipped tokenizer.json, as
/// transformers 4.x does) on the whole fixture corpus.
final class TokenizerParityTests: XCTestCase {
    func check(_ tokenizer: Tokenizer, _ cases: [ReferenceFixtures.TokenizerCase], file: StaticString = #filePath, line: UInt = #line) throws {
        for c in cases {
            let label = "text \(c.text.debugDescription)"
            XCTAssertEqual(try tokenizer.encode(c.text, addSpecialTokens: false), c.ids, label, file: file, line: line)
            XCTAssertEqual(try tokenizer.encode(c.text), c.ids_special, label, file: file, line: line)
            XCTAssertEqual(try tokenizer.encode(c.text, maxLength: 8), c.ids_trunc_right_8, label, file: file, line: line)
            XCTAssertEqual(try tokenizer.encode(c.text, maxLength: 8, truncation: .left), c.ids_trunc_left_8, label, file: file, line: line)
            XCTAssertEqual(tokenizer.decode(c.ids), c.decoded, label, file: file, line: line)
        }
    }

    func testDebertaTokenizerMatchesReferenceOnCorpus() throws {
        let tokenizer = try Tokenizer.load(directory: ReferenceFixtures.path("pairrm-tiny"))
        XCTAssertEqual(tokenizer.family, .debertaV2)
        XCTAssertEqual(tokenizer.count, 505)
        for (marker, id) in ReferenceFixtures.reference.deberta_marker_ids {
            XCTAssertEqual(tokenizer.id(of: marker), id, marker)
        }
        try check(tokenizer, ReferenceFixtures.reference.deberta_tokenizer)
    }

    func testT5TokenizerMatchesReferenceOnCorpus() throws {
        let tokenizer = try Tokenizer.load(directory: ReferenceFixtures.path("t5-tiny"))
        XCTAssertEqual(tokenizer.family, .t5)
        XCTAssertEqual(tokenizer.id(of: "<extra_id_0>"), 499)
        XCTAssertEqual(tokenizer.id(of: "<extra_id_99>"), 400)
        try check(tokenizer, ReferenceFixtures.reference.t5_tokenizer)
    }

    func testMarkerStringsInUserTextCanBeKeptAsText() throws {
        let tokenizer = try Tokenizer.load(directory: ReferenceFixtures.path("pairrm-tiny"))
        let marker = try XCTUnwrap(tokenizer.id(of: "<|source|>"))
        XCTAssertTrue(try tokenizer.encode("a <|source|> b").contains(marker))
        let plain = try tokenizer.encode("a <|source|> b", matchNonSpecialAddedTokens: false)
        XCTAssertFalse(plain.contains(marker))
        // Special tokens still match, as in the reference.
        XCTAssertTrue(try tokenizer.encode("a [SEP] b", matchNonSpecialAddedTokens: false).dropLast().contains(2))
    }

    func testMissingModelFileIsAClearError() {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try Tokenizer.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("spm.model"), "\(error)")
        }
    }
}

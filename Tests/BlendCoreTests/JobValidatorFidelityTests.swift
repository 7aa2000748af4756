@testable import BlendCore
import Foundation
import XCTest

/// What a job says reaches the store and the event unchanged, and every input that cannot be
/// kept unchanged is rejected with its own code and path, keeping the job id when readable.
final class JobValidatorFidelityTests: XCTestCase {
    private let validator = JobValidator()

    private func job(id: String = "fid-1", instruction: String = #""Q""#, extra: String = "") -> [UInt8] {
        Array(#"{"job_id":"\#(id)","instruction":\#(instruction),"candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}]\#(extra)}"#.utf8)
    }

    private func rejection(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> JobRejection? {
        switch validator.validate(bytes) {
        case .success: XCTFail("accepted", file: file, line: line); return nil
        case .failure(let r): return r
        }
    }

    func testMetadataNumbersKeepTheirLiteralText() throws {
        let metadata = #"{"big":18446744073709551617,"huge":1e400,"tiny":-1E-400,"zero":-0,"one":1.0,"exp":2.50e+3,"deep":{"n":[0.1,123456789012345678901234567890]}}"#
        guard case .success(let job) = validator.validate(job(extra: #","metadata":\#(metadata)"#)) else { return XCTFail("rejected") }
        XCTAssertEqual(job.metadata?.serialized(), metadata)
        let event = CompletionEvent(data: EventData(jobId: job.jobId, status: .completed, metadata: job.metadata), workerId: "w", time: Date(timeIntervalSince1970: 0))
        let text = String(decoding: try event.jsonBytes(), as: UTF8.self)
        XCTAssertTrue(text.contains(#""metadata":\#(metadata)"#), text)
        // The event is still one JSON document with sorted keys.
        let parsed = try JSONParser.parse(Array(text.utf8)).value
        guard case .object(let data) = parsed["data"] else { return XCTFail("no data") }
        XCTAssertEqual(data.map(\.key), ["job_id", "metadata", "status"])
        XCTAssertEqual(parsed["data"]?["metadata"], job.metadata)
    }

    func testTextsRoundTripExactlyIncludingEscapesAndSurrogatePairs() {
        let instruction = #""tab\there \"q\" \\ \/ \u00e9 \ud83d\ude00 \u2028 é""#
        guard case .success(let job) = validator.validate(job(instruction: instruction)) else { return XCTFail("rejected") }
        XCTAssertEqual(job.instruction, "tab\there \"q\" \\ / é 😀 \u{2028} é")
        XCTAssertEqual(Array(job.instruction.unicodeScalars.map(\.value)).filter { $0 > 0xFFFF }, [0x1F600])
    }

    func testLoneSurrogateIsRejectedWithItsPathAndKeepsTheJobId() throws {
        for escape in [#"\ud800"#, #"\udc00"#, #"\ud800x"#, #"\ud800\u0041"#, #"\ud800\ud800"#] {
            let r = try XCTUnwrap(rejection(job(instruction: "\"a\(escape)b\"")))
            XCTAssertEqual(r.jobId, "fid-1", escape)
            XCTAssertEqual(r.violations.map(\.code), [.loneSurrogate], escape)
            XCTAssertEqual(r.violations.first?.path, "instruction", escape)
        }
        let inMetadata = try XCTUnwrap(rejection(job(extra: #","metadata":{"a":[1,{"b c":"\udfff"}]}"#)))
        XCTAssertEqual(inMetadata.violations.map(\.path), [#"metadata.a[1]["b c"]"#])
    }

    func testNestingIsLimitedWithItsOwnCodeAtEveryDepth() throws {
        func nested(_ levels: Int) -> String { String(repeating: "[", count: levels) + String(repeating: "]", count: levels) }
        // The job object is level 1 and metadata level 2: 62 more levels fit, 63 do not.
        guard case .success = validator.validate(job(extra: #","metadata":{"a":\#(nested(62))}"#)) else { return XCTFail("64 levels rejected") }
        for levels in [63, 64, 2_500, 600_000] {
            let r = try XCTUnwrap(rejection(job(extra: #","metadata":{"a":\#(nested(levels))}"#)))
            XCTAssertEqual(r.jobId, "fid-1")
            XCTAssertEqual(r.violations.map(\.code), levels > 500_000 ? [.jobTooLarge, .nestingTooDeep] : [.nestingTooDeep])
            XCTAssertEqual(r.violations.last?.path, "metadata.a" + String(repeating: "[0]", count: 62))
        }
        // Deep but broken is not JSON, found without recursion.
        let broken = try XCTUnwrap(rejection(Array((#"{"job_id":"x","m":"# + String(repeating: "[", count: 300_000)).utf8)))
        XCTAssertEqual(broken.violations.map(\.code), [.notJSON])
    }

    func testNULInKeysIsRejectedAndNeverReachesAPathOrMessage() throws {
        let cases: [(String, Violation.Code, String)] = [
            (#","x\u0000y":1"#, .unknownField, #"["x\u0000y"]"#),
            (#","metadata":{"k\u0000":1}"#, .nulCharacter, #"metadata["k\u0000"]"#),
            (#","metadata":{"k":"v\u0000"}"#, .nulCharacter, "metadata.k"),
        ]
        for (extra, code, path) in cases {
            let r = try XCTUnwrap(rejection(job(extra: extra)))
            XCTAssertEqual(r.jobId, "fid-1")
            XCTAssertEqual(r.violations.map(\.code), [code], extra)
            XCTAssertEqual(r.violations.first?.path, path, extra)
            XCTAssertFalse(r.description.utf8.contains(0), "a NUL byte in \(r.description)")
        }
        let candidate = try XCTUnwrap(rejection(Array(#"{"job_id":"c1","instruction":"Q","candidates":[{"mo\u0000del":"a","text":"x"},{"model":"b","text":"y"}]}"#.utf8)))
        XCTAssertEqual(candidate.violations.map(\.code), [.unknownField, .missingField])
        XCTAssertEqual(candidate.violations.map(\.path), [#"candidates[0]["mo\u0000del"]"#, "candidates[0].model"])
        XCTAssertFalse(candidate.description.utf8.contains(0))
    }

    func testDuplicateKeysAreRejected() throws {
        let r = try XCTUnwrap(rejection(job(extra: #","job_id":"other""#)))
        XCTAssertEqual(r.violations.map(\.code), [.duplicateField])
        XCTAssertEqual(r.violations.first?.path, "job_id")
        let nested = try XCTUnwrap(rejection(job(extra: #","metadata":{"a":1,"a":1}"#)))
        XCTAssertEqual(nested.violations.map(\.path), ["metadata.a"])
    }

    func testHugeNumbersInOptionsAreWrongTypesNotCrashes() throws {
        for value in ["18446744073709551617", "1e400", "-1e400", "9007199254740993"] {
            let r = try XCTUnwrap(rejection(job(extra: #","fuse":{"top_k":\#(value)}"#)))
            XCTAssertEqual(r.violations.map(\.code), [.wrongType], value)
        }
        guard case .success(let job) = validator.validate(job(extra: #","fuse":{"top_k":2.0,"temperature":1e-1}"#)) else { return XCTFail("rejected") }
        XCTAssertEqual(job.fuse?.topK, 2)
    }

    /// Differential check against Foundation on generated documents: both read the same values
    /// (Foundation's Doubles vs our literal text). Broken documents are refused (Foundation
    /// itself tolerates trailing commas, so it is no oracle there).
    func testParserAgreesWithFoundationOnGeneratedDocuments() throws {
        var rng = SystemRandomNumberGenerator()
        func scalar() -> Any {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: return Int.random(in: -1_000_000...1_000_000, using: &rng)
            case 1: return Double.random(in: -1e6...1e6, using: &rng)
            case 2: return String((0..<Int.random(in: 0..<12, using: &rng)).map { _ in
                Character(Unicode.Scalar([0x22, 0x5C, 0x0A, 0x01, 0x41, 0xE9, 0x4E2D, 0x1F600, 0x2F].randomElement(using: &rng)!)!) })
            case 3: return Bool.random(using: &rng)
            case 4: return NSNull()
            default: return "plain"
            }
        }
        func value(_ depth: Int) -> Any {
            guard depth < 6 else { return scalar() }
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: return (0..<Int.random(in: 0..<5, using: &rng)).map { _ in value(depth + 1) }
            case 1: return Dictionary((0..<Int.random(in: 0..<5, using: &rng)).map { i in ("k\(i)\(["", " ", "é", "\u{1}"].randomElement(using: &rng)!)", value(depth + 1)) }, uniquingKeysWith: { a, _ in a })
            default: return scalar()
            }
        }
        for _ in 0..<300 {
            let document = ["root": value(0)]
            let bytes = Array(try JSONSerialization.data(withJSONObject: document, options: [.fragmentsAllowed]))
            let ours = try JSONParser.parse(bytes)
            XCTAssertEqual(ours.issues, [])
            let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
            XCTAssertEqual(ours.value.jsonValue, theirs, String(decoding: bytes, as: UTF8.self))
            XCTAssertEqual(try JSONParser.parse(Array(ours.value.serialized().utf8)).value, ours.value, "serialized() reads back the same")
        }
        for broken in ["", " ", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "\"\\x\"", "\"a", "tru", "nul", "[1 2]", "{\"a\" 1}", "\"\u{1}\"", "1 2", "{1:2}"] {
            XCTAssertThrowsError(try JSONParser.parse(Array(broken.utf8)), broken)
        }
    }
}

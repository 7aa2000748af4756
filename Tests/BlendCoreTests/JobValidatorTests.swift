import BlendCore
import Foundation
import XCTest

final class JobValidatorTests: XCTestCase {
    let validator = JobValidator()

    private func validate(_ json: String) -> Result<BlendJob, JobRejection> {
        validator.validate(Array(json.utf8))
    }

    private func violations(_ json: String) -> [Violation] {
        if case .failure(let rejection) = validate(json) { return rejection.violations }
        XCTFail("expected a rejection for \(json)")
        return []
    }

    func testValidExamplesAreAccepted() throws {
        let files = try RepositoryPaths.files(in: "valid")
        XCTAssertFalse(files.isEmpty)
        for file in files {
            let result = validator.validate(Array(try Data(contentsOf: file)))
            if case .failure(let rejection) = result {
                XCTFail("\(file.lastPathComponent) should be valid: \(rejection)")
            }
        }
    }

    func testInvalidExamplesProduceTheCodeTheirNameSays() throws {
        let files = try RepositoryPaths.files(in: "invalid")
        XCTAssertFalse(files.isEmpty)
        for file in files {
            let expected = RepositoryPaths.expectedCode(of: file)
            XCTAssertNotNil(Violation.Code(rawValue: expected), "\(file.lastPathComponent) names no known code")
            switch validator.validate(Array(try Data(contentsOf: file))) {
            case .success:
                XCTFail("\(file.lastPathComponent) was accepted")
            case .failure(let rejection):
                XCTAssertTrue(rejection.violations.contains { $0.code.rawValue == expected },
                              "\(file.lastPathComponent): expected \(expected), got \(rejection.violations)")
            }
        }
    }

    func testEveryViolationCodeHasAnInvalidExample() throws {
        let covered = Set(try RepositoryPaths.files(in: "invalid").map(RepositoryPaths.expectedCode(of:)))
        let all = Set(Violation.Code.allCases.map(\.rawValue))
        XCTAssertEqual(all.subtracting(covered), [], "codes without an example")
    }

    func testEveryViolationIsReportedNotJustTheFirst() {
        let found = violations("""
        {"job_id": "bad id", "instruction": 3, "candidates": [{"model": "a", "text": ""}],
         "rank": {"mode": "borda"}, "fuse": {"num_beams": 0}, "colour": "red"}
        """)
        XCTAssertEqual(Set(found.map(\.code)), [.invalidJobId, .wrongType, .tooFewCandidates, .emptyText,
                                                  .unknownRankMode, .optionOutOfRange, .unknownField])
        XCTAssertEqual(Set(found.map(\.path)), ["job_id", "instruction", "candidates", "candidates[0].text",
                                                 "rank.mode", "fuse.num_beams", "colour"])
    }

    func testMessagesNameTheFieldTheLimitAndTheValueSeen() {
        let long = String(repeating: "é", count: 40_000)   // 80,000 UTF-8 bytes
        let found = violations("""
        {"job_id": "j1", "instruction": "q", "candidates": [{"model": "a", "text": "\(long)"}, {"model": "b", "text": "ok"}],
         "fuse": {"top_k": 5, "temperature": -1}}
        """)
        XCTAssertEqual(found.map(\.description), [
            "text_too_large at candidates[0].text: candidates[0].text is 80000 bytes; at most 65536 are allowed",
            "top_k_out_of_range at fuse.top_k: top_k must be between 1 and 2 (the smaller of max_top_k 8 and the candidate count), found 5",
            "option_out_of_range at fuse.temperature: fuse.temperature must be greater than 0 and at most 100, found -1",
        ])
    }

    func testInvalidUTF8IsReportedWithTheOffsetOfTheFirstBadByte() {
        var bytes = Array(#"{"job_id":"x","instruction":"ab"#.utf8)
        let offset = bytes.count
        bytes += [0xED, 0xA0, 0x80] + Array(#""}"#.utf8)   // an encoded surrogate: not UTF-8
        guard case .failure(let rejection) = validator.validate(bytes) else { return XCTFail("accepted") }
        XCTAssertEqual(rejection.violations, [Violation(.invalidUTF8, at: "", "the message is not valid UTF-8 (first bad byte at offset \(offset))")])
    }

    func testRejectionKeepsAValidJobIdSoTheOutcomeCanBeStoredUnderIt() {
        guard case .failure(let rejection) = validate(#"{"job_id": "keep-me", "instruction": "q", "candidates": []}"#) else {
            return XCTFail("accepted")
        }
        XCTAssertEqual(rejection.jobId, "keep-me")
        XCTAssertEqual(rejection.violations.map(\.code), [.tooFewCandidates])
    }

    func testLimitsComeFromConfiguration() {
        var limits = JobLimits()
        limits.maxCandidates = 2
        limits.maxTextBytes = 4
        let strict = JobValidator(limits: limits)
        let json = #"{"job_id": "j", "instruction": "q", "candidates": [{"model": "a", "text": "12345"}, {"model": "b", "text": "1"}, {"model": "c", "text": "2"}]}"#
        guard case .failure(let rejection) = strict.validate(Array(json.utf8)) else { return XCTFail("accepted") }
        XCTAssertEqual(rejection.violations.map(\.code), [.tooManyCandidates, .textTooLarge])
    }

    func testDefaultsAreTheReferenceGenerationSettings() throws {
        let job = try validate(#"{"job_id": "j", "instruction": "q", "candidates": [{"model": "a", "text": "x"}, {"model": "b", "text": "y"}]}"#).get()
        XCTAssertEqual(job.rank.mode, .maxLogits)
        XCTAssertEqual(job.fuse?.numBeams, 4)
        XCTAssertEqual(job.fuse?.maxNewTokens, 128)
        XCTAssertEqual(job.fuse?.topK, 2, "the default top_k of 3 shrinks to the candidate count")
        XCTAssertEqual(job.input, "")
    }

    func testFuseFalseMeansRankOnly() throws {
        let job = try validate(#"{"job_id": "j", "instruction": "q", "fuse": false, "candidates": [{"model": "a", "text": "x"}, {"model": "b", "text": "y"}]}"#).get()
        XCTAssertNil(job.fuse)
    }

    func testEncodedJobValidatesBackToTheSameJob() throws {
        for file in try RepositoryPaths.files(in: "valid") {
            let job = try validator.validate(Array(try Data(contentsOf: file))).get()
            let again = try validator.validate(Array(try JSONEncoder().encode(job))).get()
            XCTAssertEqual(again, job, file.lastPathComponent)
        }
    }

    func testBubbleSeedIsStableForAJobIdAndOverriddenByTheJob() throws {
        let a = BlendJob(jobId: "req-1", instruction: "q", candidates: [])
        XCTAssertEqual(a.effectiveSeed, BlendJob(jobId: "req-1", instruction: "other", candidates: []).effectiveSeed)
        XCTAssertNotEqual(a.effectiveSeed, BlendJob(jobId: "req-2", instruction: "q", candidates: []).effectiveSeed)
        XCTAssertEqual(BlendJob(jobId: "req-1", instruction: "q", candidates: [], rank: .init(mode: .bubble, seed: 9)).effectiveSeed, 9)
    }

    func testNulCharactersAnywhereTheStoreWouldRefuseThemAreViolations() {
        let json = #"""
        {"job_id":"n1","instruction":"a\u0000b","candidates":[{"model":"m\u0000","text":"x"},{"model":"b","text":"ok"}],
         "metadata":{"tags":["fine","bad\u0000"]}}
        """#
        guard case .failure(let rejection) = JobValidator().validate(Array(json.utf8)) else { return XCTFail("must be rejected") }
        XCTAssertEqual(rejection.violations.filter { $0.code == .nulCharacter }.map(\.path),
                       ["instruction", "candidates[0].model", "metadata.tags[1]"])
    }
}

import Foundation
import XCTest
@testable import BlendCore

/// `models.rankers` (name → checkpoint directory), `models.default_ranker`, and `rank.model` in jobs.
final class NamedRankerConfigurationTests: XCTestCase {
    private var directories: [String] = []

    override func setUpWithError() throws {
        directories = try (0..<3).map { _ in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-ranker-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            return dir
        }
    }

    override func tearDown() {
        for dir in directories { try? FileManager.default.removeItem(atPath: dir) }
    }

    private func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("blendd-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testRankersComeFromTheFileTheEnvironmentAndFlagsAndAreShownByConfigCheck() throws {
        let file = try write("""
        models:
          ranker: \(directories[0])
          rankers:
            oasst-rm: \(directories[1])
          default_ranker: oasst-rm
        """)
        let loaded = ConfigurationLoader.load(file: file, environment: ["BLENDD_MODELS_RANKERS_SMALL": directories[2]],
                                              overrides: ["models.rankers.pairrm.v2=\(directories[2])"])
        XCTAssertEqual(loaded.problems, [])
        let models = loaded.configuration.models
        XCTAssertEqual(models.rankers, ["oasst-rm": directories[1], "small": directories[2], "pairrm.v2": directories[2]])
        XCTAssertEqual(models.namedRankers.map(\.name), ["default", "oasst-rm", "pairrm.v2", "small"])
        XCTAssertEqual(models.resolvedDefaultRanker, .ranker("oasst-rm"))
        XCTAssertEqual(loaded.sources["models.rankers.oasst-rm"], .file)
        XCTAssertEqual(loaded.sources["models.rankers.small"], .environment)
        XCTAssertEqual(loaded.sources["models.rankers.pairrm.v2"], .flag)
        let lines = loaded.rendered()
        XCTAssertTrue(lines.contains("models.rankers.oasst-rm = \(directories[1])  (file)"), lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains("models.default_ranker = oasst-rm  (file)"))
    }

    func testTheDefaultRankerIsResolvedOrTheProblemSaysWhichNamesToChooseFrom() {
        var m = BlendConfiguration.Models()
        XCTAssertEqual(m.namedRankers.map(\.name), ["default"], "nothing configured: the weight-free ranker as default")
        XCTAssertEqual(m.resolvedDefaultRanker, .ranker("default"))
        m.rankers = ["a": "/x"]
        XCTAssertEqual(m.namedRankers.map(\.name), ["a"])
        XCTAssertEqual(m.resolvedDefaultRanker, .ranker("a"), "the only named ranker")
        m.rankers = ["a": "/x", "b": "/y"]
        XCTAssertEqual(m.resolvedDefaultRanker, .unresolved("must name the ranker of jobs without rank.model, one of a, b"))
        m.ranker = "/z"
        XCTAssertEqual(m.resolvedDefaultRanker, .ranker("default"), "models.ranker serves jobs that name none")
        m.defaultRanker = "b"
        XCTAssertEqual(m.resolvedDefaultRanker, .ranker("b"))
        m.defaultRanker = "c"
        XCTAssertEqual(m.resolvedDefaultRanker, .unresolved("names no configured ranker (c; configured: a, b, default)"))
    }

    func testBadNamesMissingDirectoriesAndATakenDefaultNameAreProblems() throws {
        func problems(_ overrides: [String]) -> [String] {
            ConfigurationLoader.load(file: nil, environment: [:], overrides: overrides).problems.map(\.description)
        }
        XCTAssertEqual(problems(["models.rankers.-x=\(directories[0])"]),
                       ["models.rankers: -x: a ranker name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"])
        XCTAssertEqual(problems(["models.rankers.ok=/nonexistent/blendd"]).count, 1)
        XCTAssertTrue(problems(["models.rankers.ok=/nonexistent/blendd"])[0].hasPrefix("models.rankers: ok: "))
        XCTAssertEqual(problems(["models.ranker=\(directories[0])", "models.rankers.default=\(directories[1])"]),
                       ["models.rankers: default is the name of models.ranker; give this one another name"])
        XCTAssertEqual(problems(["models.rankers.a=\(directories[0])", "models.rankers.b=\(directories[1])"]),
                       ["models.default_ranker: must name the ranker of jobs without rank.model, one of a, b"])
        let file = try write("models:\n  rankers: [a, b]\n")
        XCTAssertEqual(ConfigurationLoader.load(file: file, environment: [:]).problems.map(\.message),
                       ["must be a mapping of ranker names to checkpoint directories"])
    }

    func testAChangeOfRankersNeedsARestart() {
        var old = BlendConfiguration(), new = BlendConfiguration()
        old.workerId = "w"; new.workerId = "w"
        new.models.rankers = ["a": "/x"]
        XCTAssertEqual(ConfigurationLoader.reloadPlan(from: old, to: new).needRestart, ["models.rankers"])
    }

    /// Generated names: a name is accepted by the configuration exactly when a job may write it.
    func testRankerNamesAreCheckedAlikeInConfigurationAndJobs() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("aZ09._-/ \u{0}é\u{200B}:")
        for _ in 0..<500 {
            let name = String((0..<Int.random(in: 0...70, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let valid = BlendConfiguration.Models.rankerNameProblem(name) == nil
            let expected = !name.isEmpty && name.count <= 64 && name.allSatisfy { "aZ09._-".contains($0) } && "aZ09".contains(name.first!)
            XCTAssertEqual(valid, expected, name.debugDescription)
            let job = #"{"job_id":"j","instruction":"q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}],"rank":{"model":\#(Self.jsonString(name))}}"#
            switch JobValidator().validate(Array(job.utf8)) {
            case .success(let parsed):
                XCTAssertTrue(valid, name.debugDescription)
                XCTAssertEqual(parsed.rank.model, name)
            case .failure(let rejection):
                if valid { XCTFail("\(name.debugDescription): \(rejection)") } else {
                    XCTAssertTrue(rejection.violations.contains { $0.code == .unknownRanker || $0.code == .nulCharacter }, "\(rejection)")
                }
            }
        }
    }

    func testAJobNamingARankerTheWorkerDoesNotServeIsRejectedWithTheConfiguredNames() throws {
        let validator = JobValidator(rankers: ["pairrm", "oasst-rm"])
        let job = { (model: String) in
            #"{"job_id":"j","instruction":"q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}],"rank":{"model":"\#(model)"}}"#
        }
        guard case .success(let ok) = validator.validate(Array(job("oasst-rm").utf8)) else { return XCTFail("a served ranker") }
        XCTAssertEqual(ok.rank.model, "oasst-rm")
        guard case .failure(let rejection) = validator.validate(Array(job("gpt").utf8)) else { return XCTFail("not served") }
        XCTAssertEqual(rejection.violations, [Violation(.unknownRanker, at: "rank.model", "no ranker named \"gpt\" is configured; configured: oasst-rm, pairrm")])
        let wrongType = #"{"job_id":"j","instruction":"q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}],"rank":{"model":3}}"#
        guard case .failure(let typed) = validator.validate(Array(wrongType.utf8)) else { return XCTFail("a number") }
        XCTAssertEqual(typed.violations.map(\.code), [.wrongType])
        // The wire format keeps the name.
        let encoded = String(decoding: try JSONEncoder().encode(ok), as: UTF8.self)
        XCTAssertTrue(encoded.contains(#""model":"oasst-rm""#), encoded)
    }

    private static func jsonString(_ s: String) -> String {
        String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
    }
}

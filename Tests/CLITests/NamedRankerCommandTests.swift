import Foundation
import XCTest

/// `blendd rank` and `blendd config check` with several rankers configured (`models.rankers`).
final class NamedRankerCommandTests: XCTestCase {
    static let fixtures = CommandLineTests.repositoryRoot.appendingPathComponent("Tests/Fixtures")

    var rankerFlags: [String] {
        ["--set", "models.rankers.pairrm=\(Self.fixtures.appendingPathComponent("pairrm-tiny").path)",
         "--set", "models.rankers.oasst-rm=\(Self.fixtures.appendingPathComponent("oasst-rm-tiny").path)",
         "--set", "models.default_ranker=pairrm"]
    }

    func testRankServesEachJobWithTheRankerItNames() throws {
        let jobs = [
            #"{"job_id":"n1","instruction":"Capital?","candidates":[{"model":"a","text":"Paris."},{"model":"b","text":"Lyon."}],"rank":{"model":"oasst-rm"},"fuse":false}"#,
            #"{"job_id":"n2","instruction":"Capital?","candidates":[{"model":"a","text":"Paris."},{"model":"b","text":"Lyon."}],"fuse":false}"#,
            #"{"job_id":"n3","task":"reward","instruction":"Capital?","candidates":[{"model":"a","text":"Paris."},{"model":"b","text":"Lyon."}],"rank":{"model":"oasst-rm"}}"#,
        ].joined(separator: "\n")
        let r = try CommandLineTests.runBlendd(["rank", "--json", "-"] + rankerFlags, stdin: Data(jobs.utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.count, 3, r.stdout)
        let rankers: [String: String] = Dictionary(uniqueKeysWithValues: lines.map { ($0["job_id"] as! String, $0["ranker"] as? String ?? "") })
        XCTAssertTrue(rankers["n1"]?.hasPrefix("reward-model:oasst-rm-tiny@") == true, "\(rankers)")
        XCTAssertTrue(rankers["n2"]?.hasPrefix("pairrm:pairrm-tiny@") == true, "the default ranker: \(rankers)")
        XCTAssertTrue(rankers["n3"]?.hasPrefix("reward-model:oasst-rm-tiny@") == true, "\(rankers)")

        let unknown = #"{"job_id":"n4","instruction":"q","candidates":[{"model":"a","text":"x"},{"model":"b","text":"y"}],"rank":{"model":"gpt"}}"#
        let refused = try CommandLineTests.runBlendd(["rank", "-"] + rankerFlags, stdin: Data(unknown.utf8))
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("unknown_ranker at rank.model: no ranker named \"gpt\" is configured; configured: oasst-rm, pairrm"), refused.stderr)
    }

    func testConfigCheckListsTheRankersAndRefusesAnUnresolvedDefault() throws {
        let ok = try CommandLineTests.runBlendd(["config", "check"] + rankerFlags)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("models.rankers.oasst-rm = \(Self.fixtures.appendingPathComponent("oasst-rm-tiny").path)  (flag)"), ok.stdout)
        let ambiguous = try CommandLineTests.runBlendd(["config", "check"] + rankerFlags.dropLast(2))
        XCTAssertEqual(ambiguous.status, 1, ambiguous.stdout)
        XCTAssertTrue((ambiguous.stdout + ambiguous.stderr).contains("models.default_ranker: must name the ranker of jobs without rank.model, one of oasst-rm, pairrm"),
                      ambiguous.stdout + ambiguous.stderr)
    }
}

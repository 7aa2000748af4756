import XCTest
@testable import Inference

final class TokenBudgetPlannerTests: XCTestCase {
    func testBatchesRespectBothLimitsAndCoverEverySequenceOnce() {
        var rng = SystemRandomNumberGenerator()
        let lengths = (0..<500).map { _ in Int.random(in: 5...2048, using: &rng) }
        let planner = TokenBudgetPlanner(maxSequences: 16, maxTokens: 8192)
        let plan = planner.plan(lengths: lengths)
        XCTAssertEqual(plan.batches.flatMap(\.members).sorted(), Array(lengths.indices))
        for batch in plan.batches {
            XCTAssertLessThanOrEqual(batch.members.count, 16)
            XCTAssertLessThanOrEqual(batch.paddedTokens, 8192)
            XCTAssertEqual(batch.paddedLength, batch.members.map { lengths[$0] }.max())
        }
        XCTAssertEqual(plan.realTokens, lengths.reduce(0, +))
    }

    func testSortingByLengthKeepsPaddingLow() {
        // Alternating short and long sequences: arrival order would pad every short one to 1000.
        let lengths = (0..<64).map { $0 % 2 == 0 ? 10 : 1000 }
        let plan = TokenBudgetPlanner(maxSequences: 8, maxTokens: 1 << 20).plan(lengths: lengths)
        XCTAssertEqual(plan.batches.count, 8)
        XCTAssertEqual(plan.paddingWaste, 0, accuracy: 1e-12)
        XCTAssertEqual(plan.batches.first?.members, [1, 3, 5, 7, 9, 11, 13, 15], "ties keep arrival order")
    }

    func testTheTokenBudgetLimitsLongBatches() {
        let plan = TokenBudgetPlanner(maxSequences: 32, maxTokens: 4096).plan(lengths: [2048, 2048, 2048, 100, 100])
        XCTAssertEqual(plan.batches.map(\.members), [[0, 1], [2, 3], [4]])
        XCTAssertEqual(plan.paddedTokens, 4096 + 4096 + 100)
        XCTAssertEqual(plan.paddingWaste, Double(2048 - 100) / Double(8292), accuracy: 1e-12)
    }

    func testAnOversizedSequenceGetsABatchOfItsOwn() {
        let plan = TokenBudgetPlanner(maxSequences: 4, maxTokens: 100).plan(lengths: [500, 20])
        XCTAssertEqual(plan.batches.map(\.members), [[0], [1]])
        XCTAssertEqual(TokenBudgetPlanner(maxSequences: 4, maxTokens: 100).plan(lengths: []).batches, [])
    }
}

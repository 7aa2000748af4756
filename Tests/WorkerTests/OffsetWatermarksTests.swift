import XCTest
@testable import Worker

/// Property tests over random finish orders: the commit point never passes an unfinished offset, and once
/// everything finished it reaches the last offset of every partition.
final class OffsetWatermarksTests: XCTestCase {
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
    }

    func testCommitsNeverPassAnUnfinishedOffsetAndEventuallyCoverEverything() {
        var r = Random(state: 1)
        for round in 0..<300 {
            var marks = OffsetWatermarks<Int, Int64>()
            let partitions = r.int(1..<4)
            var registered: [Int: [Int64]] = [:]
            var next: [Int: Int64] = [:]
            var unfinished: Set<[Int64]> = []
            var committed: [Int: Int64] = [:]
            var pending: [(Int, Int64)] = []
            let total = r.int(1..<60)
            var registeredCount = 0
            // Registration (in offset order, with gaps) interleaved with finishes in random order.
            while registeredCount < total || !pending.isEmpty {
                if registeredCount < total && (pending.isEmpty || r.int(0..<3) > 0) {
                    let p = r.int(0..<partitions)
                    let offset = (next[p] ?? Int64(r.int(0..<5))) + Int64(r.int(1..<4)) - 1
                    next[p] = offset + 1
                    marks.register(p, offset: offset, item: offset)
                    registered[p, default: []].append(offset)
                    unfinished.insert([Int64(p), offset])
                    pending.append((p, offset))
                    registeredCount += 1
                } else {
                    let (p, offset) = pending.remove(at: r.int(0..<pending.count))
                    unfinished.remove([Int64(p), offset])
                    if let mark = marks.finish(p, offset: offset) {
                        XCTAssertGreaterThan(mark, committed[p] ?? -1, "round \(round): the commit point of partition \(p) went back")
                        committed[p] = mark
                    }
                    for u in unfinished where u[0] == Int64(p) {
                        XCTAssertLessThan(committed[p] ?? -1, u[1], "round \(round): partition \(p) committed past unfinished offset \(u[1])")
                    }
                }
            }
            for (p, offsets) in registered {
                XCTAssertEqual(committed[p], offsets.last, "round \(round): partition \(p) did not commit everything")
            }
            XCTAssertEqual(marks.pendingCount, 0)
        }
    }

    func testAnOffsetAlreadyRegisteredOrUnknownDoesNotAdvanceTheMark() {
        var marks = OffsetWatermarks<String, Int64>()
        for o in [10, 11, 13] as [Int64] { marks.register("p", offset: o, item: o) }
        XCTAssertNil(marks.finish("p", offset: 12), "never registered")
        XCTAssertNil(marks.finish("q", offset: 10), "unknown partition")
        XCTAssertNil(marks.finish("p", offset: 11), "10 is unfinished")
        XCTAssertEqual(marks.unfinishedCount("p"), 2)
        XCTAssertEqual(marks.finish("p", offset: 10), 11)
        XCTAssertNil(marks.finish("p", offset: 10), "finishing twice changes nothing")
        XCTAssertEqual(marks.finish("p", offset: 13), 13)
        XCTAssertEqual(marks.pendingCount, 0)
    }

    func testARewindKeepsOlderUnfinishedOffsetsAndForgetsTheRedeliveredOnes() {
        var marks = OffsetWatermarks<String, Int64>()
        for o in [5, 6, 7] as [Int64] { marks.register("p", offset: o, item: o) }
        // 6 and 7 are delivered again (the consumer rewound); 5 still holds the mark back.
        marks.register("p", offset: 6, item: 6)
        marks.register("p", offset: 7, item: 7)
        XCTAssertNil(marks.finish("p", offset: 6))
        XCTAssertNil(marks.finish("p", offset: 7))
        XCTAssertEqual(marks.finish("p", offset: 5), 7)
    }

    func testADroppedPartitionCommitsNothingOfWhatItHad() {
        var marks = OffsetWatermarks<String, Int64>()
        for o in [1, 2] as [Int64] { marks.register("p", offset: o, item: o) }
        marks.register("q", offset: 1, item: 1)
        marks.drop("p")
        XCTAssertNil(marks.finish("p", offset: 1))
        XCTAssertNil(marks.finish("p", offset: 2))
        XCTAssertEqual(marks.finish("q", offset: 1), 1)
        // Assigned again: tracking starts over from what is delivered now.
        marks.register("p", offset: 1, item: 1)
        XCTAssertEqual(marks.finish("p", offset: 1), 1)
    }
}

import Foundation
import XCTest
@testable import Inference

/// The streaming writer against the loader, on generated tensor sets: every value comes back with its bits,
/// and reading a tensor again after the loader has released its pages gives the same values (the pages come
/// back from the file), including tensors that share a page with their neighbours.
final class SafetensorsWriterTests: XCTestCase {
    func testGeneratedCheckpointsRoundTripAndSurviveReleasedPages() throws {
        var state: UInt64 = 0x5EED
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 17
        }
        let directory = NSTemporaryDirectory() + "blendd-safetensors-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for round in 0..<12 {
            let dtype: SafetensorsWriter.DType = round % 2 == 0 ? .f32 : .bf16
            var shapes: [String: [Int]] = [:]
            // Sizes around page boundaries, empty tensors, scalars-as-vectors and one multi-page matrix.
            for t in 0..<Int(1 + next() % 9) {
                let kind = next() % 5
                let shape: [Int] = switch kind {
                case 0: [Int(next() % 3)]
                case 1: [Int(1 + next() % 2100)]
                case 2: [Int(1 + next() % 40), Int(1 + next() % 300)]
                case 3: [1024 + Int(next() % 3), 1023 + Int(next() % 3)]
                default: [Int(1 + next() % 5), Int(next() % 4), Int(1 + next() % 7)]
                }
                shapes["t\(t).w\(next() % 100)"] = shape
            }
            var expected: [String: [Float]] = [:]
            for (name, shape) in shapes {
                expected[name] = (0..<shape.reduce(1, *)).map { _ in
                    var bits = UInt32(truncatingIfNeeded: next())
                    if bits & 0x7F80_0000 == 0x7F80_0000 { bits &= 0xBFFF_FFFF }  // no NaN/inf: compare plain values
                    return Float(bitPattern: dtype == .bf16 ? bits & 0xFFFF_0000 : bits)
                }
            }
            let path = directory + "/round\(round).safetensors"
            let writer = try SafetensorsWriter(path: path, shapes: shapes, dtype: dtype)
            while let name = writer.nextName { try writer.append(name, expected[name]!) }
            try writer.finish()

            let store = try WeightStore.open(file: path)
            XCTAssertEqual(store.names, shapes.keys.sorted())
            for pass in 0..<2 {
                for name in store.names.shuffled() {
                    let tensor = try XCTUnwrap(try store.tensor(name))
                    XCTAssertEqual(tensor.shape, shapes[name], "\(name), round \(round)")
                    XCTAssertEqual(tensor.storage.map(\.bitPattern), expected[name]!.map(\.bitPattern), "\(name), round \(round), pass \(pass)")
                }
            }
        }
    }

    func testWritingOutOfOrderOrIncompleteIsAnError() throws {
        let path = NSTemporaryDirectory() + "blendd-safetensors-bad-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writer = try SafetensorsWriter(path: path, shapes: ["a": [2], "b": [3]], dtype: .f32)
        XCTAssertThrowsError(try writer.append("b", [1, 2, 3])) { XCTAssertTrue("\($0)".contains("out of order"), "\($0)") }
        XCTAssertThrowsError(try writer.append("a", [1])) { XCTAssertTrue("\($0)".contains("shape"), "\($0)") }
        try writer.append("a", [1, 2])
        XCTAssertThrowsError(try writer.finish()) { XCTAssertTrue("\($0)".contains("1 of 2"), "\($0)") }
    }
}

import Foundation
import XCTest
@testable import Inference

final class CheckpointLoadingTests: XCTestCase {
    func testSafetensorsAndPytorchBinGiveBitIdenticalTensors() throws {
        let safetensors = try WeightStore.open(file: ReferenceFixtures.path("pairrm-tiny/model.safetensors"))
        let bin = try WeightStore.open(file: ReferenceFixtures.path("pairrm-tiny/pytorch_model.bin"))
        XCTAssertEqual(safetensors.names, bin.names)
        XCTAssertTrue(safetensors.names.contains("pretrained_model.encoder.layer.1.attention.self.key_proj.weight"))
        XCTAssertTrue(safetensors.names.contains("head_layer.4.bias"))
        for name in safetensors.names {
            let a = try XCTUnwrap(try safetensors.tensor(name)), b = try XCTUnwrap(try bin.tensor(name))
            XCTAssertEqual(a.shape, b.shape, name)
            XCTAssertEqual(a.storage.map(\.bitPattern), b.storage.map(\.bitPattern), name)
        }
    }

    func testBF16BinEqualsFP32SafetensorsAndShardedIndex() throws {
        // The fixture's fp32 values are bf16-representable, so converting the bf16 .bin is exact.
        let fp32 = try WeightStore.open(directory: ReferenceFixtures.path("t5-tiny"))
        XCTAssertEqual(fp32.format, .safetensors)
        let bf16 = try WeightStore.open(file: ReferenceFixtures.path("t5-tiny/pytorch_model.bin"))
        let sharded = try WeightStore.open(directory: ReferenceFixtures.path("t5-tiny-sharded"))
        XCTAssertEqual(sharded.format, .shardedSafetensors)
        XCTAssertEqual(sharded.names, fp32.names)
        // The hub .bin also carries the tied embed_tokens copies.
        XCTAssertEqual(Set(bf16.names).subtracting(fp32.names), ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"])
        for name in fp32.names {
            let a = try XCTUnwrap(try fp32.tensor(name))
            XCTAssertEqual(try XCTUnwrap(try bf16.tensor(name)).storage.map(\.bitPattern), a.storage.map(\.bitPattern), name)
            XCTAssertEqual(try XCTUnwrap(try sharded.tensor(name)).storage.map(\.bitPattern), a.storage.map(\.bitPattern), name)
        }
    }

    func testPickleWithDisallowedGlobalIsRefusedWithoutRunningIt() throws {
        let marker = "/tmp/blendd-pwned"
        try? FileManager.default.removeItem(atPath: marker)
        XCTAssertThrowsError(try WeightStore.open(file: ReferenceFixtures.path("malicious/global.bin"))) { error in
            guard case let CheckpointError.refusedPickle(_, reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("posix.system"), reason)
            XCTAssertTrue("\(error)".contains("nothing in it was executed"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    func testTruncatedArchivesAreRefused() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: ReferenceFixtures.path("pairrm-tiny/pytorch_model.bin")))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for length in [0, 10, 100, original.count / 2, original.count - 30] {
            let path = dir.appendingPathComponent("cut-\(length).bin").path
            try original.prefix(length).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try WeightStore.open(file: path), "cut at \(length)") { error in
                guard case CheckpointError.malformed = error else { return XCTFail("\(error)") }
            }
        }
        // A safetensors header that promises more than the file holds.
        let st = try Data(contentsOf: URL(fileURLWithPath: ReferenceFixtures.path("pairrm-tiny/model.safetensors")))
        let cut = dir.appendingPathComponent("cut.safetensors").path
        try st.prefix(st.count - 100).write(to: URL(fileURLWithPath: cut))
        XCTAssertThrowsError(try WeightStore.open(file: cut)) { error in
            XCTAssertTrue("\(error)".contains("outside the file") || "\(error)".contains("does not fit"), "\(error)")
        }
    }

    func testReaderReportsMissingUnexpectedAndMisshapedTensorsTogether() throws {
        let store = try WeightStore.open(directory: ReferenceFixtures.path("pairrm-tiny"))
        let reader = store.reader(prefix: "pretrained_model.")
        _ = try reader.take("embeddings.word_embeddings.weight", [505, 32])
        _ = try reader.take("embeddings.LayerNorm.weight", [64])
        _ = try reader.take("encoder.no_such.weight", [3])
        reader.ignore { $0.hasPrefix("pretrained_model.encoder.layer.") || $0.hasPrefix("pretrained_model.encoder.rel") }
        XCTAssertThrowsError(try reader.finish()) { error in
            guard case let CheckpointError.tensors(problems) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problems.contains(.shape(name: "pretrained_model.embeddings.LayerNorm.weight", expected: [64], found: [32])))
            XCTAssertTrue(problems.contains(.missing(name: "pretrained_model.encoder.no_such.weight", expected: [3])))
            XCTAssertTrue(problems.contains(.unexpected(name: "head_layer.1.weight", shape: [32, 64])))
            XCTAssertTrue("\(error)".contains("pretrained_model.embeddings.LayerNorm.weight has shape [32], expected [64]"))
        }
    }

    func testDirectoryWithoutWeightsNamesWhatItLookedFor() {
        XCTAssertThrowsError(try WeightStore.open(directory: ReferenceFixtures.path("malicious"))) { error in
            XCTAssertTrue("\(error)".contains("model.safetensors"), "\(error)")
        }
    }
}

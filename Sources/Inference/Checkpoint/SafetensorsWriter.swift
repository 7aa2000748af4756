import Foundation

/// Writes a `.safetensors` file tensor by tensor, so a checkpoint of several GB is never held in memory:
/// the header (names, dtypes, shapes, byte ranges) is fixed up front from the shapes, then each tensor's
/// values are appended in the header's order. Used to make random-weight checkpoints of real shapes for
/// `blendd bench memory` and round-trip tests of the loader.
public final class SafetensorsWriter {
    public enum DType: String, Sendable {
        case f32 = "F32", bf16 = "BF16"
        var size: Int { self == .f32 ? 4 : 2 }
    }

    public let path: String
    private let order: [(name: String, shape: [Int])]
    private let dtype: DType
    private let handle: FileHandle
    private var next = 0

    /// Creates `path` with a header for `shapes` (written in name order) stored as `dtype`.
    public init(path: String, shapes: [String: [Int]], dtype: DType) throws {
        self.path = path
        self.dtype = dtype
        order = shapes.keys.sorted().map { ($0, shapes[$0]!) }
        var offset = 0
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        for (name, shape) in order {
            let bytes = shape.reduce(1, *) * dtype.size
            header[name] = ["dtype": dtype.rawValue, "shape": shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // The data section starts 8-byte aligned, as the reference writer pads its header with spaces.
        while (8 + json.count) % 8 != 0 { json.append(UInt8(ascii: " ")) }
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckpointError.unreadable(path: path, reason: "cannot create the file")
        }
        self.handle = handle
        var length = UInt64(json.count).littleEndian
        try handle.write(contentsOf: Data(bytes: &length, count: 8))
        try handle.write(contentsOf: json)
    }

    /// The name the next `append` must carry (tensors go in name order), or nil when all are written.
    public var nextName: String? { next < order.count ? order[next].name : nil }

    /// Appends the next tensor's values; bf16 keeps the upper half of each float (values meant for a bf16
    /// file should already be bf16-representable).
    public func append(_ name: String, _ values: [Float]) throws {
        guard next < order.count, order[next].name == name else {
            throw CheckpointError.malformed(path: path, reason: "tensor \(name) written out of order (expected \(nextName ?? "none"))")
        }
        guard values.count == order[next].shape.reduce(1, *) else {
            throw CheckpointError.malformed(path: path, reason: "tensor \(name) has \(values.count) values for shape \(order[next].shape)")
        }
        switch dtype {
        case .f32:
            try values.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
        case .bf16:
            let halves = values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16).littleEndian }
            try halves.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
        }
        next += 1
    }

    /// Closes the file; every tensor of the header must have been written.
    public func finish() throws {
        guard next == order.count else {
            throw CheckpointError.malformed(path: path, reason: "closed after \(next) of \(order.count) tensors")
        }
        try handle.close()
    }
}

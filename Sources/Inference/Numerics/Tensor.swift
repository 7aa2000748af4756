/// A dense, row-major Float32 tensor with value semantics (copy-on-write through the array):
/// weights are shared without copying, activations are written in place by the kernels.
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var storage: [Float]

    public init(shape: [Int], storage: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) needs \(shape.reduce(1, *)) values, got \(storage.count)")
        self.shape = shape
        self.storage = storage
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, storage: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    /// Rows when viewed as a matrix whose last dimension is the row length.
    public var rows: Int { shape.dropLast().reduce(1, *) }
    public var columns: Int { shape.last ?? 1 }

    /// The same values under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, storage: storage)
    }

    public subscript(row row: Int) -> ArraySlice<Float> {
        storage[(row * columns)..<((row + 1) * columns)]
    }
}

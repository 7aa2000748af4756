import CKernels

/// A weight matrix [out, in] in PyTorch's Linear layout, stored as float32 or, when every value is
/// exactly a bfloat16 (a checkpoint published in bf16, such as gen_fuser_3b), as bfloat16: half the
/// memory and half the bytes read per decoder step, with results identical to the float32 copy
/// because the conversion is exact and the arithmetic stays float32.
///
/// bf16 storage is interleaved in groups of 16 values so that widening needs no lane shuffles: the
/// 32-bit word j of a group holds value j in its high half and value j + 8 in its low half, so
/// `word & 0xFFFF0000` gives values 0…7 and `word << 16` values 8…15 as float32 bit patterns.
/// Rows are a multiple of 16 long in every T5/DeBERTa shape; other widths are refused to f32.
///
/// The reduced precisions (`ReducedPrecision.swift`) change the arithmetic: `bf16Pairs` holds weights
/// rounded to bf16 in the AVX512-BF16 dot-product layout, `int8` per-output-channel int8 multiplied by activations
/// quantized per row (`Int8Weights`).
public enum WeightMatrix: Sendable {
    case f32(Tensor)
    case bf16(rows: Int, columns: Int, bits: [UInt16])
    case bf16Pairs(rows: Int, columns: Int, words: [UInt32])
    case int8(Int8Weights)

    /// `compress`: store as bfloat16 if no value would change.
    public init(_ tensor: Tensor, compress: Bool) {
        precondition(tensor.rank == 2, "a weight matrix is 2-D, got \(tensor.shape)")
        guard compress, tensor.shape[1] % 16 == 0, tensor.storage.allSatisfy({ $0.bitPattern & 0xFFFF == 0 }) else {
            self = .f32(tensor)
            return
        }
        var bits = [UInt16](repeating: 0, count: tensor.count)
        for group in stride(from: 0, to: tensor.count, by: 16) {
            for j in 0..<8 {
                bits[group + 2 * j] = UInt16(tensor.storage[group + j + 8].bitPattern >> 16)
                bits[group + 2 * j + 1] = UInt16(tensor.storage[group + j].bitPattern >> 16)
            }
        }
        self = .bf16(rows: tensor.shape[0], columns: tensor.shape[1], bits: bits)
    }

    /// Whether the row kernels (`linearRows` on f32, bf16 and int8 weights) can run their AVX-512 tiles.
    static var avx512RowKernels: Bool { bk_has_avx512() != 0 }

    /// Chooses the row kernels' tiles: true (the default where the CPU has AVX-512) for the AVX-512 tiles, false for the
    /// earlier ones (AVX2 tiles of four rows; bf16 pairs in tiles of four rows), which `blendd bench fuse --kernels`
    /// measures beside them. Both give the same bits (tests compare them). Returns whether AVX-512 tiles are in use.
    @discardableResult
    public static func useAVX512RowKernels(_ on: Bool) -> Bool { bk_set_row_kernels(on ? 1 : 0) != 0 }

    /// Sixteen values of an interleaved group as two float32 vectors (values 0…7, values 8…15).
    @inline(__always)
    static func group(_ p: UnsafePointer<UInt16>) -> (SIMD8<Float>, SIMD8<Float>) {
        let words = UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt32>.self)
        return (unsafeBitCast(words & 0xFFFF_0000, to: SIMD8<Float>.self), unsafeBitCast(words &<< 16, to: SIMD8<Float>.self))
    }

    public var shape: [Int] {
        switch self {
        case .f32(let t): t.shape
        case let .bf16(rows, columns, _), let .bf16Pairs(rows, columns, _): [rows, columns]
        case .int8(let w): [w.rows, w.columns]
        }
    }

    public var bytes: Int {
        switch self {
        case .f32(let t): t.count * 4
        case .bf16(_, _, let bits): bits.count * 2
        case .bf16Pairs(_, _, let words): words.count * 4
        case .int8(let w): w.bytes
        }
    }

    /// Rows `start..<end` as float32 into `out` (row-major, `columns` wide).
    static func widen(_ bits: UnsafeBufferPointer<UInt16>, from start: Int, to end: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
        let count = (end - start) * columns
        let source = bits.baseAddress! + start * columns
        for g in stride(from: 0, to: count, by: 16) {
            let (low, high) = group(source + g)
            UnsafeMutableRawPointer(out + g).storeBytes(of: low, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(out + g + 8).storeBytes(of: high, as: SIMD8<Float>.self)
        }
    }

    /// Rows selected by `ids` as float32: embedding lookup.
    public func gatherRows(_ ids: [Int]) -> Tensor {
        switch self {
        case .f32(let t): return Kernels.gatherRows(t, ids)
        case let .bf16(rows, columns, bits):
            var out = Tensor(zeros: [ids.count, columns])
            bits.withUnsafeBufferPointer { pb in
                out.storage.withUnsafeMutableBufferPointer { po in
                    for (i, id) in ids.enumerated() {
                        precondition(id >= 0 && id < rows, "row \(id) is outside a table of \(rows) rows")
                        Self.widen(pb, from: id, to: id + 1, columns: columns, into: po.baseAddress! + i * columns)
                    }
                }
            }
            return out
        case .bf16Pairs, .int8:
            return Kernels.gatherRows(floatTensor(), ids)
        }
    }

    /// x · Wᵀ over the last dimension of packed sequences (no bias): the fixed-shape product of
    /// `Kernels.sgemm`, from a float32 copy of bf16 weights made for the call (transient).
    public func linear(_ x: Tensor) -> Tensor {
        switch self {
        case .f32(let w):
            return Kernels.linear(x, weight: w, bias: nil)
        case let .bf16(n, k, bits):
            precondition(x.columns == k, "linear: input \(x.shape) does not fit weight [\(n), \(k)]")
            let m = x.rows
            var y = Tensor(zeros: [m, n])
            bits.withUnsafeBufferPointer { pb in
                x.storage.withUnsafeBufferPointer { px in
                    y.storage.withUnsafeMutableBufferPointer { py in
                        let wide = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
                        defer { wide.deallocate() }
                        let parts = NumericsThreading.threads
                        NumericsThreading.forEachItem(parts) { w in
                            Self.widen(pb, from: n * w / parts, to: n * (w + 1) / parts, columns: k, into: wide + n * w / parts * k)
                        }
                        Kernels.sgemm(transposeB: true, m: m, n: n, k: k, a: px.baseAddress!, lda: k, b: wide, ldb: k, c: py.baseAddress!, ldc: n)
                    }
                }
            }
            return y.reshaped(Array(x.shape.dropLast()) + [n])
        case .bf16Pairs, .int8:
            return reducedLinear(x)
        }
    }

    /// x · Wᵀ for rows that are independent items (decoder steps): one dot product per output in a fixed order
    /// (`Kernels.linearRows`); bf16 weights are widened in registers, each chunk shared by four rows.
    public func linearRows(_ x: Tensor) -> Tensor {
        switch self {
        case .f32(let w):
            return Kernels.linearRows(x, weight: w, bias: nil)
        case let .bf16(n, k, bits):
            precondition(x.columns == k, "linearRows: input \(x.shape) does not fit weight [\(n), \(k)]")
            let m = x.rows
            var y = Tensor(zeros: [m, n])
            bits.withUnsafeBufferPointer { pb in
                x.storage.withUnsafeBufferPointer { px in
                    y.storage.withUnsafeMutableBufferPointer { py in
                        let (xBase, bBase, yBase) = (px.baseAddress!, pb.baseAddress!, py.baseAddress!)
                        NumericsThreading.forEachItem((n + 63) / 64) { b in
                            bk_bf16w_rows(xBase, Int32(m), Int32(k), bBase, Int32(b * 64), Int32(min(n, b * 64 + 64)), yBase, Int32(n))
                        }
                    }
                }
            }
            return y.reshaped(Array(x.shape.dropLast()) + [n])
        case .bf16Pairs, .int8:
            return reducedLinear(x)
        }
    }
}

import BlendCore
import CKernels

/// `models.ranker_precision` / `models.fuser_precision`: fp32, bf16 or int8.
public typealias ModelPrecision = BlendConfiguration.ModelPrecision

/// The bf16 and int8 weights of `ModelPrecision` and their products, on the C kernels (`CKernels`).
///
/// - bf16 on a CPU with AVX512-BF16: weights and activations rounded to bf16 (nearest even), products summed in
///   float32 by `vdpbf16ps`, as PyTorch's bf16 autocast computes a Linear. Without AVX512-BF16 the weights are
///   rounded to bf16 and held as `.bf16` (float32 arithmetic on them), so AVX2-only machines still run bf16.
/// - int8: weights with one scale per output channel (max |w| / 127), activations quantized per row on the fly
///   (127 / max |x|), int8 × int8 products summed in int32 (AVX512-VNNI where present), as CTranslate2's int8
///   computes a Linear (`Int8Weights`). Decoder rows read one byte per weight.
///
/// Every output is one accumulation in a fixed order (int8: an exact integer sum), so rows keep the bit-exactness
/// of the fp32 paths: a row's result never depends on the other rows of the call.
extension WeightMatrix {
    /// Whether the bf16 dot-product instructions run here (checked once: CPUID and the OS's zmm state).
    public static let vectorBF16 = bk_has_avx512_bf16() != 0

    /// A weight in `precision`; fp32 keeps exact values (bf16 storage only when lossless and `compressExact`).
    public init(_ tensor: Tensor, precision: ModelPrecision, compressExact: Bool) {
        precondition(tensor.rank == 2, "a weight matrix is 2-D, got \(tensor.shape)")
        let n = tensor.shape[0], k = tensor.shape[1]
        switch precision {
        case .fp32:
            self.init(tensor, compress: compressExact)
        case .bf16 where Self.vectorBF16:
            var words = [UInt32](repeating: 0, count: bk_bf16_packed_words(Int32(n), Int32(k)))
            tensor.storage.withUnsafeBufferPointer { pw in
                words.withUnsafeMutableBufferPointer { bk_bf16_pack(pw.baseAddress!, Int32(n), Int32(k), $0.baseAddress!) }
            }
            self = .bf16Pairs(rows: n, columns: k, words: words)
        case .bf16:
            let rounded = tensor.storage.map { Float(bitPattern: UInt32(Self.roundToBF16($0)) << 16) }
            self.init(Tensor(shape: tensor.shape, storage: rounded), compress: true)
        case .int8:
            self = .int8(Int8Weights(tensor))
        }
    }

    /// Nearest-even bfloat16 bits of `value` (NaN stays NaN).
    static func roundToBF16(_ value: Float) -> UInt16 {
        let u = value.bitPattern
        if value.isNaN { return UInt16(u >> 16) | 0x40 }
        return UInt16((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    /// The values the reduced weight stands for, as float32 (embedding lookups, tests).
    func floatTensor() -> Tensor {
        switch self {
        case .f32(let t): return t
        case let .bf16(n, k, bits):
            var out = Tensor(zeros: [n, k])
            bits.withUnsafeBufferPointer { pb in out.storage.withUnsafeMutableBufferPointer { Self.widen(pb, from: 0, to: n, columns: k, into: $0.baseAddress!) } }
            return out
        case let .bf16Pairs(n, k, words):
            let k2 = (k + 1) / 2
            var out = [Float](repeating: 0, count: n * k)
            for j in 0..<n {
                for i in 0..<k {
                    let word = words[((j / 16) * k2 + i / 2) * 16 + j % 16]
                    out[j * k + i] = Float(bitPattern: (i % 2 == 0 ? word << 16 : word & 0xFFFF_0000))
                }
            }
            return Tensor(shape: [n, k], storage: out)
        case .int8(let w):
            return w.floatTensor()
        }
    }

    /// Products of the reduced formats, the same for packed sequences and decoder rows.
    func reducedLinear(_ x: Tensor) -> Tensor {
        let m = x.rows, n = shape[0], k = shape[1]
        precondition(x.columns == k, "linear: input \(x.shape) does not fit weight [\(n), \(k)]")
        var y: Tensor
        switch self {
        case .bf16Pairs(_, _, let words):
            y = Tensor(zeros: [m, n])
            Self.bf16Product(x, words: words, n: n, into: &y, vector: true)
        case .int8(let w):
            y = w.product(x.reshaped([m, k]))
        case .f32, .bf16:
            preconditionFailure("reducedLinear takes bf16Pairs or int8 weights")
        }
        return y.reshaped(Array(x.shape.dropLast()) + [n])
    }

    /// y = bf16(x) · Wᵀ with float32 sums; `vector: false` runs the portable loop (tests compare the two).
    static func bf16Product(_ x: Tensor, words: [UInt32], n: Int, into y: inout Tensor, vector: Bool) {
        let m = x.rows, k = x.columns, k2 = (k + 1) / 2
        // Every word is written by the rounding, so the buffer is not zeroed first.
        let rounded = [UInt32](unsafeUninitializedCapacity: m * k2) { pr, count in
            x.storage.withUnsafeBufferPointer { px in
                let (xb, rb) = (px.baseAddress!, pr.baseAddress!)
                NumericsThreading.forEachItem((m + 63) / 64) { b in
                    let start = b * 64, rows = min(m, start + 64) - start
                    bk_bf16_round_rows(xb + start * k, Int32(rows), Int32(k), Int32(k), rb + start * k2)
                }
            }
            count = m * k2
        }
        rounded.withUnsafeBufferPointer { pr in
            words.withUnsafeBufferPointer { pw in
                y.storage.withUnsafeMutableBufferPointer { py in
                    let (rb, wb, yb) = (pr.baseAddress!, pw.baseAddress!, py.baseAddress!)
                    // Tiles of 96 rows × 256 columns: enough items for every worker, and a weight panel that stays in L2.
                    let rowTiles = (m + 95) / 96, columnTiles = (n + 255) / 256
                    NumericsThreading.forEachItem(rowTiles * columnTiles) { item in
                        let r = (item / columnTiles) * 96, j = (item % columnTiles) * 256
                        bk_bf16_gemm(rb + r * k2, Int32(min(m, r + 96) - r), Int32(k), wb, Int32(j), Int32(min(n, j + 256)),
                                     yb + r * n, Int32(n), vector ? 1 : 0)
                    }
                }
            }
        }
    }
}

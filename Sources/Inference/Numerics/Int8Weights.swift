import CKernels

/// A weight [n, k] quantized to int8 per output channel (scale max |w[j]| / 127, as CTranslate2 quantizes), held in
/// the dot-product layout of `bk_i8_gemm`, and its product with float32 activations: each activation row is quantized
/// on the fly (scale 127 / max |x[r]|), the int8 × int8 sums run in int32 (AVX512-VNNI, else AVX2, else portable
/// code), and each output is (float)sum · (rowScale · scale[j]). Integer sums are exact, so every path gives the same
/// bits, and a row's outputs depend on nothing but the row: not on the other rows of the call, their number, the
/// tiles or the split over threads.
public struct Int8Weights: Sendable {
    public let rows: Int
    public let columns: Int
    /// Columns in blocks of 16, k in groups of 4 bytes, zero padded.
    let packed: [Int8]
    /// Σ_k q[j][k] per column, padded to a multiple of 16 with zeros (the VNNI path's correction for its +128 shift).
    let columnSums: [Int32]
    /// Per-column scales, padded like `columnSums`.
    let scales: [Float]

    init(_ tensor: Tensor) {
        let n = tensor.shape[0], k = tensor.shape[1], padded = (n + 15) / 16 * 16
        var values = [Int8](repeating: 0, count: n * k)
        var scales = [Float](repeating: 0, count: padded)
        tensor.storage.withUnsafeBufferPointer { pw in
            values.withUnsafeMutableBufferPointer { pq in
                scales.withUnsafeMutableBufferPointer { bk_int8_quantize(pw.baseAddress!, Int32(n), Int32(k), pq.baseAddress!, $0.baseAddress!) }
            }
        }
        var packed = [Int8](repeating: 0, count: bk_i8_packed_bytes(Int32(n), Int32(k)))
        var sums = [Int32](repeating: 0, count: padded)
        values.withUnsafeBufferPointer { pq in
            packed.withUnsafeMutableBufferPointer { pp in
                sums.withUnsafeMutableBufferPointer { bk_i8_pack(pq.baseAddress!, Int32(n), Int32(k), pp.baseAddress!, $0.baseAddress!) }
            }
        }
        (rows, columns, self.packed, columnSums, self.scales) = (n, k, packed, sums, scales)
    }

    var bytes: Int { packed.count + 4 * (columnSums.count + scales.count) }

    /// The int8 value of weight row `j` at `i`.
    func value(_ j: Int, _ i: Int) -> Int8 { packed[((j / 16) * ((columns + 3) / 4) + i / 4) * 64 + (j % 16) * 4 + i % 4] }

    func scale(_ j: Int) -> Float { scales[j] }

    /// The values the weight stands for, value · scale, as float32.
    func floatTensor() -> Tensor {
        var out = [Float](repeating: 0, count: rows * columns)
        for j in 0..<rows {
            for i in 0..<columns { out[j * columns + i] = Float(value(j, i)) * scales[j] }
        }
        return Tensor(shape: [rows, columns], storage: out)
    }

    /// Which code computes the int8 sums; all give the same bits.
    public enum Path: Int32, Sendable, CaseIterable {
        case portable = 0, avx2 = 1, vnni = 2
    }

    /// The fastest path this CPU runs.
    public static var bestPath: Path { Path(rawValue: bk_i8_best_path())! }

    /// Selects `path` (nil: the best), capped at what the CPU runs; returns the path in effect (tests and benches).
    @discardableResult
    public static func usePath(_ path: Path?) -> Path { Path(rawValue: bk_i8_set_path(path?.rawValue ?? -1))! }

    /// Activation rows quantized as the product quantizes them: bytes q + 128 in rows of k padded to 4, and the
    /// per-row scales max |x[r]| / 127.
    static func quantizeRows(_ x: Tensor) -> (bytes: [UInt8], scales: [Float]) {
        let m = x.rows, k = x.columns, k4 = (k + 3) / 4 * 4
        var bytes = [UInt8](repeating: 0, count: m * k4)
        var scales = [Float](repeating: 0, count: m)
        x.storage.withUnsafeBufferPointer { px in
            bytes.withUnsafeMutableBufferPointer { pb in
                scales.withUnsafeMutableBufferPointer { ps in
                    let (xb, bb, sb) = (px.baseAddress!, pb.baseAddress!, ps.baseAddress!)
                    // Blocks of 64 rows: the encoder's activations quantize on every worker; a decoder step's on one.
                    NumericsThreading.forEachItem((m + 63) / 64) { b in
                        let start = b * 64, count = min(m, start + 64) - start
                        bk_i8_quantize_rows(xb + start * k, Int32(count), Int32(k), Int32(k), bb + start * k4, sb + start)
                    }
                }
            }
        }
        return (bytes, scales)
    }

    /// x · Wᵀ for x [m, k]: y [m, n].
    func product(_ x: Tensor) -> Tensor {
        let m = x.rows, n = rows
        precondition(x.columns == columns, "int8 product: input \(x.shape) does not fit weight [\(n), \(columns)]")
        var y = Tensor(zeros: [m, n])
        guard m > 0 else { return y }
        let (bytes, rowScales) = Self.quantizeRows(x)
        y.storage.withUnsafeMutableBufferPointer { py in
            run(bytes, rowScales, m: m, y: py.baseAddress!, sums: nil)
        }
        return y
    }

    /// The int32 sums Σ_k q_x[r][k] · q_w[j][k] of quantized rows, [m, n] (tests).
    func sums(_ bytes: [UInt8], _ rowScales: [Float], m: Int) -> [Int32] {
        var out = [Int32](repeating: 0, count: m * rows)
        out.withUnsafeMutableBufferPointer { run(bytes, rowScales, m: m, y: nil, sums: $0.baseAddress!) }
        return out
    }

    /// Splits the product over the workers. Up to 8 rows (decoder steps) go by column chunks only, so the weights
    /// stream once; more rows by tiles of 96 rows × 256 columns, whose weight panel stays in L2 (192 columns and
    /// 256 are whole panels of the kernel's 48- and 64-column tiles).
    private func run(_ bytes: [UInt8], _ rowScales: [Float], m: Int, y: UnsafeMutablePointer<Float>?, sums: UnsafeMutablePointer<Int32>?) {
        let n = rows, k = columns, k4 = (k + 3) / 4 * 4
        bytes.withUnsafeBufferPointer { pa in
            packed.withUnsafeBufferPointer { pw in
                columnSums.withUnsafeBufferPointer { pc in
                    scales.withUnsafeBufferPointer { ps in
                        rowScales.withUnsafeBufferPointer { pr in
                            let (a, w, c, s, r) = (pa.baseAddress!, pw.baseAddress!, pc.baseAddress!, ps.baseAddress!, pr.baseAddress!)
                            let (rowTile, columnTile) = m <= 8 ? (m, 192) : (96, 256)
                            let rowTiles = (m + rowTile - 1) / rowTile, columnTiles = (n + columnTile - 1) / columnTile
                            NumericsThreading.forEachItem(rowTiles * columnTiles) { item in
                                let r0 = (item / columnTiles) * rowTile, j0 = (item % columnTiles) * columnTile
                                bk_i8_gemm(a + r0 * k4, Int32(min(m, r0 + rowTile) - r0), Int32(k), w, c, s, r + r0,
                                           Int32(j0), Int32(min(n, j0 + columnTile)), y.map { $0 + r0 * n }, Int32(n), sums.map { $0 + r0 * n })
                            }
                        }
                    }
                }
            }
        }
    }
}

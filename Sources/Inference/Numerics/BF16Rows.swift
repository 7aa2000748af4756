import CKernels

/// Activations rounded to bf16 as the A operand of the bf16 products (`bk_bf16_round_rows`' layout): `rows` rows of
/// `(columns + 1) / 2` words, each word the pair (2p, 2p + 1) with the even column in its low half.
struct BF16Rows {
    let rows: Int, columns: Int
    var words: [UInt32]
    var wordsPerRow: Int { (columns + 1) / 2 }

    init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        words = [UInt32](repeating: 0, count: rows * ((columns + 1) / 2))
    }

    /// The rows of `x` rounded to bf16, in place of the current ones (same shape).
    mutating func round(_ x: Tensor) {
        precondition(x.rows == rows && x.columns == columns, "BF16Rows.round: \(x.shape) into [\(rows), \(columns)]")
        let (k, k2) = (columns, wordsPerRow)
        x.storage.withUnsafeBufferPointer { px in
            words.withUnsafeMutableBufferPointer { pw in
                let (xb, wb) = (px.baseAddress!, pw.baseAddress!)
                NumericsThreading.forEachItem((rows + 63) / 64) { b in
                    let start = b * 64, count = min(rows, start + 64) - start
                    bk_bf16_round_rows(xb + start * k, Int32(count), Int32(k), Int32(k), wb + start * k2)
                }
            }
        }
    }
}

/// The bf16 encoder's products with their row operations fused into each tile's epilogue (`bk_bf16_finish`): the
/// bias, the residual and GELU are applied to a tile of the product while it is in cache, and a product whose only use
/// is the next product's operand is written directly as that operand's bf16 rows. Every output has the bits of
/// `bf16Product` followed by the same float32 operations one at a time, whatever the tiling or thread count.
extension WeightMatrix {
    /// Tiles of 96 rows × 256 columns: enough items for every worker, and a weight panel that stays in L2.
    static let bf16TileRows = 96, bf16TileColumns = 256

    /// y = (bf16(x) · Wᵀ + bias) [+ residual], float32 [x.rows, n] into `y` (overwritten).
    func bf16Linear(_ x: BF16Rows, bias: [Float], residual: Tensor? = nil, into y: inout Tensor) {
        guard case let .bf16Pairs(n, k, words) = self else { preconditionFailure("bf16Linear takes bf16Pairs weights") }
        let m = x.rows, k2 = x.wordsPerRow
        precondition(x.columns == k && y.rows == m && y.columns == n && bias.count == n,
                     "bf16Linear: rows [\(m), \(x.columns)], weight [\(n), \(k)], output \(y.shape), bias \(bias.count)")
        if let residual { precondition(residual.rows == m && residual.columns == n, "bf16Linear: residual \(residual.shape) for [\(m), \(n)]") }
        let rowTiles = (m + Self.bf16TileRows - 1) / Self.bf16TileRows, columnTiles = (n + Self.bf16TileColumns - 1) / Self.bf16TileColumns
        x.words.withUnsafeBufferPointer { pa in
            words.withUnsafeBufferPointer { pw in
                bias.withUnsafeBufferPointer { pb in
                    (residual?.storage ?? []).withUnsafeBufferPointer { pr in
                        y.storage.withUnsafeMutableBufferPointer { py in
                            let (ab, wb, bb, yb) = (pa.baseAddress!, pw.baseAddress!, pb.baseAddress!, py.baseAddress!)
                            let rb = residual == nil ? nil : pr.baseAddress
                            NumericsThreading.forEachClaimedItem(rowTiles * columnTiles) { item, _ in
                                let r = (item / columnTiles) * Self.bf16TileRows, j = (item % columnTiles) * Self.bf16TileColumns
                                let rows = min(m, r + Self.bf16TileRows) - r, end = min(n, j + Self.bf16TileColumns)
                                bk_bf16_gemm(ab + r * k2, Int32(rows), Int32(k), wb, Int32(j), Int32(end), yb + r * n, Int32(n), 1)
                                bk_bf16_finish(yb + r * n + j, Int32(rows), Int32(end - j), Int32(n), bb + j,
                                               rb.map { $0 + r * n + j }, Int32(n), 0, nil, 0)
                            }
                        }
                    }
                }
            }
        }
    }

    /// bf16(GELU(bf16(x) · Wᵀ + bias)) as the next product's rows, into `out` ([x.rows, n], overwritten); the float32
    /// product exists only tile by tile.
    func bf16LinearGELU(_ x: BF16Rows, bias: [Float], into out: inout BF16Rows) {
        guard case let .bf16Pairs(n, k, words) = self else { preconditionFailure("bf16LinearGELU takes bf16Pairs weights") }
        let m = x.rows, k2 = x.wordsPerRow, ldo = out.wordsPerRow
        precondition(x.columns == k && out.rows == m && out.columns == n && bias.count == n,
                     "bf16LinearGELU: rows [\(m), \(x.columns)], weight [\(n), \(k)], output [\(out.rows), \(out.columns)], bias \(bias.count)")
        let (tileRows, tileColumns) = (Self.bf16TileRows, Self.bf16TileColumns)
        let rowTiles = (m + tileRows - 1) / tileRows, columnTiles = (n + tileColumns - 1) / tileColumns
        x.words.withUnsafeBufferPointer { pa in
            words.withUnsafeBufferPointer { pw in
                bias.withUnsafeBufferPointer { pb in
                    out.words.withUnsafeMutableBufferPointer { po in
                        let (ab, wb, bb, ob) = (pa.baseAddress!, pw.baseAddress!, pb.baseAddress!, po.baseAddress!)
                        NumericsThreading.forEachClaimedItem(rowTiles * columnTiles, scratchBytes: tileRows * tileColumns * 4) { item, scratch in
                            let r = (item / columnTiles) * tileRows, j = (item % columnTiles) * tileColumns
                            let rows = min(m, r + tileRows) - r, width = min(n, j + tileColumns) - j
                            let tile = scratch.assumingMemoryBound(to: Float.self)
                            // The panel of columns j ..< j + width as a product of its own (j is a multiple of 16).
                            bk_bf16_gemm(ab + r * k2, Int32(rows), Int32(k), wb + j * k2, 0, Int32(width), tile, Int32(tileColumns), 1)
                            bk_bf16_finish(tile, Int32(rows), Int32(width), Int32(tileColumns), bb + j, nil, 0, 1, ob + r * ldo + j / 2, Int32(ldo))
                        }
                    }
                }
            }
        }
    }
}

extension Kernels {
    /// LayerNorm of every row of `x` in place (`bk_layer_norm_rows`' order of operations), and its bf16 rows into `rows`.
    static func layerNormBF16(_ x: inout Tensor, gamma: Tensor, beta: Tensor, eps: Float, rows out: inout BF16Rows) {
        let m = x.rows, n = x.columns, ldo = out.wordsPerRow
        precondition(gamma.count == n && beta.count == n && out.rows == m && out.columns == n,
                     "layerNormBF16: γ \(gamma.shape), β \(beta.shape), rows [\(out.rows), \(out.columns)] for \(x.shape)")
        x.storage.withUnsafeMutableBufferPointer { px in
            gamma.storage.withUnsafeBufferPointer { pg in
                beta.storage.withUnsafeBufferPointer { pb in
                    out.words.withUnsafeMutableBufferPointer { po in
                        let (xb, gb, bb, ob) = (px.baseAddress!, pg.baseAddress!, pb.baseAddress!, po.baseAddress!)
                        NumericsThreading.forEachItem((m + 31) / 32) { b in
                            let start = b * 32, count = min(m, start + 32) - start
                            bk_layer_norm_rows(xb + start * n, Int32(count), Int32(n), Int32(n), gb, bb, eps, ob + start * ldo, Int32(ldo))
                        }
                    }
                }
            }
        }
    }
}

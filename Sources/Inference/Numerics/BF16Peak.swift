import CKernels
import Foundation

/// The bf16 rates `blendd bench rank` reports its encoder against: its product kernel on large shapes, and the
/// dot-product instruction's own rate, which bounds every bf16 GEMM on this CPU.
extension WeightMatrix {
    /// vdpbf16ps's rate on one core in GFLOP/s, from about `seconds` of the calling thread's CPU time; 0 without AVX512-BF16.
    public static func bf16InstructionRate(seconds: Double) -> Double { bk_bf16_instruction_gflops(seconds) }

    /// GFLOP/s of one product [m, k] · [k, n] through the encoder's bf16 path (`bf16Linear`: the operand rounded once,
    /// a bias in the epilogue) on every compute thread, timed for about `seconds` after one warm-up.
    public static func bf16ProductRate(m: Int, k: Int, n: Int, seconds: Double) -> Double {
        let a = Tensor(shape: [m, k], storage: (0..<(m * k)).map { Float($0 % 13) * 0.01 })
        let b = WeightMatrix(Tensor(shape: [n, k], storage: (0..<(n * k)).map { Float($0 % 7) * 0.01 }), precision: .bf16, compressExact: false)
        var rows = BF16Rows(rows: m, columns: k)
        rows.round(a)
        let bias = [Float](repeating: 0, count: n)
        var y = Tensor(zeros: [m, n])
        b.bf16Linear(rows, bias: bias, into: &y)
        var runs = 0
        let start = Date()
        repeat {
            b.bf16Linear(rows, bias: bias, into: &y)
            runs += 1
        } while Date().timeIntervalSince(start) < seconds
        return Double(runs) * 2 * Double(m * k * n) / Date().timeIntervalSince(start) / 1e9
    }
}

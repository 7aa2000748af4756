import Foundation

/// The machine's streaming read rate, which bounds a decoder step: each step reads every decoder weight once,
/// so `weight bytes / this rate` is the floor the benchmarks compare a step with.
public enum MemoryBandwidth {
    /// Bytes per second summing `bytes` of memory (far beyond the caches) on every compute worker, the best of
    /// `repeats` passes after one warm pass.
    public static func streamingRead(bytes: Int = 1 << 29, repeats: Int = 3) -> Double {
        let count = bytes / 4 / 16 * 16
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        let workers = NumericsThreading.threads
        NumericsThreading.parallel(workers) { w in
            let start = count * w / workers / 16 * 16, end = count * (w + 1) / workers / 16 * 16
            (buffer + start).initialize(repeating: 1, count: end - start)
        }
        var best = Double.infinity
        var sink: Float = 0
        for pass in 0...repeats {
            let partial = UnsafeMutablePointer<Float>.allocate(capacity: workers)
            defer { partial.deallocate() }
            let t = Date()
            NumericsThreading.parallel(workers) { w in
                let start = count * w / workers / 16 * 16, end = count * (w + 1) / workers / 16 * 16
                var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
                var i = start
                while i + 32 <= end {
                    acc0 += UnsafeRawPointer(buffer + i).loadUnaligned(as: SIMD16<Float>.self)
                    acc1 += UnsafeRawPointer(buffer + i + 16).loadUnaligned(as: SIMD16<Float>.self)
                    i += 32
                }
                partial[w] = (acc0 + acc1).sum()
            }
            let elapsed = Date().timeIntervalSince(t)
            for w in 0..<workers { sink += partial[w] }
            if pass > 0 { best = min(best, elapsed) }
        }
        // The sum is used, so the reads cannot be optimized away.
        return sink.isNaN ? 0 : Double(count * 4) / best
    }
}

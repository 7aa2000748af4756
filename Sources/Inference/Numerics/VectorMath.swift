/// exp, tanh and erf over SIMD8 lanes. The scalar libm calls cost more than the GEMMs around them
/// (a DeBERTa-large layer evaluates ~8 M GELUs and ~17 M softmax exponentials per 2k tokens), so
/// the row kernels use these. Accuracy: exp within 2 ulp (Cephes' polynomial), tanh within 2e-7
/// and erf within 1.5e-7 absolute (Abramowitz–Stegun 7.1.26), far inside the 1e-4 parity budget.
enum VectorMath {
    typealias V = SIMD8<Float>

    static func exp(_ input: V) -> V {
        var x = input.replacing(with: -87.3, where: input .< -87.3)
        x.replace(with: 88.37, where: x .> 88.37)
        let n = (x * 1.442_695_04 + 0.5).rounded(.down)
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 0.166_666_655
        p = p * r + 0.500_000_01
        let y = p * (r * r) + r + 1
        // 2ⁿ from the bits: adding 1.5·2²³ puts the integer n in the low mantissa bits (|n| ≤ 127), which
        // avoids the generic (unvectorized) Float→Int32 conversion.
        let magic = V(repeating: 12_582_912)
        let integer = unsafeBitCast(n + magic, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        let scale = unsafeBitCast((integer &+ 127) &<< 23, to: V.self)
        // Below −87.3 the true value underflows; masked positions (−∞) must give exactly 0.
        return (y * scale).replacing(with: 0, where: input .< -87.3)
    }

    static func tanh(_ x: V) -> V {
        let a = x.replacing(with: -x, where: x .< 0)
        // tanh|x| = 1 − 2/(e^{2|x|} + 1); for |x| < 0.0625 the odd series avoids cancellation.
        let large = 1 - 2 / (exp(2 * a) + 1)
        let a2 = a * a
        var series = V(repeating: 17.0 / 315.0)
        series = V(repeating: 2.0 / 15.0) - a2 * series
        series = V(repeating: 1.0 / 3.0) - a2 * series
        let small = a * (1 - a2 * series)
        let t = small.replacing(with: large, where: a .>= 0.0625)
        return t.replacing(with: -t, where: x .< 0)
    }

    static func erf(_ x: V) -> V {
        let a = x.replacing(with: -x, where: x .< 0)
        let t = 1 / (1 + 0.327_591_1 * a)
        var p = V(repeating: 1.061_405_429)
        p = p * t - 1.453_152_027
        p = p * t + 1.421_413_741
        p = p * t - 0.284_496_736
        p = p * t + 0.254_829_592
        let e = 1 - p * t * exp(-(a * a))
        return e.replacing(with: -e, where: x .< 0)
    }

    static func geluErf(_ x: V) -> V { 0.5 * x * (1 + erf(x * 0.707_106_781_186_547_52)) }

    static func geluTanh(_ x: V) -> V { 0.5 * x * (1 + tanh(0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x))) }

    /// f over `count` floats in place, eight at a time, the tail through a padded lane group.
    @inline(__always)
    static func apply(_ p: UnsafeMutablePointer<Float>, count: Int, _ f: (V) -> V) {
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: V.self)
            UnsafeMutableRawPointer(p + i).storeBytes(of: f(v), as: V.self)
            i += 8
        }
        if i < count {
            var tail = V()
            for k in 0..<(count - i) { tail[k] = p[i + k] }
            let out = f(tail)
            for k in 0..<(count - i) { p[i + k] = out[k] }
        }
    }
}

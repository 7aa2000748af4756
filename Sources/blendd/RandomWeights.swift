import BlendCore
import Inference

/// Random weights for benchmarks on a published model's shape: matrices uniform in ±0.02 (seeded per
/// tensor name, so runs repeat), normalization weights 1 and biases 0, made only when the model takes them.
enum RandomWeights {
    /// `bfloat16`: round the values to bf16, as a checkpoint published in bf16 holds them.
    static func store(shapes: [String: [Int]], bfloat16: Bool = false) -> WeightStore {
        .synthetic(shapes: shapes) { name, shape in
            let count = shape.reduce(1, *)
            if name.hasSuffix(".bias") { return Tensor(zeros: shape) }
            if name.contains("LayerNorm") || name.contains("layer_norm") {
                return Tensor(shape: shape, storage: [Float](repeating: 1, count: count))
            }
            var state = FNV1a.hash(name.utf8)
            var values = [Float](repeating: 0, count: count)
            for i in 0..<count {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                values[i] = (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.04
                if bfloat16 { values[i] = Float(bitPattern: values[i].bitPattern & 0xFFFF_0000) }
            }
            return Tensor(shape: shape, storage: values)
        }
    }
}

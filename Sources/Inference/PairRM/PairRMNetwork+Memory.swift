/// What PairRM's network holds in memory, for sizing and `blendd bench memory`.
extension PairRMNetwork {
    /// Bytes of every weight the network keeps (the dense layers in the chosen precision, embeddings,
    /// norms, biases, the per-layer relative-position projections (fp32, or bf16 rows for bf16 attention) and the head in fp32).
    public var weightBytes: Int {
        let e = encoder
        var bytes = 4 * (e.wordEmbeddings.count + e.embeddingNormGamma.count + e.embeddingNormBeta.count)
        for layer in e.layers {
            bytes += layer.qkvWeight.bytes + layer.attentionOutWeight.bytes + layer.intermediateWeight.bytes + layer.outputWeight.bytes
            let vectors = [layer.qkvBias, layer.attentionOutBias, layer.attentionNormGamma, layer.attentionNormBeta, layer.intermediateBias,
                           layer.outputBias, layer.outputNormGamma, layer.outputNormBeta, layer.positionKeys, layer.positionQueries]
            bytes += 4 * vectors.reduce(0) { $0 + $1.count } + 4 * (layer.positionKeyRows.count + layer.positionQueryRows.count)
        }
        return bytes + 4 * (headInnerWeight.count + headInnerBias.count + headOuterWeight.count + headOuterBias.count)
    }
}

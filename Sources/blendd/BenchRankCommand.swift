import ArgumentParser
import Foundation
import Inference

/// PairRM's forward pass on random weights of a published shape: pairs/s, tokens/s and the
/// fraction of the machine's sgemm rate (and, in bf16, of its bf16 GEMM rate), beside the baselines on the same
/// batches in the same run.
struct BenchRankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rank",
        abstract: "PairRM pairs/s and tokens/s at several lengths on random weights, beside PyTorch and ONNX Runtime baselines.",
        discussion: """
        Builds PairRM's network with random weights of --backbone's shape (DeBERTa-v3-large by \
        default, as llm-blender/PairRM), times batches of --pairs pairs of each length and prints \
        the achieved GFLOP/s as a fraction of the sgemm rate measured just before; with --precision bf16 on \
        AVX512-BF16 also as a fraction of the bf16 GEMM peak: the best of blendd's own bf16 kernel and PyTorch's \
        bf16 matmul (oneDNN) on several large products (the FFN's two at each length's batch, and 2048³), all on every thread \
        and measured in the same run, printed beside the dot-product instruction's measured rate times the cores. The baselines come from \
        scripts/bench/pairrm_torch.py (HF transformers' DebertaV2Model + the same head: PyTorch fp32, \
        PyTorch bf16 autocast, ONNX Runtime fp32) run with python3 on the same batches, with the \
        OpenBLAS core type the machine exported; they are skipped with a message when torch is absent \
        (scripts/bench/setup_venv.sh installs them). Every row prints blendd ÷ that engine, then ÷ the best.
        """
    )

    @Option(help: "Backbone whose shape the random weights take.") var backbone = "microsoft/deberta-v3-large"
    @Option(help: "Use only this many encoder layers (quicker runs; figures stay comparable with the baseline).") var layers: Int?
    @Option(help: "Comma-separated pair lengths in tokens.") var lengths = "256,512,1024"
    @Option(help: "Pairs per forward batch.") var pairs = 4
    @Option(help: "Minimum seconds timed per length (after one warm-up batch).") var seconds = 10.0
    @Option(help: "Compute threads (0: one per core); the baseline gets the same number.") var threads = 0
    @Option(help: ArgumentHelp("Baseline script (default: scripts/bench/pairrm_torch.py from the working directory).", valueName: "path"))
    var baselineScript: String?
    @Flag(help: "Skip the PyTorch baseline.") var noBaseline = false
    @Option(help: "Arithmetic of blendd's encoder: fp32, bf16 or int8 (models.ranker_precision).") var precision = ModelPrecision.fp32

    func run() throws {
        NumericsThreading.configure(threads: threads)
        let cores = threads > 0 ? threads : NumericsThreading.threads
        let lengthList = try lengths.split(separator: ",").map { part -> Int in
            guard let n = Int(part.trimmingCharacters(in: .whitespaces)), n >= 8 else { throw ValidationError("bad length \(part)") }
            return n
        }
        var config = try DebertaConfiguration.pairRM(backbone: backbone)
        if let layers { config.layers = layers }
        print("blendd bench rank: \(backbone) shape (hidden \(config.hiddenSize), \(config.layers) layers, \(config.heads) heads), random fp32 weights, precision \(precision.rawValue), \(cores) threads, \(pairs) pairs per batch, OpenBLAS \(NumericsThreading.blasCore) (rows aligned to \(Kernels.rowAlignment))")

        let peak = sgemmRate(hidden: config.hiddenSize, inner: config.intermediateSize)
        print(String(format: "  sgemm reference rate: %.1f GFLOP/s (a [2048×%d]·[%d×%d] product, the FFN's shape)", peak, config.hiddenSize, config.hiddenSize, config.intermediateSize))
        // The bf16 GEMM peak: the best of several large products (the FFN's two at every batch's rows, and 2048³), here
        // with blendd's kernel and below with PyTorch's, beside the dot-product instruction's own rate on every core.
        let gemmShapes = Self.gemmShapes(config, rows: lengthList.map { $0 * pairs })
        var bf16Peak: (engine: String, rate: Double, shape: String)?
        if precision == .bf16 && WeightMatrix.vectorBF16 {
            let instruction = WeightMatrix.bf16InstructionRate(seconds: 0.5)
            print(String(format: "  bf16 instruction peak: %.1f GFLOP/s (vdpbf16ps measured on one core: %.1f GFLOP/s × %d cores)",
                         instruction * Double(cores), instruction, cores))
            for (m, k, n) in gemmShapes {
                let rate = WeightMatrix.bf16ProductRate(m: m, k: k, n: n, seconds: 1)
                print(String(format: "  bf16 GEMM rate, blendd's kernel, M=%d K=%d N=%d: %.1f GFLOP/s (%d threads, %.0f%% of the instruction peak)",
                             m, k, n, rate, cores, 100 * rate / (instruction * Double(cores))))
                if rate > bf16Peak?.rate ?? 0 { bf16Peak = ("blendd", rate, "M=\(m) K=\(k) N=\(n)") }
            }
        }

        let buildStart = Date()
        let network = try PairRMNetwork(configuration: config, store: RandomWeights.store(shapes: Self.weightShapes(config)), precision: precision)
        print(String(format: "  random weights built in %.1f s", Date().timeIntervalSince(buildStart)))

        var ours: [Int: Double] = [:], oursGFLOPs: [Int: Double] = [:]
        for length in lengthList {
            let batch = (0..<pairs).map { p in Self.pair(length: length, seed: UInt64(length * 131 + p)) }
            _ = network.logits(batch)  // warm-up
            var runs = 0
            let start = Date()
            repeat {
                _ = network.logits(batch)
                runs += 1
            } while Date().timeIntervalSince(start) < seconds
            let elapsed = Date().timeIntervalSince(start)
            let pairsPerSecond = Double(runs * pairs) / elapsed
            ours[length] = pairsPerSecond
            let gflops = pairsPerSecond * Self.flopsPerPair(config, length: length) / 1e9
            oursGFLOPs[length] = gflops
            print(String(format: "  blendd   L=%5d  %7.3f pairs/s  %8.1f tokens/s  %6.1f GFLOP/s  %4.0f%% of sgemm", length, pairsPerSecond,
                         pairsPerSecond * Double(length), gflops, 100 * gflops / peak)
                  + (bf16Peak.map { String(format: "  %4.0f%% of blendd's best bf16 GEMM", 100 * gflops / $0.rate) } ?? ""))
        }
        let rss = BenchBaseline.peakResidentBytes()
        print(String(format: "  blendd   peak resident memory %.2f GB", Double(rss) / 1e9))

        guard !noBaseline else { return }
        var arguments = ["--backbone", backbone, "--lengths", lengths, "--pairs", String(pairs), "--seconds", String(seconds),
                         "--threads", String(cores)]
        if bf16Peak != nil {
            arguments += ["--engines", "torch-fp32,torch-bf16,onnxruntime,torch-bf16-gemm",
                          "--gemm-shapes", gemmShapes.map { "\($0.m)x\($0.k)x\($0.n)" }.joined(separator: ",")]
        }
        if let layers { arguments += ["--layers", String(layers)] }
        guard let objects = try BenchBaseline.run(script: baselineScript, default: "scripts/bench/pairrm_torch.py", arguments: arguments) else { return }
        var best: [Int: (engine: String, rate: Double)] = [:]
        var gemmPeak = bf16Peak
        for object in objects {
            if let gflops = object["gemm_gflops"] as? Double {
                let shape = object["shape"] as? String ?? "?"
                print(String(format: "  bf16 GEMM rate, PyTorch bf16 matmul, %@: %.1f GFLOP/s (%d threads)", shape, gflops, cores))
                if gflops > gemmPeak?.rate ?? 0 { gemmPeak = ("PyTorch", gflops, shape) }
            } else if let length = object["length"] as? Int, let runs = object["runs"] as? Int, let secs = object["seconds"] as? Double {
                let engine = object["engine"] as? String ?? "torch-fp32"
                let rate = Double(runs * pairs) / secs
                let gflops = rate * Self.flopsPerPair(config, length: length) / 1e9
                print(String(format: "  %@ L=%5d  %7.3f pairs/s  %8.1f tokens/s  %6.1f GFLOP/s  %4.0f%% of sgemm   blendd/%@ %.2f×",
                             engine.padding(toLength: 12, withPad: " ", startingAt: 0), length, rate, rate * Double(length), gflops,
                             100 * gflops / peak, engine, (ours[length] ?? 0) / rate))
                if rate > best[length]?.rate ?? 0 { best[length] = (engine, rate) }
            } else if let bytes = object["peak_rss_bytes"] as? Int {
                let versions = (object["versions"] as? [String: String] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                print(String(format: "  baselines peak resident memory %.2f GB (%@, %d threads)   blendd/baselines %.2f×", Double(bytes) / 1e9,
                             versions.joined(separator: ", "), object["threads"] as? Int ?? 0, Double(rss) / Double(bytes)))
            }
        }
        for length in lengthList {
            guard let (engine, rate) = best[length] else { continue }
            print(String(format: "  L=%5d  blendd / best baseline (%@): %.2f×", length, engine, (ours[length] ?? 0) / rate)
                  + (gemmPeak.map { String(format: "   blendd at %.0f%% of the bf16 GEMM peak (%.1f GFLOP/s, %@ at %@)", 100 * (oursGFLOPs[length] ?? 0) / $0.rate,
                                           $0.rate, $0.engine, $0.shape) } ?? ""))
        }
    }

    /// Multiply-adds ×2 of one pair: the dense layers per token, plus the attention products per head
    /// (QKᵀ and PV over L², c2p and p2c over the reachable relative rows).
    static func flopsPerPair(_ c: DebertaConfiguration, length: Int) -> Double {
        let h = Double(c.hiddenSize), inner = Double(c.intermediateSize), l = Double(length)
        let buckets = c.bucket(length - 1)
        let width = Double(min(2 * buckets + 1, 2 * c.attentionSpan))
        let dense = l * 2 * (4 * h * h + 2 * h * inner)
        let attention = 2 * (2 * l * l + 2 * l * width) * h
        return Double(c.layers) * (dense + attention)
    }

    static func pair(length: Int, seed: UInt64) -> PairInput {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        let ids = (0..<length).map { _ -> Int in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return 5 + Int((state >> 33) % 127_995)
        }
        return PairInput(ids: ids, sourcePosition: 1, candidate1Position: length / 3 + 1, candidate2Position: 2 * length / 3 + 1)
    }

    /// The hub's tensor names and shapes; `RandomWeights` fills them (LayerNorm γ = 1, β = 0).
    static func weightShapes(_ c: DebertaConfiguration) -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        let h = c.hiddenSize, p = PairRMNetwork.backbonePrefix
        func norm(_ name: String) { shapes[name + ".weight"] = [h]; shapes[name + ".bias"] = [h] }
        func linear(_ name: String, _ out: Int, _ input: Int) { shapes[name + ".weight"] = [out, input]; shapes[name + ".bias"] = [out] }
        shapes[p + "embeddings.word_embeddings.weight"] = [c.vocabularySize, h]
        norm(p + "embeddings.LayerNorm")
        shapes[p + "encoder.rel_embeddings.weight"] = [2 * c.attentionSpan, h]
        norm(p + "encoder.LayerNorm")
        for l in 0..<c.layers {
            let q = p + "encoder.layer.\(l)."
            for proj in ["query_proj", "key_proj", "value_proj"] { linear(q + "attention.self." + proj, h, h) }
            linear(q + "attention.output.dense", h, h)
            norm(q + "attention.output.LayerNorm")
            linear(q + "intermediate.dense", c.intermediateSize, h)
            linear(q + "output.dense", h, c.intermediateSize)
            norm(q + "output.LayerNorm")
        }
        linear("head_layer.1", h, 2 * h)
        linear("head_layer.4", c.tasks, h)
        return shapes
    }

    /// The products that bound the bf16 GEMM rate: the FFN's two (K = hidden → inner, inner → hidden) at each batch's
    /// row count, and a square 2048³.
    static func gemmShapes(_ c: DebertaConfiguration, rows: [Int]) -> [(m: Int, k: Int, n: Int)] {
        rows.flatMap { [($0, c.hiddenSize, c.intermediateSize), ($0, c.intermediateSize, c.hiddenSize)] } + [(2048, 2048, 2048)]
    }

    func sgemmRate(hidden: Int, inner: Int) -> Double {
        let a = Tensor(shape: [2048, hidden], storage: (0..<(2048 * hidden)).map { Float($0 % 13) * 0.01 })
        let b = Tensor(shape: [inner, hidden], storage: (0..<(inner * hidden)).map { Float($0 % 7) * 0.01 })
        _ = Kernels.matmul(a, b, transposeB: true)
        var runs = 0
        let start = Date()
        repeat {
            _ = Kernels.matmul(a, b, transposeB: true)
            runs += 1
        } while Date().timeIntervalSince(start) < 2
        return Double(runs) * 2 * Double(2048 * hidden * inner) / Date().timeIntervalSince(start) / 1e9
    }
}

import ArgumentParser
import Foundation
import Inference

/// GenFuser's encoder and decoding speed on random weights of Flan-T5 shapes, beside PyTorch (fp32, bf16
/// autocast) and CTranslate2 (int8, fp32) running the same work in the same run.
struct BenchFuseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuse",
        abstract: "GenFuser encoder tokens/s, decoding tokens/s at batch 1 and 8, beam-4 time per job and peak memory, beside PyTorch and CTranslate2.",
        discussion: """
        For each --shapes entry (Flan-T5 base, large, xl; gen_fuser_3b is xl) builds T5 with random weights \
        (bf16 values, held as bf16 and computed in fp32 as blendd runs gen_fuser_3b; --fp32 for fp32 values) \
        and times: the encoder on 8 prompts of --prompt-tokens; greedy generation of exactly \
        --new-tokens at batch 1 and 8 (decoding tokens/s excludes the encoder time measured for the same \
        prompts); beam search with 4 beams for one job. scripts/bench/genfuser_torch.py runs the same work \
        with transformers' T5ForConditionalGeneration in a separate process, in fp32 and under bf16 autocast, \
        with the OpenBLAS core type the machine exported; scripts/bench/genfuser_ctranslate2.py converts that \
        model with CTranslate2's converter to int8 and float32 and runs the same work. Each is skipped with a \
        message when its packages are absent (scripts/bench/setup_venv.sh installs them). Every row prints \
        blendd ÷ that engine, and a last line blendd ÷ the best baseline of each column. \
        The run also measures the streaming read rate and prints each decode step as a multiple of the floor \
        its weight bytes set. xl needs about 6 GB for blendd (12 GB with --fp32) and 13 GB for PyTorch; CTranslate2's first xl run converts \
        the model once (cached under ~/.cache/blendd-bench).
        """
    )

    @Option(help: "Comma-separated shapes: base, large, xl.") var shapes = "large"
    @Option(help: "Tokens per prompt.") var promptTokens = 128
    @Option(help: "Tokens generated per job (EOS is suppressed so every run decodes exactly this many).") var newTokens = 16
    @Option(help: "Compute threads (0: one per core); the baseline gets the same number.") var threads = 0
    @Option(help: ArgumentHelp("PyTorch baseline script (default: scripts/bench/genfuser_torch.py from the working directory).", valueName: "path"))
    var baselineScript: String?
    @Option(help: ArgumentHelp("CTranslate2 baseline script (default: scripts/bench/genfuser_ctranslate2.py from the working directory).", valueName: "path"))
    var ctranslate2Script: String?
    @Flag(help: "Random weights not representable in bf16, so blendd holds them in fp32 (default: bf16 values, as gen_fuser_3b is published).")
    var fp32 = false
    @Flag(help: "Skip the baselines (PyTorch and CTranslate2).") var noBaseline = false
    @Option(help: "Arithmetic of blendd's model: fp32, bf16 or int8 (models.fuser_precision).") var precision = ModelPrecision.fp32
    @Option(help: "Row kernels: avx512 (the default where present) or earlier (AVX2 tiles of four rows, bf16 pairs in tiles of four), to compare them in one build.")
    var kernels = "avx512"
    @Flag(help: "Also time each phase of the decode steps (T5Model.decodeStep's own phases, at batch 1 and 8), each beside the floor of the weight bytes it reads, to show where a step's time goes.")
    var profile = false

    func run() throws {
        NumericsThreading.configure(threads: threads)
        guard ["avx512", "earlier"].contains(kernels) else { throw ValidationError("--kernels is avx512 or earlier") }
        let avx512 = WeightMatrix.useAVX512RowKernels(kernels == "avx512")
        let cores = threads > 0 ? threads : NumericsThreading.threads
        for shape in shapes.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let config = T5Configuration.flanT5(shape) else { throw ValidationError("unknown shape \(shape); use base, large or xl") }
            print("blendd bench fuse: flan-t5-\(shape) shape (d_model \(config.modelSize), \(config.encoderLayers)+\(config.decoderLayers) layers, \(config.heads) heads), random \(fp32 ? "fp32" : "bf16-valued") weights, precision \(precision.rawValue), \(avx512 ? "AVX-512" : "earlier") row kernels, \(cores) threads, prompts of \(promptTokens) tokens, \(newTokens) new tokens, OpenBLAS \(NumericsThreading.blasCore)")
            // The rate varies by a third from moment to moment on a shared VM, so it is measured before and after
            // blendd's runs and the higher one sets the floor (the stricter comparison).
            let before = MemoryBandwidth.streamingRead()
            let ours = try measureOurs(config, bandwidth: before)
            let after = MemoryBandwidth.streamingRead(), bandwidth = max(before, after)
            print(String(format: "  streaming read bandwidth: %.1f GB/s (all %d workers, 512 MB; the higher of %.1f before and %.1f after blendd's runs)",
                         bandwidth / 1e9, cores, before / 1e9, after / 1e9))
            printRow("blendd    ", ours, baseline: nil)
            printFloor(ours, bandwidth: bandwidth)
            guard !noBaseline else { continue }
            var measured: [(engine: String, figures: Figures)] = []
            let engines = [(baselineScript, "scripts/bench/genfuser_torch.py", "fp32", "torch-fp32"),
                           (baselineScript, "scripts/bench/genfuser_torch.py", "bf16", "torch-bf16"),
                           (ctranslate2Script, "scripts/bench/genfuser_ctranslate2.py", "int8", "ct2-int8"),
                           (ctranslate2Script, "scripts/bench/genfuser_ctranslate2.py", "fp32", "ct2-fp32")]
            for (script, defaultScript, dtype, engine) in engines {
                guard let object = try BenchBaseline.run(script: script, default: defaultScript,
                                                         arguments: ["--shape", shape, "--prompt-tokens", String(promptTokens), "--dtype", dtype,
                                                                     "--new-tokens", String(newTokens), "--threads", String(cores)])?.last else { continue }
                func number(_ key: String) -> Double { (object[key] as? Double) ?? Double(object[key] as? Int ?? 0) }
                let theirs = Figures(encoder8: number("encoder_seconds_8"), prefill8: number("encoder_seconds_8"), prefill1: number("encoder_seconds_1"),
                                     generate1: number("generate_seconds_1"), generate8: number("generate_seconds_8"),
                                     beam4: number("beam4_seconds"), peakBytes: Int(number("peak_rss_bytes")))
                printRow(engine.padding(toLength: 10, withPad: " ", startingAt: 0), theirs, baseline: ours, versus: engine)
                measured.append((engine, theirs))
            }
            printBest(ours, measured)
        }
    }

    struct Figures {
        var encoder8: Double
        /// What generate() spends before the first decoder step, at batch 8 and 1.
        var prefill8: Double
        var prefill1: Double
        var generate1: Double
        var generate8: Double
        var beam4: Double
        var peakBytes: Int
        /// Weight bytes a decoder step reads (blendd only).
        var stepBytes = 0
        /// A decoder step at batch 1 and 8, timed directly (blendd only).
        var step1 = 0.0, step8 = 0.0
    }

    /// blendd ÷ the best baseline of each column (fastest rate, shortest beam-4 time, smallest peak), naming it.
    private func printBest(_ ours: Figures, _ measured: [(engine: String, figures: Figures)]) {
        guard !measured.isEmpty else { return }
        let r = rates(ours)
        func best(_ value: (Figures) -> Double, higherIsBetter: Bool) -> (engine: String, value: Double) {
            let valid = measured.map { ($0.engine, value($0.figures)) }.filter { $0.1.isFinite && $0.1 > 0 }
            guard let top = valid.max(by: { higherIsBetter ? $0.1 < $1.1 : $0.1 > $1.1 }) else { return ("none", .nan) }
            return top
        }
        func show(_ ratio: Double, _ engine: String) -> String { ratio.isFinite ? String(format: "%.2f× (%@)", ratio, engine) : "n/a" }
        let encoder = best({ rates($0).encoder }, higherIsBetter: true), decode1 = best({ rates($0).decode1 }, higherIsBetter: true)
        let decode8 = best({ rates($0).decode8 }, higherIsBetter: true), beam4 = best({ $0.beam4 }, higherIsBetter: false)
        let memory = best({ Double($0.peakBytes) }, higherIsBetter: false)
        print("  blendd / best baseline: encoder \(show(r.encoder / encoder.value, encoder.engine))  decode b=1 \(show(r.decode1 / decode1.value, decode1.engine))  "
              + "b=8 \(show(r.decode8 / decode8.value, decode8.engine))  beam-4 \(show(beam4.value / ours.beam4, beam4.engine)) faster  "
              + "memory \(show(Double(ours.peakBytes) / memory.value, memory.engine))")
    }

    /// Each decode step against the floor its weight bytes set at the measured read rate. The step is timed directly
    /// (`directStep`): generation minus a separately timed prefill, as the tokens/s rows compute it for every engine
    /// alike, is the difference of two noisy timings, too loose for a ratio near 1.
    private func printFloor(_ f: Figures, bandwidth: Double) {
        let floor = Double(f.stepBytes) / bandwidth
        for (batch, step) in [(1, f.step1), (8, f.step8)] {
            print(String(format: "  blendd   decode step b=%d: %7.2f ms = %5.2f× the floor (%.1f MB of weights per step at %.1f GB/s = %.2f ms)",
                         batch, step * 1e3, step / floor, Double(f.stepBytes) / 1e6, bandwidth / 1e9, floor * 1e3))
        }
    }

    /// Seconds per decoder step at `batch` rows over the first prompts' sources, the rows fed their argmax: the
    /// mean over `--new-tokens` steps, best of three runs.
    private func directStep(_ model: T5Model, prompts: [[Int]], batch: Int) -> Double {
        let sources = model.encodeSources(Array(prompts.prefix(batch)))
        return (0..<3).map { _ in
            let start = Date()
            runSteps(model, sources: sources, profile: nil)
            return Date().timeIntervalSince(start) / Double(newTokens)
        }.min()!
    }

    /// `--new-tokens` decoder steps from the start token, one row per source, each row fed its argmax.
    private func runSteps(_ model: T5Model, sources: [T5Model.EncodedSource], profile: DecodeStepProfile?) {
        let c = model.configuration
        var rows = sources.indices.map { model.makeRow(source: $0) }
        var tokens = Array(repeating: c.decoderStartId, count: sources.count)
        for _ in 0..<newTokens {
            let logits = model.decodeStep(&rows, tokens: tokens, sources: sources, profile: profile)
            tokens = logits.storage.withUnsafeBufferPointer { p in
                (0..<sources.count).map { r in
                    let row = p.baseAddress! + r * c.vocabularySize
                    var best = 0
                    for i in 0..<c.vocabularySize where row[i] > row[best] { best = i }
                    return best
                }
            }
        }
    }

    /// `--new-tokens` decode steps at batch 1 and 8 run directly (rows fed their argmax), timed phase by phase as
    /// `T5Model.decodeStep` runs them: each phase kind's time per step beside the floor of the weight bytes it reads,
    /// so attention, the cache, norms and dispatch show against the products they sit with.
    private func profileSteps(_ model: T5Model, prompts: [[Int]], bandwidth: Double) {
        let bytes = model.decodeStepPhaseBytes
        for batch in [1, 8] {
            let profile = DecodeStepProfile()
            runSteps(model, sources: model.encodeSources(Array(prompts.prefix(batch))), profile: profile)
            let steps = Double(profile.steps), total = profile.totalSeconds / steps
            let floor = Double(model.decoderStepBytes) / bandwidth
            print(String(format: "  profile  b=%d: step %7.2f ms = %5.2f× the floor (%.2f ms), by phase (ms per step, share, × the floor of its weights):",
                         batch, total * 1e3, total / floor, floor * 1e3))
            for (kind, name) in T5Model.decodeStepPhases.enumerated() {
                let seconds = profile.phaseSeconds[kind] / steps, phaseFloor = Double(bytes[kind]) / bandwidth
                print(String(format: "           %-55@ %7.2f ms %5.1f %%  %5.2f× (%.1f MB)", name as NSString, seconds * 1e3,
                             100 * seconds / total, seconds / phaseFloor, Double(bytes[kind]) / 1e6))
            }
            print(String(format: "           %-55@ %7.2f ms %5.1f %%", "outside the team (embedding, setup, logits)" as NSString,
                         profile.outsideSeconds / steps * 1e3, 100 * profile.outsideSeconds / steps / total))
        }
    }

    /// Encoder and decoding tokens/s of one side. Decoding time is generate() minus its prefill; when a run is
    /// too short for that difference to be positive the rate is unmeasurable (NaN), never a huge number.
    private func rates(_ f: Figures) -> (encoder: Double, decode1: Double, decode8: Double) {
        func rate(_ tokens: Int, _ seconds: Double) -> Double { seconds > 0 ? Double(tokens) / seconds : .nan }
        return (rate(8 * promptTokens, f.encoder8), rate(newTokens, f.generate1 - f.prefill1), rate(8 * newTokens, f.generate8 - f.prefill8))
    }

    private func printRow(_ name: String, _ f: Figures, baseline: Figures?, versus: String = "pytorch") {
        func show(_ v: Double, _ format: String) -> String { v.isFinite ? String(format: format, v) : "n/a (raise --new-tokens)" }
        let r = rates(f)
        var line = "  \(name)  encoder \(show(r.encoder, "%7.1f")) tokens/s   decode b=1 \(show(r.decode1, "%6.2f")) tokens/s   "
            + "b=8 \(show(r.decode8, "%6.2f")) tokens/s   beam-4 job \(String(format: "%6.2f", f.beam4)) s   peak \(String(format: "%5.2f", Double(f.peakBytes) / 1e9)) GB"
        if let b = baseline {
            let ours = rates(b)
            line += "\n           blendd/\(versus): encoder \(show(ours.encoder / r.encoder, "%.2f×"))  decode b=1 \(show(ours.decode1 / r.decode1, "%.2f×"))  "
                + "b=8 \(show(ours.decode8 / r.decode8, "%.2f×"))  beam-4 \(String(format: "%.2f", f.beam4 / b.beam4))× faster  "
                + "memory \(String(format: "%.2f", Double(b.peakBytes) / Double(max(1, f.peakBytes))))×"
        }
        print(line)
    }

    private func measureOurs(_ config: T5Configuration, bandwidth: Double) throws -> Figures {
        let start = Date()
        let model = try T5Model(configuration: config, store: RandomWeights.store(shapes: Self.weightShapes(config), bfloat16: !fp32),
                                precision: precision)
        print(String(format: "  random weights built in %.1f s", Date().timeIntervalSince(start)))
        var state: UInt64 = 1
        let prompts = (0..<8).map { _ in
            (0..<promptTokens).map { _ -> Int in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return 5 + Int((state >> 33) % 31_995)
            }
        }
        let generator = T5Generator(model: model)
        _ = generator.generate([Array(prompts[0].prefix(8))], settings: [GenerationSettings(maxNewTokens: 2)])  // warm-up
        // Best of three: one run of a few tens of milliseconds is at the mercy of whatever else the machine runs.
        func timed(_ work: () -> Void) -> Double {
            (0..<3).map { _ in
                let t = Date()
                work()
                return Date().timeIntervalSince(t)
            }.min()!
        }
        let exact = GenerationSettings(maxNewTokens: newTokens, minNewTokens: newTokens)
        var beam = exact
        beam.numBeams = 4
        // The encoder alone, as the baseline's `model.encoder(...)`; decoding time excludes encodeSources (encoder +
        // cross-attention keys/values), which generate() runs first.
        let encoder8 = timed { _ = model.encode(prompts) }
        let sources8 = timed { _ = model.encodeSources(prompts) }
        let sources1 = timed { _ = model.encodeSources([prompts[0]]) }
        let generate1 = timed { _ = generator.generate([prompts[0]], settings: [exact]) }
        let generate8 = timed { _ = generator.generate(prompts, settings: Array(repeating: exact, count: 8)) }
        let beam4 = timed { _ = generator.generate([prompts[0]], settings: [beam]) }
        if profile { profileSteps(model, prompts: prompts, bandwidth: bandwidth) }
        return Figures(encoder8: encoder8, prefill8: sources8, prefill1: sources1, generate1: generate1, generate8: generate8,
                       beam4: beam4, peakBytes: BenchBaseline.peakResidentBytes(), stepBytes: model.decoderStepBytes,
                       step1: directStep(model, prompts: prompts, batch: 1), step8: directStep(model, prompts: prompts, batch: 8))
    }

    /// The HF names and shapes of a T5 v1.1 checkpoint.
    static func weightShapes(_ c: T5Configuration) -> [String: [Int]] {
        let d = c.modelSize, inner = c.innerSize, ff = c.feedForwardSize
        var shapes: [String: [Int]] = ["shared.weight": [c.vocabularySize, d], "lm_head.weight": [c.vocabularySize, d],
                                       "encoder.final_layer_norm.weight": [d], "decoder.final_layer_norm.weight": [d]]
        func attention(_ p: String) {
            for m in ["q", "k", "v"] { shapes[p + m + ".weight"] = [inner, d] }
            shapes[p + "o.weight"] = [d, inner]
        }
        func feedForward(_ p: String) {
            shapes[p + "wi_0.weight"] = [ff, d]
            shapes[p + "wi_1.weight"] = [ff, d]
            shapes[p + "wo.weight"] = [d, ff]
        }
        for stack in ["encoder", "decoder"] {
            shapes["\(stack).block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = [c.relativeBuckets, c.heads]
            let layers = stack == "encoder" ? c.encoderLayers : c.decoderLayers
            for l in 0..<layers {
                let p = "\(stack).block.\(l).layer."
                attention(p + "0.SelfAttention.")
                shapes[p + "0.layer_norm.weight"] = [d]
                if stack == "encoder" {
                    feedForward(p + "1.DenseReluDense.")
                    shapes[p + "1.layer_norm.weight"] = [d]
                } else {
                    attention(p + "1.EncDecAttention.")
                    shapes[p + "1.layer_norm.weight"] = [d]
                    feedForward(p + "2.DenseReluDense.")
                    shapes[p + "2.layer_norm.weight"] = [d]
                }
            }
        }
        return shapes
    }
}

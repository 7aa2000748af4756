import ArgumentParser
import Foundation
import Inference

/// Peak memory of a worker's model against the bytes of the weights it holds, per precision: a random checkpoint
/// of the real shapes is written to disk once, then each precision is loaded in a fresh process through the
/// same loader a worker uses (`WeightStore.open` on the directory, the model's initializer inside
/// `LoadingMemory.compact`) and runs one batch.
struct BenchMemoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "Peak resident memory of loading and running PairRM and GenFuser from a checkpoint, as a multiple of their weight bytes.",
        discussion: """
        Writes random weights of the real shapes as model.safetensors (PairRM in fp32 and GenFuser in bf16, as \
        llm-blender/PairRM and gen_fuser_3b are published) into --directory (a temporary directory by default, \
        removed afterwards), then for each --precisions entry starts `blendd bench memory --load …` as a new \
        process: it opens the directory with the worker's loader, builds the model in that precision, runs one \
        batch (PairRM: --pairs pairs of --pair-tokens tokens; GenFuser: 8 prompts of 128 tokens, 8 new tokens, \
        then one beam-4 job) and reports its peak resident set (VmHWM, which counts mapped file pages too) \
        beside the weight bytes the model holds. The xl fuser needs about 6 GB of disk and of memory.
        """
    )

    @Option(help: "Comma-separated models: pairrm, fuser.") var models = "pairrm,fuser"
    @Option(help: "GenFuser shape: base, large or xl (gen_fuser_3b is xl).") var shape = "large"
    @Option(help: "Comma-separated precisions: fp32, bf16, int8.") var precisions = "fp32,bf16,int8"
    @Option(help: "Pairs in PairRM's batch.") var pairs = 4
    @Option(help: "Tokens per PairRM pair.") var pairTokens = 512
    @Option(help: "Keep the checkpoints in this directory (reused when present).") var directory: String?
    @Option(help: ArgumentHelp("Child mode: load the checkpoint in this directory and print one JSON line.", visibility: .private))
    var load: String?
    @Option(help: ArgumentHelp("Child mode: pairrm or fuser.", visibility: .private)) var model = "fuser"
    @Option(help: ArgumentHelp("Child mode: the precision.", visibility: .private)) var precision = ModelPrecision.fp32

    func run() throws {
        if let load { return try child(directory: load) }
        guard let fuserConfig = T5Configuration.flanT5(shape) else { throw ValidationError("unknown shape \(shape); use base, large or xl") }
        let modelList = models.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let precisionList = try precisions.split(separator: ",").map { part -> ModelPrecision in
            guard let p = ModelPrecision(rawValue: part.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("unknown precision \(part)") }
            return p
        }
        for m in modelList where !["pairrm", "fuser"].contains(m) { throw ValidationError("unknown model \(m); use pairrm or fuser") }
        let root = directory ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("blendd-bench-memory-\(getpid())")
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: root) } }
        print("blendd bench memory: PairRM (deberta-v3-large shape, fp32 checkpoint) and GenFuser (flan-t5-\(shape) shape, bf16 checkpoint), one process per precision")
        for m in modelList {
            let dir = (root as NSString).appendingPathComponent(m == "fuser" ? "fuser-\(shape)" : "pairrm")
            let file = (dir as NSString).appendingPathComponent("model.safetensors")
            if !FileManager.default.fileExists(atPath: file) {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let start = Date()
                let shapes = m == "fuser" ? BenchFuseCommand.weightShapes(fuserConfig)
                    : BenchRankCommand.weightShapes(try DebertaConfiguration.pairRM(backbone: "microsoft/deberta-v3-large"))
                let random = RandomWeights.store(shapes: shapes, bfloat16: m == "fuser")
                let writer = try SafetensorsWriter(path: file, shapes: shapes, dtype: m == "fuser" ? .bf16 : .f32)
                while let name = writer.nextName { try writer.append(name, try random.tensor(name)!.storage) }
                try writer.finish()
                print(String(format: "  %@: wrote %@ in %.1f s", m, file, Date().timeIntervalSince(start)))
            }
            let fileBytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            for p in precisionList {
                guard let report = try runChild(directory: dir, model: m, precision: p) else { continue }
                let weights = report["weight_bytes"] as? Int ?? 0, peak = report["peak_rss_bytes"] as? Int ?? 0
                let before = report["rss_before_bytes"] as? Int ?? 0
                let loadedPeak = report["peak_loaded_bytes"] as? Int ?? 0
                print(String(format: "  %@ %@  checkpoint %5.2f GB  weights held %5.2f GB  peak resident %5.2f GB = %.3f× the weights"
                             + "  (process before loading %.0f MB, peak while loading %.2f×; load %.1f s, run %.1f s)",
                             m.padding(toLength: 6, withPad: " ", startingAt: 0), p.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0),
                             Double(fileBytes) / 1e9, Double(weights) / 1e9, Double(peak) / 1e9, Double(peak) / Double(max(weights, 1)),
                             Double(before) / 1e6, Double(loadedPeak) / Double(max(weights, 1)), report["load_seconds"] as? Double ?? 0, report["run_seconds"] as? Double ?? 0))
            }
        }
    }

    /// Runs this executable in child mode and returns its JSON report, or nil after saying why there is none.
    private func runChild(directory: String, model: String, precision: ModelPrecision) throws -> [String: Any]? {
        let (status, data, errors) = try BenchBaseline.capture(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath(), [
            "bench", "memory", "--load", directory, "--model", model, "--precision", precision.rawValue,
            "--pairs", String(pairs), "--pair-tokens", String(pairTokens), "--shape", shape,
        ])
        guard status == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            let reason = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).prefix(300)
            print("  \(model) \(precision.rawValue): the loading process failed with status \(status): \(reason)")
            return nil
        }
        return json
    }

    private func child(directory: String) throws {
        NumericsThreading.configure(threads: 0)
        let before = BenchBaseline.residentBytes()
        let start = Date()
        let weights: Int
        let runStart: Date
        let loaded: (resident: Int, peak: Int)
        switch model {
        case "pairrm":
            let network = try LoadingMemory.compact {
                try PairRMNetwork(configuration: try DebertaConfiguration.pairRM(backbone: "microsoft/deberta-v3-large"),
                                  store: try WeightStore.open(directory: directory), precision: precision)
            }
            weights = network.weightBytes
            loaded = (BenchBaseline.residentBytes(), BenchBaseline.peakResidentBytes())
            runStart = Date()
            _ = network.logits((0..<pairs).map { BenchRankCommand.pair(length: pairTokens, seed: UInt64($0)) })
        case "fuser":
            guard let config = T5Configuration.flanT5(shape) else { throw ValidationError("unknown shape \(shape)") }
            let t5 = try LoadingMemory.compact { try T5Model(configuration: config, store: try WeightStore.open(directory: directory), precision: precision) }
            weights = t5.weightBytes
            loaded = (BenchBaseline.residentBytes(), BenchBaseline.peakResidentBytes())
            runStart = Date()
            let prompts = (0..<8).map { j in (0..<128).map { 5 + ($0 * 7919 + j * 104_729) % 31_995 } }
            let generator = T5Generator(model: t5)
            let greedy = GenerationSettings(maxNewTokens: 8, minNewTokens: 8)
            var beam = greedy
            beam.numBeams = 4
            _ = generator.generate(prompts, settings: Array(repeating: greedy, count: prompts.count))
            _ = generator.generate([prompts[0]], settings: [beam])
        default:
            throw ValidationError("unknown model \(model); use pairrm or fuser")
        }
        let report: [String: Any] = [
            "weight_bytes": weights, "peak_rss_bytes": BenchBaseline.peakResidentBytes(), "rss_before_bytes": before,
            "rss_loaded_bytes": loaded.resident, "peak_loaded_bytes": loaded.peak,
            "load_seconds": runStart.timeIntervalSince(start), "run_seconds": Date().timeIntervalSince(runStart),
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
    }
}

import ArgumentParser
import BlendCore
import Foundation
import Inference

struct FuseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuse",
        abstract: "Fuse the candidates of jobs in a file into one answer each with GenFuser.",
        discussion: """
        FILE holds jobs as for `blendd validate` (JSON, JSON array or JSON Lines; `-` for stdin). \
        Every candidate of a job is fused, in the order given (best first, as GenFuser was trained), \
        with the job's fuse options (num_beams, max_new_tokens, …) unless overridden here. The model \
        is the directory of --model (or models.fuser), e.g. llm-blender/gen_fuser_3b as published. \
        --stream decodes greedily and prints the text as each token is produced.
        """
    )

    @Argument(help: "Job file (`-` for standard input).")
    var file: String

    @Option(help: ArgumentHelp("GenFuser checkpoint directory (overrides models.fuser).", valueName: "dir"))
    var model: String?

    @Option(help: "Beams for every job (default: the job's fuse.num_beams, 4).") var beams: Int?
    @Option(help: "New-token limit for every job (default: the job's fuse.max_new_tokens, 128).") var maxNewTokens: Int?
    @Flag(help: "Decode greedily and print the text as it is produced.") var stream = false
    @Flag(help: "Print one JSON object per job.") var json = false

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        var config = try options.loadOrFail()
        if let model { config.models.fuser = model }
        guard !config.models.fuser.isEmpty else {
            throw CLIError("no GenFuser checkpoint: pass --model DIR or set models.fuser")
        }
        guard let fuser = try ModelFactory.fuser(for: config) as? GenFuser else {
            throw CLIError("models.fuser did not load a GenFuser")
        }
        let validator = JobValidator(limits: config.limits)
        var requests: [FuseRequest] = []
        var invalid = 0
        for record in JobFileReader.records(in: try readInput(file)) {
            switch validator.validate(record.bytes) {
            case .success(let job):
                var fuse = job.fuse ?? BlendJob.FuseOptions()
                if let beams { fuse.numBeams = beams }
                if let maxNewTokens { fuse.maxNewTokens = maxNewTokens }
                if stream { fuse.numBeams = 1; fuse.doSample = false }
                requests.append(FuseRequest(jobId: job.jobId, instruction: job.instruction, input: job.input,
                                            candidates: job.candidates.map(\.text), options: fuse))
            case .failure(let rejection):
                invalid += 1
                FileHandle.standardError.write(Data("\(file):\(record.line): skipped, \(rejection)\n".utf8))
            }
        }
        var failed = 0
        if stream {
            for request in requests {
                // Unbuffered writes, so each token shows as it is produced.
                let out = FileHandle.standardOutput
                out.write(Data("\(request.jobId): ".utf8))
                var shown = ""
                let result = fuser.fuseNow([request]) { _, text in
                    // Print what was added; decoding may revise the tail (e.g. a space before punctuation).
                    out.write(Data((text.hasPrefix(shown) ? String(text.dropFirst(shown.count)) : "\n  " + text).utf8))
                    shown = text
                }[0]
                out.write(Data("\n".utf8))
                if case .failure(let error) = result { failed += 1; FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
            }
        } else {
            let results = await fuser.fuse(requests)
            for (request, result) in zip(requests, results) {
                switch result {
                case .failure(let error):
                    failed += 1
                    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                case .success(let outcome):
                    if json {
                        let object: JSONValue = .object(["job_id": .string(request.jobId), "fuser": .string(fuser.label),
                                                          "text": .string(outcome.text), "generated_tokens": .number(Double(outcome.generatedTokens))])
                        let encoder = JSONEncoder()
                        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                        print(String(decoding: (try? encoder.encode(object)) ?? Data(), as: UTF8.self))
                    } else {
                        print("\(request.jobId)  fuser \(fuser.label)  \(outcome.generatedTokens) tokens\n  \(outcome.text)")
                    }
                }
            }
        }
        if invalid + failed > 0 { throw ExitCode.failure }
    }
}

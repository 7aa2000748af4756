import ArgumentParser
import BlendCore
import Foundation

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check blend jobs against the job contract and print every violation.",
        discussion: """
        FILE holds one job (a JSON object), a JSON array of jobs, or JSON Lines; `-` reads \
        standard input. Each job is judged exactly as a worker judges a message on the jobs \
        topic, under the limits of the configuration (limits.*; see --config and --set). \
        Exit status: 0 when every job is valid, 1 when any is not or an input holds no job.
        """
    )

    @Argument(help: "Job files to check (`-` for standard input).")
    var files: [String]

    @Flag(name: .shortAndLong, help: "Print only invalid jobs and the summary.")
    var quiet = false

    @Flag(help: "Print one JSON object per job instead of text.")
    var json = false

    @OptionGroup var options: ConfigurationOptions

    func run() throws {
        let validator = JobValidator(limits: try options.loadOrFail().limits)
        var valid = 0, invalid = 0
        for file in files {
            let name = file == "-" ? "<stdin>" : file
            let records = JobFileReader.records(in: try readInput(file))
            guard !records.isEmpty else { throw CLIError("\(name): no job to check (the input is empty)") }
            for record in records {
                let location = "\(name):\(record.line)"
                switch validator.validate(record.bytes) {
                case .success(let job):
                    valid += 1
                    if json {
                        print(jsonLine(["location": .string(location), "job_id": .string(job.jobId), "valid": .bool(true)]))
                    } else if !quiet {
                        print("\(location): ok \(job.jobId) (\(job.candidates.count) candidates)")
                    }
                case .failure(let rejection):
                    invalid += 1
                    if json {
                        let violations = rejection.violations.map { v -> JSONValue in
                            .object(["code": .string(v.code.rawValue), "path": .string(v.path), "message": .string(v.message)])
                        }
                        print(jsonLine(["location": .string(location), "job_id": rejection.jobId.map(JSONValue.string) ?? .null,
                                        "valid": .bool(false), "violations": .array(violations)]))
                    } else {
                        let id = rejection.jobId ?? "(no job_id)"
                        print("\(location): invalid \(id), \(rejection.violations.count) violation(s)")
                        for v in rejection.violations { print("  \(v)") }
                    }
                }
            }
        }
        if !json {
            print("\(valid + invalid) job(s): \(valid) valid, \(invalid) invalid")
        }
        if invalid > 0 { throw ExitCode.failure }
    }

    private func jsonLine(_ object: [String: JSONValue]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(JSONValue.object(object))) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

/// Reads a file argument, `-` meaning standard input; a missing file is a clear one-line error.
func readInput(_ path: String) throws -> Data {
    if path == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("cannot read \(path): \(FileManager.default.fileExists(atPath: path) ? "permission denied or not a regular file" : "no such file")")
    }
    return data
}

import ArgumentParser
import Foundation

@main
struct Blendd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blendd",
        abstract: "Runs LLM-Blender (PairRanker + GenFuser) as a Kafka worker fleet that stores results in PostgreSQL.",
        discussion: """
        Jobs arrive on a Kafka topic, are ranked pairwise and fused, stored in PostgreSQL \
        and announced as CloudEvents. Start with `blendd dev` to run everything on one machine.
        """,
        version: "blendd \(version) (commit \(BuildCommit.id))",
        subcommands: [
            ValidateCommand.self,
            ConfigCommand.self,
            RankCommand.self,
            EvalCommand.self,
            FuseCommand.self,
            MigrateCommand.self,
            ResultCommand.self,
            EnqueueCommand.self,
            DevCommand.self,
            WorkerCommand.self,
            SuperviseCommand.self,
            StatusCommand.self,
            BenchCommand.self,
        ]
    )

    static let version = "0.1.0"

    /// Exit statuses are part of the interface: 0 ok, 1 failure, 2 usage. ArgumentParser's
    /// default for usage errors is 64, and its error text may span lines; both are normalised here.
    static func main() async {
        CPUFeatures.requireInferenceSupport()
        CPUFeatures.selectOpenBLASCoreType()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withStatusFor: error)
        }
    }

    private static func exit(withStatusFor error: Error) -> Never {
        let code = exitCode(for: error)
        if code == .success {
            // --help, --version: ArgumentParser renders them.
            Self.exit(withError: error)
        }
        if let cli = error as? CLIError {
            FileHandle.standardError.write(Data("error: \(cli.description)\n".utf8))
            Foundation.exit(ExitCode.failure.rawValue)
        }
        if code.rawValue == ExitCode.validationFailure.rawValue {
            let message = fullMessage(for: error)
            FileHandle.standardError.write(Data("\(message)\n".utf8))
            Foundation.exit(2)
        }
        if error is ExitCode {
            Foundation.exit(code.rawValue)
        }
        var message = fullMessage(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
        if message.hasPrefix("Error: ") { message.removeFirst(7) }
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        Foundation.exit(ExitCode.failure.rawValue)
    }
}

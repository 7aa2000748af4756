import ArgumentParser
import BlendCore
import Foundation
import Kafka

/// Options every long-running command shares: where the configuration comes from.
struct ConfigurationOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp("YAML configuration file (default: $BLENDD_CONFIG, if set).", valueName: "file"))
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override one setting, e.g. --set kafka.group_id=blendd (repeatable).", valueName: "path=value"))
    var overrides: [String] = []

    /// `--set` overrides a supervisor hands its workers: a JSON array of `path=value` strings in the
    /// environment, so no setting (a database password, say) ever appears on a command line, which
    /// every local user can read in /proc. Applied before the process's own `--set` flags.
    static let inheritedOverridesVariable = "BLENDD_OVERRIDES"

    /// The configuration with every problem: the declared ranges and rules, then, when those
    /// hold, what librdkafka refuses in the clients a worker would create.
    func load() -> LoadedConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var loaded = ConfigurationLoader.load(file: config ?? environment["BLENDD_CONFIG"], environment: environment,
                                              overrides: Self.inheritedOverrides(environment) + overrides)
        if loaded.problems.isEmpty {
            loaded.problems += KafkaConfiguration.problems(in: loaded.configuration)
                .map { ConfigurationProblem(location: "kafka.properties", message: $0) }
        }
        return loaded
    }

    static func inheritedOverrides(_ environment: [String: String]) -> [String] {
        guard let text = environment[inheritedOverridesVariable],
              let list = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else { return [] }
        return list
    }

    /// The environment of a child `blendd` that should load exactly this configuration: this
    /// process's environment, the configuration file and every override.
    func childEnvironment() throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        if let config {
            environment["BLENDD_CONFIG"] = URL(fileURLWithPath: config).standardizedFileURL.path
        }
        let all = Self.inheritedOverrides(environment) + overrides
        if all.isEmpty {
            environment[Self.inheritedOverridesVariable] = nil
        } else {
            environment[Self.inheritedOverridesVariable] = String(decoding: try JSONEncoder().encode(all), as: UTF8.self)
        }
        return environment
    }

    /// The overrides as they may be logged: values of secret settings masked.
    func maskedOverrides() -> [String] {
        (Self.inheritedOverrides(ProcessInfo.processInfo.environment) + overrides).map { override in
            guard let equals = override.firstIndex(of: "=") else { return override }
            let path = String(override[..<equals]), value = String(override[override.index(after: equals)...])
            let prefix = "kafka.properties."
            if path.hasPrefix(prefix) {
                return ConfigurationLoader.isSecretKafkaProperty(String(path.dropFirst(prefix.count))) ? "\(path)=****" : override
            }
            let secret = ConfigurationLoader.settings.first { $0.path == path }?.isSecret ?? false
            return secret ? "\(path)=\(ConfigurationLoader.mask(value))" : override
        }
    }

    /// The configuration, or a failure listing every problem.
    func loadOrFail() throws -> BlendConfiguration {
        let loaded = load()
        guard loaded.problems.isEmpty else {
            throw CLIError("invalid configuration: " + loaded.problems.map(\.description).joined(separator: "; "))
        }
        LogOutput.bootstrapOnce(loaded.configuration)
        return loaded.configuration
    }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Inspect the effective configuration.",
        subcommands: [ConfigCheckCommand.self]
    )
}

struct ConfigCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Print the effective configuration (secrets masked) and every problem found.",
        discussion: """
        Values come from defaults, then the YAML file, then BLENDD_* environment variables \
        (BLENDD_KAFKA_GROUP_ID for kafka.group_id; BLENDD_KAFKA_PROPERTY_SASL_PASSWORD for the \
        librdkafka property sasl.password; any variable with _FILE appended reads its value \
        from a file), then --set flags. Exit status 1 when there is a problem.
        """
    )

    @OptionGroup var options: ConfigurationOptions

    func run() throws {
        let loaded = options.load()
        for line in loaded.rendered() { print(line) }
        if loaded.problems.isEmpty {
            print("configuration ok")
        } else {
            for problem in loaded.problems { print("problem: \(problem)") }
            throw CLIError("\(loaded.problems.count) configuration problem(s)")
        }
    }
}

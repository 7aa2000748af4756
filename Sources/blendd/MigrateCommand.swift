import ArgumentParser
import BlendCore
import Foundation
import Postgres

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply pending database migrations.",
        discussion: """
        Applies the numbered SQL files of the migrations directory in order, each in its own \
        transaction, under a PostgreSQL advisory lock: any number of processes may run it at \
        once. Applied files are recorded with their SHA-256; an applied file that was edited \
        is refused. The directory is --migrations, else $BLENDD_MIGRATIONS_DIR, else \
        share/blendd/migrations beside the installed binary, else ./migrations.
        """
    )

    @Option(help: ArgumentHelp("PostgreSQL URL or conninfo (default: postgres.url from the configuration, or $BLENDD_DATABASE_URL).", valueName: "url"))
    var databaseURL: String?

    @Option(help: ArgumentHelp("Directory of NNNN_*.sql files.", valueName: "dir"))
    var migrations: String?

    @OptionGroup var options: ConfigurationOptions

    func run() async throws {
        let url = try databaseURL ?? options.loadOrFail().postgres.url
        let directory = try Self.migrationsDirectory(explicit: migrations)
        let runner = try MigrationRunner(directory: directory)
        let connection = try await PostgresConnection.connect(url, applicationName: "blendd migrate")
        let results: [MigrationRunner.Result]
        do {
            results = try await runner.run(on: connection)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        var applied = 0
        for result in results {
            if case .applied(let name) = result {
                print("applied \(name)")
                applied += 1
            }
        }
        print(applied == 0 ? "schema is up to date (\(results.count) migrations)" : "applied \(applied) of \(results.count) migrations")
    }

    static func migrationsDirectory(explicit: String?) throws -> String {
        if let explicit { return explicit }
        if let env = ProcessInfo.processInfo.environment["BLENDD_MIGRATIONS_DIR"], !env.isEmpty { return env }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let installed = executable.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("share/blendd/migrations").path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: installed, isDirectory: &isDirectory), isDirectory.boolValue { return installed }
        if FileManager.default.fileExists(atPath: "migrations", isDirectory: &isDirectory), isDirectory.boolValue { return "migrations" }
        throw CLIError("no migrations directory found; pass --migrations DIR or set BLENDD_MIGRATIONS_DIR")
    }
}

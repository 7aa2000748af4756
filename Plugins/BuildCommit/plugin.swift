import Foundation
import PackagePlugin

/// Generates `BuildCommit.swift`, the git commit the binary is built from (for `blendd --version`).
/// GIT_COMMIT, when set, names it (image builds, whose context has no .git); otherwise git does,
/// and outside a checkout or without git it reads "unknown". The command reruns when HEAD, the
/// reflog or the index change, i.e. after every commit, checkout or `git add`.
@main
struct BuildCommit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let root = context.package.directoryURL.path
        let file = context.pluginWorkDirectoryURL.appending(path: "generated/BuildCommit.swift")
        // Written only when the text changes, so an unchanged commit recompiles nothing.
        let script = """
            mkdir -p "$(dirname "$2")"
            if [ -n "$GIT_COMMIT" ]; then commit=$GIT_COMMIT
            elif commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null); then
                [ -n "$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit-dirty"
            else commit=unknown; fi
            text="enum BuildCommit { static let id = \\"$commit\\" }"
            [ -f "$2" ] && [ "$(cat "$2")" = "$text" ] || printf '%s\\n' "$text" > "$2"
            """
        let inputs = gitDirectory(of: root).map { dir in
            ["HEAD", "logs/HEAD", "index"].map { URL(fileURLWithPath: dir).appending(path: $0) }
                .filter { FileManager.default.fileExists(atPath: $0.path) }
        } ?? []
        return [.buildCommand(displayName: "Recording the git commit", executable: URL(fileURLWithPath: "/bin/sh"),
                              arguments: ["-c", script, "sh", root, file.path],
                              environment: ["GIT_COMMIT": ProcessInfo.processInfo.environment["GIT_COMMIT"] ?? ""],
                              inputFiles: inputs, outputFiles: [file])]
    }

    /// The repository's git directory (a worktree's own one), or nil outside a checkout.
    private func gitDirectory(of root: String) -> String? {
        let git = Process()
        git.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        git.arguments = ["git", "-C", root, "rev-parse", "--absolute-git-dir"]
        let output = Pipe()
        git.standardOutput = output
        git.standardError = FileHandle.nullDevice
        guard (try? git.run()) != nil else { return nil }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        git.waitUntilExit()
        return git.terminationStatus == 0 ? text.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }
}

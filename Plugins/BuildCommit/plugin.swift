import Foundation
import PackagePlugin

/// Generates `BuildCommit.swift` (the git commit the binary is built from, for `blendd --version`)
/// before every build. GIT_COMMIT, when set, names it (image builds, whose context has no
/// .git); otherwise git does, and outside a checkout or without git it reads "unknown".
@main
struct BuildCommit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let file = output.appending(path: "BuildCommit.swift").path
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
        return [.prebuildCommand(displayName: "Recording the git commit", executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: ["-c", script, "sh", context.package.directoryURL.path, file],
                                 environment: ["GIT_COMMIT": ProcessInfo.processInfo.environment["GIT_COMMIT"] ?? ""],
                                 outputFilesDirectory: output)]
    }
}

import Foundation
import PackagePlugin

/// Generates `BuildCommit.swift` (the git commit the binary is built from, for `blendd --version`)
/// before every build. Outside a git checkout, or without git, the commit reads "unknown".
@main
struct BuildCommit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let file = output.appending(path: "BuildCommit.swift").path
        // Written only when the text changes, so an unchanged commit recompiles nothing.
        let script = """
            mkdir -p "$(dirname "$2")"
            commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null) || commit=unknown
            [ "$commit" != unknown ] && [ -n "$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit-dirty"
            text="enum BuildCommit { static let id = \\"$commit\\" }"
            [ -f "$2" ] && [ "$(cat "$2")" = "$text" ] || printf '%s\\n' "$text" > "$2"
            """
        return [.prebuildCommand(displayName: "Recording the git commit", executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: ["-c", script, "sh", context.package.directoryURL.path, file],
                                 outputFilesDirectory: output)]
    }
}

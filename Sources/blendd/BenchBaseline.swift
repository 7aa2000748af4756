import Foundation

/// The baseline engines of `blendd bench rank` / `bench fuse` (PyTorch, ONNX Runtime, CTranslate2): runs a script
/// from scripts/bench in its own process and hands back the JSON objects it prints, or says why there is no baseline.
enum BenchBaseline {
    /// The script's JSON output lines, or nil after printing why the baseline is skipped (script not
    /// found, torch missing, script failed).
    static func run(script explicit: String?, default path: String, arguments: [String]) throws -> [[String: Any]]? {
        let script = explicit ?? path
        guard FileManager.default.fileExists(atPath: script) else {
            print("  baseline skipped: \(script) not found (run from the repository or pass --baseline-script)")
            return nil
        }
        // The baseline gets the OpenBLAS core type the machine exported, not the one blendd chose for itself.
        var environment = ProcessInfo.processInfo.environment
        if environment.removeValue(forKey: CPUFeatures.reexecutedMarker) != nil {
            environment["OPENBLAS_CORETYPE"] = nil
            environment["BLENDD_OPENBLAS_REEXEC"] = nil
        }
        let (status, output, errors) = try capture(URL(fileURLWithPath: "/usr/bin/env"), ["python3", script] + arguments, environment: environment)
        guard status == 0 else {
            // The scripts print "… baseline skipped: …" themselves when their packages are missing.
            let last = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last
            print("  \(last.map(String.init) ?? "baseline \(script) failed with status \(status)")")
            return nil
        }
        return String(decoding: output, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Runs `executable` to its end and returns its exit status, stdout and stderr; stderr is drained beside stdout so
    /// a chatty process cannot fill its pipe and stall.
    static func capture(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws -> (Int32, Data, Data) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        nonisolated(unsafe) var errors = Data()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errors = err.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        return (process.terminationStatus, output, errors)
    }

    /// Peak resident memory of this process so far (VmHWM), in bytes.
    static func peakResidentBytes() -> Int { statusBytes("VmHWM:") }

    /// Current resident memory of this process (VmRSS), in bytes.
    static func residentBytes() -> Int { statusBytes("VmRSS:") }

    /// A kB field of /proc/self/status, in bytes (0 where there is none).
    private static func statusBytes(_ field: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
              let kb = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }
}

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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        // The baseline gets the OpenBLAS core type the machine exported, not the one blendd chose for itself.
        var environment = ProcessInfo.processInfo.environment
        if environment.removeValue(forKey: CPUFeatures.reexecutedMarker) != nil {
            environment["OPENBLAS_CORETYPE"] = nil
            environment["BLENDD_OPENBLAS_REEXEC"] = nil
        }
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Drain stderr concurrently so a chatty baseline cannot fill the pipe and stall.
        nonisolated(unsafe) var errors = Data()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errors = err.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            // The scripts print "… baseline skipped: …" themselves when their packages are missing.
            let last = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last
            print("  \(last.map(String.init) ?? "baseline \(script) failed with status \(process.terminationStatus)")")
            return nil
        }
        return String(decoding: output, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
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

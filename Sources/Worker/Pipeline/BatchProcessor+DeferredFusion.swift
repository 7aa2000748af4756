import BlendCore
import Foundation
import Inference

extension BatchProcessor {
    /// The final outcome of a job whose fusion `process(_:isStored:deferFusion:)` left pending, once the
    /// fusion finished: as `process` would have described it, with the time the fusion took.
    public func completeFusion(_ outcome: JobOutcome, with result: Result<FuseOutcome, FusionError>, fuseMs: Double) -> JobOutcome {
        var completed = outcome
        completed.pendingFusion = nil
        completed.timingsMs["fuse"] = fuseMs
        switch result {
        case .success(let fused):
            completed.fusion?.text = fused.text
            completed.fusion?.generatedTokens = fused.generatedTokens
        case .failure(let error):
            completed.kind = .outcome(status: .failed)
            completed.error = error.description
            completed.fusion = nil
        }
        completed.event = event(for: completed, metadata: completed.job?.metadata)
        return completed
    }
}

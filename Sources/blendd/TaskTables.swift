import BlendCore
import Foundation

/// The tables `blendd rank` and `blendd result` print for compare, best/worst-of-n and reward jobs.
enum TaskTables {
    static func compare(job: BlendJob, _ r: EventData.CompareResult, ranker: String) {
        print("\(job.jobId)  task compare  mode \(r.mode.rawValue)  ranker \(ranker)  forward passes \(r.forwardPasses)")
        compareRows(r.pairs.map { ($0.index, $0.verdict.rawValue, $0.logit, $0.referenceLogit, $0.probability) },
                    texts: job.compareItems.map { ($0.a, $0.b) })
    }

    /// `pair  verdict  logit  reference  P(A better)  a | b`
    static func compareRows(_ rows: [(index: Int, verdict: String, logit: Double, reference: Double, probability: Double)],
                            texts: [(a: String, b: String)]) {
        print("  pair  verdict       logit   reference  P(A better)  a | b")
        for row in rows {
            let pair = row.index < texts.count ? "\(shorten(texts[row.index].a, 28)) | \(shorten(texts[row.index].b, 28))" : ""
            print(String(format: "  %4d  ", row.index) + row.verdict.padding(toLength: 7, withPad: " ", startingAt: 0)
                  + String(format: "  %10.6f  %10.6f  %11.6f  ", row.logit, row.reference, row.probability) + pair)
        }
    }

    static func selection(job: BlendJob, _ s: EventData.Selection, ranker: String) {
        print("\(job.jobId)  task \(job.task.rawValue)  method \(s.method.rawValue)  ranker \(ranker)  forward passes \(s.forwardPasses)")
        selectionRows(goal: s.goal.rawValue, index: s.index, model: s.model, text: job.candidates[s.index].text,
                      eliminationOrder: s.eliminationOrder, scores: s.scores)
    }

    static func selectionRows(goal: String, index: Int, model: String, text: String, eliminationOrder: [Int]?, scores: [Double]?) {
        print("  \(goal): candidate \(index) (\(model)): \(shorten(text, 60))")
        if let order = eliminationOrder {
            print("  winner, then eliminated (first first): \(order.map(String.init).joined(separator: ", "))")
        }
        if let scores {
            print("  scores: " + scores.enumerated().map { String(format: "%d=%.6f", $0, $1) }.joined(separator: "  "))
        }
    }

    static func reward(job: BlendJob, _ r: EventData.RewardResult, ranker: String) {
        print("\(job.jobId)  task reward  ranker \(ranker)  forward passes \(r.forwardPasses)")
        rewardRows(reference: referenceText(r.reference), rows: r.candidates.map { ($0.index, $0.model, $0.reward, job.candidates[$0.index].text) })
    }

    static func referenceText(_ r: EventData.RewardResult.Reference) -> String {
        if let text = r.text { return "given text: \(shorten(text, 60))" }
        return "candidate \(r.index.map(String.init) ?? "?") (\(r.mode?.rawValue ?? "?"))"
    }

    static func rewardRows(reference: String, rows: [(index: Int, model: String, reward: Double?, text: String)]) {
        print("  reference: \(reference)")
        let width = max(5, rows.map(\.model.count).max() ?? 0)
        print("  index  " + "model".padding(toLength: width, withPad: " ", startingAt: 0) + "      reward  text")
        for row in rows {
            let reward = row.reward.map { String(format: "%10.6f", $0) } ?? "         -"
            print(String(format: "  %5d  ", row.index) + row.model.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(reward)  \(shorten(row.text, 50))")
        }
    }

    static func shorten(_ text: String, _ limit: Int) -> String {
        let flat = text.replacingOccurrences(of: "\n", with: " ")
        return flat.count > limit ? String(flat.prefix(limit - 3)) + "..." : flat
    }
}

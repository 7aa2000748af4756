import Foundation

/// One record of LLM-Blender's MixInstruct benchmark (the dataset card's format): a prompt, the reference
/// output, the candidates of several LLMs with their auto metrics, and ChatGPT's pairwise verdicts.
/// `cmp_results` arrives as an object (the raw JSON files), as a string holding that object or `"null"`
/// (the Hugging Face dataset), as null, or not at all.
public struct MixInstructRecord: Sendable, Equatable, Decodable {
    public struct Candidate: Sendable, Equatable, Decodable {
        public var model: String
        public var text: String
        /// Auto metrics of this candidate against `output` (bleu, rouge1, bertscore, ...): higher is better.
        public var scores: [String: Double]

        enum CodingKeys: String, CodingKey { case model, text, scores }

        public init(model: String, text: String, scores: [String: Double] = [:]) {
            self.model = model
            self.text = text
            self.scores = scores
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            model = try c.decode(String.self, forKey: .model)
            text = try c.decode(String.self, forKey: .text)
            // Non-numeric entries (a metric that failed and was stored as null) are left out.
            let raw = try c.decodeIfPresent([String: JSONValue].self, forKey: .scores) ?? [:]
            scores = raw.compactMapValues { if case .number(let n) = $0 { n } else { nil } }
        }
    }

    public var id: String
    public var instruction: String
    public var input: String
    public var output: String
    public var candidates: [Candidate]
    /// "modelA,modelB" → "A is better" | "B is better" | "Same good" | "Same bad"; empty when none were made.
    public var comparisons: [String: String]

    enum CodingKeys: String, CodingKey {
        case id, instruction, input, output, candidates
        case comparisons = "cmp_results"
    }

    public init(id: String, instruction: String, input: String, output: String, candidates: [Candidate],
                comparisons: [String: String]) {
        self.id = id
        self.instruction = instruction
        self.input = input
        self.output = output
        self.candidates = candidates
        self.comparisons = comparisons
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        instruction = try c.decodeIfPresent(String.self, forKey: .instruction) ?? ""
        input = try c.decodeIfPresent(String.self, forKey: .input) ?? ""
        output = try c.decodeIfPresent(String.self, forKey: .output) ?? ""
        candidates = try c.decode([Candidate].self, forKey: .candidates)
        if try !c.contains(.comparisons) || c.decodeNil(forKey: .comparisons) {
            comparisons = [:]
        } else if let object = try? c.decode([String: String].self, forKey: .comparisons) {
            comparisons = object
        } else if let text = try? c.decode(String.self, forKey: .comparisons) {
            let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            guard parsed is NSNull || parsed is [String: Any] else {
                throw DecodingError.dataCorruptedError(forKey: .comparisons, in: c, debugDescription: "cmp_results is a string but not a JSON object or null")
            }
            var verdicts: [String: String] = [:]
            for (key, value) in parsed as? [String: Any] ?? [:] {
                guard let verdict = value as? String else {
                    throw DecodingError.dataCorruptedError(forKey: .comparisons, in: c, debugDescription: "cmp_results[\(key)] is not a string")
                }
                verdicts[key] = verdict
            }
            comparisons = verdicts
        } else {
            throw DecodingError.dataCorruptedError(forKey: .comparisons, in: c, debugDescription: "cmp_results must be an object of verdict strings, a string holding one, or null")
        }
    }

    /// A fingerprint of what a ranker sees (prompt and candidate texts), so a checkpoint made from another
    /// version of the record is noticed.
    public var fingerprint: String {
        var hash = FNV1a()
        for part in [id, instruction, input] + candidates.flatMap({ [$0.model, $0.text] }) {
            hash.combine(part.utf8)
            hash.combine([0xff])
        }
        return hash.shortHex
    }
}

/// GenFuser's input (spec §3.2): `Instruction: I</s>Input: X</s>Candidate 0: <extra_id_0>:c₀</s>…</s>Summarize
/// candidates into a better one for the given instruction:`, each candidate cut to 128 tokens (decoded back
/// and marked with `...`), the whole prompt cut to 1024 tokens, no trailing EOS. Unlike the reference, the
/// caller's candidates are never modified. `</s>` and `<extra_id_…>` inside user text become those tokens,
/// as the reference tokenizer makes them. A cut candidate is decoded as the reference's `GenFuserDataset`
/// does (`tokenizer.decode(ids)`): special tokens stay as text, so an unknown character comes back as
/// `<unk>` and is tokenized again as that token.
public struct FusionPromptBuilder: Sendable {
    public let tokenizer: Tokenizer
    public var candidateMaxLength = 128
    public var inputMaxLength = 1024

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    public func prompt(instruction: String, input: String, candidates: [String]) throws -> String {
        let pieces = try candidates.enumerated().map { i, text -> String in
            var candidate = text
            let ids = try tokenizer.encode(text, addSpecialTokens: false)
            if ids.count > candidateMaxLength {
                candidate = tokenizer.decode(Array(ids.prefix(candidateMaxLength)), skipSpecialTokens: false) + "..."
            }
            return "Candidate \(i): <extra_id_\(i)>:" + candidate
        }
        return "Instruction: " + instruction + "</s>" + "Input: " + input + "</s>" + pieces.joined(separator: "</s>")
            + "</s>Summarize candidates into a better one for the given instruction:"
    }

    public func inputIds(instruction: String, input: String, candidates: [String]) throws -> [Int] {
        try tokenizer.encode(prompt(instruction: instruction, input: input, candidates: candidates),
                             addSpecialTokens: false, maxLength: inputMaxLength)
    }
}

import Foundation

/// A Hugging Face SentencePiece tokenizer as transformers 4.x runs it for DeBERTa-v2/v3 and T5: added
/// tokens are cut out of the text first (longest match, leftmost), each remaining piece is encoded by
/// SentencePiece, and the family's template adds `[CLS] … [SEP]` (DeBERTa) or `… </s>` (T5).
public final class Tokenizer: Sendable {
    public enum Family: String, Sendable {
        case debertaV2 = "deberta-v2"
        case t5
    }

    public enum TruncationSide: Sendable { case right, left }

    public struct AddedToken: Sendable, Equatable {
        public var content: String
        public var id: Int
        /// Special tokens are skipped when decoding; non-special ones (PairRM's markers) are ordinary text.
        public var special: Bool
    }

    public let family: Family
    public let model: SentencePieceModel
    public let addedTokens: [AddedToken]
    private let addedById: [Int: AddedToken]
    private let addedByContent: [String: AddedToken]
    /// Added tokens by first UTF-8 byte, longest first, for matching inside text.
    private let matchTable: [UInt8: [(bytes: [UInt8], token: AddedToken)]]
    public let cleanUpSpaces: Bool

    /// Token ids the family's template puts around a sequence.
    public let prefixIds: [Int]
    public let suffixIds: [Int]

    /// The number of ids the tokenizer can produce (pieces plus added tokens).
    public var count: Int { max(model.pieceCount, (addedTokens.map(\.id).max() ?? -1) + 1) }

    public init(family: Family, model: SentencePieceModel, addedTokens: [AddedToken], cleanUpSpaces: Bool = true) throws {
        self.family = family
        self.model = model
        self.addedTokens = addedTokens.sorted { $0.id < $1.id }
        addedById = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        addedByContent = Dictionary(addedTokens.map { ($0.content, $0) }, uniquingKeysWith: { a, _ in a })
        var table: [UInt8: [(bytes: [UInt8], token: AddedToken)]] = [:]
        for token in addedTokens where !token.content.isEmpty {
            let bytes = Array(token.content.utf8)
            table[bytes[0], default: []].append((bytes, token))
        }
        matchTable = table.mapValues { $0.sorted { $0.bytes.count > $1.bytes.count } }
        self.cleanUpSpaces = cleanUpSpaces
        let contents = addedByContent
        func required(_ t: String) throws -> Int {
            if let id = contents[t]?.id ?? model.id(of: t) { return id }
            throw TokenizerError(path: model.path, message: "the \(family.rawValue) template needs \(t), which is not in the vocabulary")
        }
        switch family {
        case .debertaV2:
            prefixIds = [try required("[CLS]")]
            suffixIds = [try required("[SEP]")]
        case .t5:
            prefixIds = []
            suffixIds = [try required("</s>")]
        }
    }

    public func id(of token: String) -> Int? { addedByContent[token]?.id ?? model.id(of: token) }

    // MARK: Encoding

    /// Ids for `text`. With `addSpecialTokens`, the family's template is applied and `maxLength` counts it.
    /// `matchNonSpecialAddedTokens: false` leaves strings such as `<|source|>` in user text as text.
    public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int? = nil,
                       truncation: TruncationSide = .right, matchNonSpecialAddedTokens: Bool = true) throws -> [Int] {
        var ids = try encodeBody(text, matchNonSpecial: matchNonSpecialAddedTokens)
        let extra = addSpecialTokens ? prefixIds.count + suffixIds.count : 0
        if let maxLength, ids.count + extra > maxLength {
            let keep = max(0, maxLength - extra)
            ids = truncation == .right ? Array(ids.prefix(keep)) : Array(ids.suffix(keep))
        }
        return addSpecialTokens ? prefixIds + ids + suffixIds : ids
    }

    private func encodeBody(_ text: String, matchNonSpecial: Bool) throws -> [Int] {
        var ids: [Int] = []
        let bytes = Array(text.utf8)
        var segmentStart = 0
        var i = 0
        // Whether the current stretch between special tokens has produced anything yet: the fast tokenizer
        // strips whitespace at the ends of such a stretch only, not next to a (normalized) marker inside it.
        var stretchHasContent = false
        func flush(_ end: Int, beforeNormalizedToken: Bool) throws {
            guard end > segmentStart else { return }
            let segment = String(decoding: bytes[segmentStart..<end], as: UTF8.self)
            let pieces = try encodeSegment(segment)
            ids += pieces
            if !pieces.isEmpty { stretchHasContent = true }
            if beforeNormalizedToken, stretchHasContent, segment.unicodeScalars.last?.properties.isWhitespace == true,
               let space = model.id(of: "▁") {
                ids.append(space)
            }
        }
        while i < bytes.count {
            if let candidates = matchTable[bytes[i]],
               let match = candidates.first(where: { (matchNonSpecial || $0.token.special) && Self.matches(bytes, at: i, $0.bytes) }) {
                try flush(i, beforeNormalizedToken: family == .debertaV2 && !match.token.special)
                ids.append(match.token.id)
                stretchHasContent = !match.token.special
                i += match.bytes.count
                segmentStart = i
            } else {
                i += 1
            }
        }
        try flush(bytes.count, beforeNormalizedToken: false)
        return ids
    }

    private static func matches(_ text: [UInt8], at i: Int, _ pattern: [UInt8]) -> Bool {
        guard i + pattern.count <= text.count else { return false }
        for k in 0..<pattern.count where text[i + k] != pattern[k] { return false }
        return true
    }

    /// One piece between added tokens. SentencePiece applies the model's own normalization (the same
    /// precompiled charsmap tokenizer.json carries), strips and collapses whitespace and adds the `▁`
    /// prefix, which is what the fast tokenizer's Strip/Precompiled/Replace + Metaspace pipeline does.
    private func encodeSegment(_ segment: String) throws -> [Int] {
        try model.encode(segment)
    }

    // MARK: Decoding

    /// Text for `ids`: pieces joined with `▁` turned into spaces (the first one dropped), special tokens
    /// skipped when asked, then transformers' `clean_up_tokenization` when the tokenizer config asks for it.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var out = ""
        var first = true
        for id in ids {
            var piece: String
            if let added = addedById[id] {
                if skipSpecialTokens && added.special { continue }
                piece = added.content
            } else if let p = model.piece(id) {
                if skipSpecialTokens && model.isControl(id) { continue }
                piece = p
            } else {
                continue
            }
            piece = piece.replacingOccurrences(of: "▁", with: " ")
            if first && piece.hasPrefix(" ") { piece.removeFirst() }
            first = false
            out += piece
        }
        guard cleanUpSpaces else { return out }
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            out = out.replacingOccurrences(of: from, with: to)
        }
        return out
    }

    // MARK: Loading

    /// Loads `spm.model` (DeBERTa-v2/v3) or `spiece.model` (T5) with the added tokens of
    /// `tokenizer_config.json` (`added_tokens_decoder`), `added_tokens.json` and `special_tokens_map.json`.
    public static func load(directory: String) throws -> Tokenizer {
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        func json(_ name: String) throws -> [String: Any]? {
            guard let data = FileManager.default.contents(atPath: path(name)) else { return nil }
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError(path: path(name), message: "not a JSON object")
            }
            return object
        }
        let config = try json("tokenizer_config.json") ?? [:]
        let className = (config["tokenizer_class"] as? String) ?? ""
        let fm = FileManager.default
        let family: Family
        let modelFile: String
        if className.hasPrefix("T5") || (!className.hasPrefix("Deberta") && fm.fileExists(atPath: path("spiece.model"))) {
            family = .t5
            modelFile = path("spiece.model")
        } else if className.hasPrefix("DebertaV2") || fm.fileExists(atPath: path("spm.model")) {
            family = .debertaV2
            modelFile = path("spm.model")
        } else {
            throw TokenizerError(path: directory, message: "no spm.model (DeBERTa-v2/v3) or spiece.model (T5) tokenizer; tokenizer_class is \(className.isEmpty ? "unset" : className)")
        }
        guard fm.fileExists(atPath: modelFile) else {
            throw TokenizerError(path: modelFile, message: "missing; the \(family.rawValue) tokenizer needs its SentencePiece model")
        }
        let model = try SentencePieceModel(path: modelFile)

        var added: [Int: AddedToken] = [:]
        if let decoder = config["added_tokens_decoder"] as? [String: Any] {
            for (key, value) in decoder {
                guard let id = Int(key), let entry = value as? [String: Any], let content = entry["content"] as? String else {
                    throw TokenizerError(path: path("tokenizer_config.json"), message: "added_tokens_decoder entry \(key) is malformed")
                }
                added[id] = AddedToken(content: content, id: id, special: (entry["special"] as? Bool) ?? false)
            }
        }
        // Older directories list added tokens only here; the special ones come from special_tokens_map.json.
        var specials: Set<String> = []
        if let map = try json("special_tokens_map.json") {
            for (_, value) in map {
                if let s = value as? String { specials.insert(s) }
                if let d = value as? [String: Any], let s = d["content"] as? String { specials.insert(s) }
                if let list = value as? [Any] {
                    for item in list {
                        if let s = item as? String { specials.insert(s) }
                        if let d = item as? [String: Any], let s = d["content"] as? String { specials.insert(s) }
                    }
                }
            }
        }
        if let file = try json("added_tokens.json") {
            for (content, value) in file {
                guard let id = value as? Int else { continue }
                if added[id] == nil { added[id] = AddedToken(content: content, id: id, special: specials.contains(content)) }
            }
        }
        if family == .t5, !added.values.contains(where: { $0.content.hasPrefix("<extra_id_") }) {
            // T5Tokenizer's default: 100 sentinels counted down from the end of the vocabulary.
            let extra = (config["extra_ids"] as? Int) ?? 100
            for i in 0..<extra {
                let id = model.pieceCount + extra - 1 - i
                added[id] = AddedToken(content: "<extra_id_\(i)>", id: id, special: true)
            }
        }
        // Control pieces of the model itself ([PAD]/[CLS]/[SEP], <pad>/</s>) match as special tokens in text.
        for token in specials where !added.values.contains(where: { $0.content == token }) {
            if let id = model.id(of: token) { added[id] = AddedToken(content: token, id: id, special: true) }
        }
        return try Tokenizer(family: family, model: model, addedTokens: Array(added.values),
                             cleanUpSpaces: (config["clean_up_tokenization_spaces"] as? Bool) ?? true)
    }
}

/// Tokens matched in text before the model sees it (`tokenizers`' AddedVocabulary): tokens with
/// `normalized: false` are cut out of the raw text first; each stretch between them is normalized, and tokens
/// with `normalized: true` are then cut out of the normalized text (matched as their own normalized form).
/// Matching is leftmost-longest; `lstrip`/`rstrip` swallow adjacent whitespace, `single_word` refuses a
/// match inside a word.
struct AddedVocabulary: Sendable {
    struct Token: Sendable, Equatable {
        var content: String
        var id: Int
        var special: Bool
        var normalized: Bool
        var lstrip = false
        var rstrip = false
        var singleWord = false
    }

    enum Segment {
        case text(String, atInputStart: Bool)
        case token(Int)
    }

    let tokens: [Token]
    private let byId: [Int: Token]
    let specialContents: Set<String>
    private let raw: Matcher
    private let normalized: Matcher

    init(tokens: [Token], normalizer: TextNormalizer?) {
        self.tokens = tokens
        byId = Dictionary(tokens.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
        specialContents = Set(tokens.filter(\.special).map(\.content))
        raw = Matcher(tokens.filter { !$0.normalized }.map { (Array($0.content.utf8), $0) })
        normalized = Matcher(tokens.filter(\.normalized).map { (Array((normalizer?.normalize($0.content) ?? $0.content).utf8), $0) })
    }

    func token(id: Int) -> Token? { byId[id] }

    /// Splits raw text (`normalizedPass: false`) or one normalized stretch (`true`) into text and tokens.
    /// Non-special tokens are only matched when `matchNonSpecial` is set; empty text pieces are dropped.
    func split(_ text: String, normalizedPass: Bool, atInputStart: Bool, matchNonSpecial: Bool) -> [Segment] {
        let matcher = normalizedPass ? normalized : raw
        let bytes = Array(text.utf8)
        guard !matcher.isEmpty, !bytes.isEmpty else { return bytes.isEmpty ? [] : [.text(text, atInputStart: atInputStart)] }
        var segments: [Segment] = []
        var consumed = 0
        var searchFrom = 0
        func piece(_ a: Int, _ b: Int) -> String { String(decoding: bytes[a..<b], as: UTF8.self) }
        while let match = matcher.next(in: bytes, from: searchFrom, accepting: { matchNonSpecial || $0.special }) {
            searchFrom = match.end
            var start = match.start, stop = match.end
            let token = match.token
            if token.singleWord {
                let before = start == 0 || !Self.endsWithWordCharacter(piece(0, start))
                let after = stop == bytes.count || !Self.startsWithWordCharacter(piece(stop, bytes.count))
                if !before || !after { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0 {
                    let (scalar, length) = Self.scalar(endingAt: s, in: bytes)
                    guard scalar.properties.isWhitespace else { break }
                    s -= length
                }
                start = max(s, consumed)
            }
            if token.rstrip {
                while stop < bytes.count {
                    let (scalar, length) = Self.scalar(startingAt: stop, in: bytes)
                    guard scalar.properties.isWhitespace else { break }
                    stop += length
                }
            }
            if consumed < start { segments.append(.text(piece(consumed, start), atInputStart: atInputStart && consumed == 0)) }
            segments.append(.token(token.id))
            consumed = stop
        }
        if consumed < bytes.count { segments.append(.text(piece(consumed, bytes.count), atInputStart: atInputStart && consumed == 0)) }
        return segments
    }

    /// Unicode word characters as Rust's `\w` has them (alphabetic, marks, decimal digits, connectors, joiners).
    private static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
    private static func endsWithWordCharacter(_ s: String) -> Bool { s.unicodeScalars.last.map(isWordCharacter) ?? false }
    private static func startsWithWordCharacter(_ s: String) -> Bool { s.unicodeScalars.first.map(isWordCharacter) ?? false }

    private static func scalar(startingAt i: Int, in bytes: [UInt8]) -> (Unicode.Scalar, Int) {
        var end = i + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        return (String(decoding: bytes[i..<end], as: UTF8.self).unicodeScalars.first!, end - i)
    }
    private static func scalar(endingAt i: Int, in bytes: [UInt8]) -> (Unicode.Scalar, Int) {
        var start = i - 1
        while start > 0, bytes[start] & 0xC0 == 0x80 { start -= 1 }
        return (String(decoding: bytes[start..<i], as: UTF8.self).unicodeScalars.first!, i - start)
    }

    /// Leftmost-longest matching over a small pattern set, bucketed by first byte.
    private struct Matcher: Sendable {
        private var buckets: [[(bytes: [UInt8], token: Token)]]
        let isEmpty: Bool

        init(_ patterns: [([UInt8], Token)]) {
            var b = [[(bytes: [UInt8], token: Token)]](repeating: [], count: 256)
            for (bytes, token) in patterns where !bytes.isEmpty { b[Int(bytes[0])].append((bytes, token)) }
            buckets = b.map { $0.sorted { $0.bytes.count > $1.bytes.count } }
            isEmpty = patterns.allSatisfy { $0.0.isEmpty }
        }

        func next(in text: [UInt8], from: Int, accepting: (Token) -> Bool) -> (start: Int, end: Int, token: Token)? {
            var i = from
            while i < text.count {
                for candidate in buckets[Int(text[i])] where accepting(candidate.token) {
                    let p = candidate.bytes
                    if i + p.count <= text.count, text[i..<(i + p.count)].elementsEqual(p) {
                        return (i, i + p.count, candidate.token)
                    }
                }
                i += 1
            }
            return nil
        }
    }
}

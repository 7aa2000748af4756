/// A stretch of normalized text on its way to the model. `atInputStart` says whether it begins at the
/// input's first byte, which is all `prepend_scheme: first` asks of the reference's offsets.
struct TextPiece {
    var text: String
    var atInputStart: Bool
}

enum PrependScheme: String, Sendable { case always, first, never }

/// How a split keeps its delimiters (`tokenizers`' SplitDelimiterBehavior).
enum DelimiterBehavior: String, Sendable {
    case removed, isolated, contiguous
    case mergedWithPrevious = "merged_with_previous"
    case mergedWithNext = "merged_with_next"
}

/// A `tokenizer.json` pre-tokenizer: splits each stretch into the words the model encodes one by one.
indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    case whitespaceSplit
    case punctuation(DelimiterBehavior)

    func split(_ pieces: [TextPiece]) -> [TextPiece] {
        switch self {
        case .sequence(let all):
            var current = pieces
            for p in all { current = p.split(current) }
            return current
        case .metaspace(let replacement, let scheme, let split):
            return pieces.flatMap { piece -> [TextPiece] in
                var scalars = String.UnicodeScalarView()
                let replaceable = piece.text.unicodeScalars
                scalars.reserveCapacity(replaceable.count + 1)
                let prepend: Bool
                switch scheme {
                case .always: prepend = replaceable.first.map { $0 != " " && $0 != replacement } ?? true
                case .first: prepend = piece.atInputStart && (replaceable.first.map { $0 != " " && $0 != replacement } ?? true)
                case .never: prepend = false
                }
                if prepend { scalars.append(replacement) }
                for s in replaceable { scalars.append(s == " " ? replacement : s) }
                let text = String(scalars)
                guard split else { return [TextPiece(text: text, atInputStart: piece.atInputStart)] }
                return Self.split(TextPiece(text: text, atInputStart: piece.atInputStart), by: { $0 == replacement }, .mergedWithNext)
            }
        case .whitespaceSplit:
            return pieces.flatMap { Self.split($0, by: { $0.properties.isWhitespace }, .removed) }
        case .punctuation(let behavior):
            return pieces.flatMap { Self.split($0, by: Self.isPunctuation, behavior) }
        }
    }

    /// `tokenizers`' punctuation: ASCII punctuation (symbols such as `$` and `+` included) or a Unicode P* category.
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII { return (0x21...0x2F).contains(s.value) || (0x3A...0x40).contains(s.value) || (0x5B...0x60).contains(s.value) || (0x7B...0x7E).contains(s.value) }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    /// `NormalizedString::split` with a character predicate; empty pieces are dropped.
    static func split(_ piece: TextPiece, by isDelimiter: (Unicode.Scalar) -> Bool, _ behavior: DelimiterBehavior) -> [TextPiece] {
        var spans: [(Range<String.UnicodeScalarView.Index>, Bool)] = []   // (range, is delimiter)
        let scalars = piece.text.unicodeScalars
        var i = scalars.startIndex
        while i < scalars.endIndex {
            let delimiter = isDelimiter(scalars[i])
            var j = scalars.index(after: i)
            if behavior == .contiguous || !delimiter {
                while j < scalars.endIndex, isDelimiter(scalars[j]) == delimiter { j = scalars.index(after: j) }
            }
            spans.append((i..<j, delimiter))
            i = j
        }
        var ranges: [Range<String.UnicodeScalarView.Index>] = []
        switch behavior {
        case .removed:
            ranges = spans.filter { !$0.1 }.map(\.0)
        case .isolated, .contiguous:
            ranges = spans.map(\.0)
        case .mergedWithPrevious:
            var lastIsWord = false
            for (r, delimiter) in spans {
                if delimiter, lastIsWord {
                    ranges[ranges.count - 1] = ranges[ranges.count - 1].lowerBound..<r.upperBound
                } else {
                    ranges.append(r)
                }
                lastIsWord = !delimiter
            }
        case .mergedWithNext:
            var pendingDelimiter: Range<String.UnicodeScalarView.Index>?
            for (r, delimiter) in spans {
                if delimiter {
                    if let p = pendingDelimiter { ranges.append(p) }
                    pendingDelimiter = r
                } else if let p = pendingDelimiter {
                    ranges.append(p.lowerBound..<r.upperBound)
                    pendingDelimiter = nil
                } else {
                    ranges.append(r)
                }
            }
            if let p = pendingDelimiter { ranges.append(p) }
        }
        return ranges.filter { !$0.isEmpty }.map { r in
            TextPiece(text: String(scalars[r]), atInputStart: piece.atInputStart && r.lowerBound == scalars.startIndex)
        }
    }
}

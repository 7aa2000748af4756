import Foundation

/// A `tokenizer.json` normalizer (or the one transformers' converter builds), applied to each stretch of
/// text between added tokens.
indirect enum TextNormalizer: Sendable {
    case sequence([TextNormalizer])
    case precompiled(PrecompiledCharsmap)
    case replace(TextReplacement, with: String)
    case strip(left: Bool, right: Bool)
    case lowercase
    case prepend(String)
    case stripAccents
    case unicode(UnicodeForm)

    enum UnicodeForm: String, Sendable { case nfc = "NFC", nfd = "NFD", nfkc = "NFKC", nfkd = "NFKD" }

    /// Whether `normalize` may remove whitespace at the start of a stretch, which moves the stretch's first
    /// byte off the input's first byte (what `prepend_scheme: first` looks at).
    var stripsLeadingWhitespace: Bool {
        switch self {
        case .sequence(let all): all.contains { $0.stripsLeadingWhitespace }
        case .strip(let left, _): left
        default: false
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .sequence(let all):
            var s = text
            for n in all { s = n.normalize(s) }
            return s
        case .precompiled(let map):
            return map.normalize(text)
        case .replace(let pattern, let content):
            return pattern.replaceAll(in: text, with: content)
        case .strip(let left, let right):
            var scalars = Substring(text).unicodeScalars[...]
            if left { while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() } }
            if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
            return String(String.UnicodeScalarView(scalars))
        case .lowercase:
            // Per scalar, as Rust's char::to_lowercase (no final-sigma context).
            var out = String.UnicodeScalarView()
            for scalar in text.unicodeScalars {
                if scalar.isASCII {
                    out.append(scalar.properties.isUppercase ? Unicode.Scalar(scalar.value + 32)! : scalar)
                } else {
                    out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
                }
            }
            return String(out)
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .stripAccents:
            // Every combining mark (Mn, Mc, Me), as `tokenizers`' StripAccents removes them.
            return String(String.UnicodeScalarView(text.unicodeScalars.filter {
                switch $0.properties.generalCategory {
                case .nonspacingMark, .spacingMark, .enclosingMark: false
                default: true
                }
            }))
        case .unicode(let form):
            switch form {
            case .nfc: return text.precomposedStringWithCanonicalMapping
            case .nfd: return text.decomposedStringWithCanonicalMapping
            case .nfkc: return text.precomposedStringWithCompatibilityMapping
            case .nfkd: return text.decomposedStringWithCompatibilityMapping
            }
        }
    }
}

/// The pattern of a `Replace` normalizer or decoder: a literal string, or a regular expression. The
/// converters' only regex, ` {2,}` (a run of one character), is matched directly; others go to ICU.
enum TextReplacement: @unchecked Sendable {
    case literal([UInt8])
    case run(of: Unicode.Scalar, atLeast: Int)
    case regex(NSRegularExpression)

    init(string: String) throws(TokenizerLoadError) {
        guard !string.isEmpty else { throw TokenizerLoadError("a Replace pattern is empty") }
        self = .literal(Array(string.utf8))
    }

    init(regex: String) throws(TokenizerLoadError) {
        if let run = Self.parseRun(regex) {
            self = .run(of: run.scalar, atLeast: run.minimum)
            return
        }
        do {
            self = .regex(try NSRegularExpression(pattern: regex))
        } catch {
            throw TokenizerLoadError("Replace regex \(regex.debugDescription) does not compile: \(error)")
        }
    }

    /// `X{n,}` with X one literal character (possibly backslash-escaped punctuation).
    private static func parseRun(_ pattern: String) -> (scalar: Unicode.Scalar, minimum: Int)? {
        var scalars = Array(pattern.unicodeScalars)
        guard scalars.count >= 5, scalars.last == "}" else { return nil }
        var atom: Unicode.Scalar
        if scalars[0] == "\\" {
            // Only an escaped ASCII punctuation or space is a literal; `\d`, `\s`, `\1`... are classes or references.
            guard scalars.count >= 6, scalars[1].isASCII, !scalars[1].properties.isAlphabetic, !("0"..."9").contains(scalars[1]) else { return nil }
            atom = scalars[1]
            scalars.removeFirst(2)
        } else {
            atom = scalars[0]
            guard !"\\^$.|?*+()[]{}".unicodeScalars.contains(atom) else { return nil }
            scalars.removeFirst()
        }
        guard scalars.first == "{", scalars.dropLast().last == "," else { return nil }
        let digits = String(String.UnicodeScalarView(scalars.dropFirst().dropLast(2)))
        guard let n = Int(digits), n >= 1 else { return nil }
        return (atom, n)
    }

    func replaceAll(in text: String, with content: String) -> String {
        switch self {
        case .literal(let pattern):
            let bytes = Array(text.utf8)
            guard bytes.count >= pattern.count else { return text }
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            let replacement = Array(content.utf8)
            var i = 0
            var changed = false
            while i < bytes.count {
                if bytes[i] == pattern[0], i + pattern.count <= bytes.count, bytes[i..<(i + pattern.count)].elementsEqual(pattern) {
                    out += replacement
                    i += pattern.count
                    changed = true
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            return changed ? String(decoding: out, as: UTF8.self) : text
        case .run(let scalar, let minimum):
            var out = String.UnicodeScalarView()
            var run = 0
            var changed = false
            func flush() {
                if run >= minimum {
                    out.append(contentsOf: content.unicodeScalars)
                    changed = true
                } else {
                    for _ in 0..<run { out.append(scalar) }
                }
                run = 0
            }
            for s in text.unicodeScalars {
                if s == scalar { run += 1; continue }
                if run > 0 { flush() }
                out.append(s)
            }
            if run > 0 { flush() }
            return changed ? String(out) : text
        case .regex(let regex):
            let ns = text as NSString
            return regex.stringByReplacingMatches(in: text, range: NSRange(location: 0, length: ns.length),
                                                  withTemplate: NSRegularExpression.escapedTemplate(for: content))
        }
    }
}

/// RFC 8259 JSON from UTF-8 bytes into `ExactJSON`, keeping numbers as their literal text.
///
/// Problems that leave the document readable are reported as `Issue`s with their path, and
/// parsing goes on, so a job with one bad string still shows its job_id: a lone UTF-16
/// surrogate escape (read as U+FFFD), a duplicate object key (the last one is kept), and
/// nesting deeper than `maxDepth` (the deeper part is checked for syntax, then read as null,
/// without recursion, so a megabyte of `[` cannot exhaust the stack). Broken syntax is a
/// `SyntaxError` with the byte offset.
public struct JSONParser {
    public struct Issue: Sendable, Equatable {
        public enum Kind: Sendable, Equatable { case loneSurrogate, duplicateKey, nestingTooDeep }
        public var kind: Kind
        /// Where, in the validator's path syntax (`metadata.a[3]`); empty for the root.
        public var path: String
        public var offset: Int
    }

    public struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        public var offset: Int
        public var message: String
        public var description: String { "\(message) at byte \(offset)" }
    }

    public struct Result: Sendable {
        public var value: ExactJSON
        public var issues: [Issue]
    }

    private let bytes: [UInt8]
    private let maxDepth: Int
    private var position = 0
    private var issues: [Issue] = []

    private init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// - Parameter maxDepth: arrays and objects nested deeper than this are an issue (the
    ///   outermost container is level 1).
    public static func parse(_ bytes: [UInt8], maxDepth: Int = .max) throws(SyntaxError) -> Result {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        parser.skipWhitespace()
        guard parser.position < bytes.count else { throw SyntaxError(offset: 0, message: "no JSON value (the input is empty)") }
        let value = try parser.value(depth: 0, path: "")
        parser.skipWhitespace()
        if parser.position < bytes.count { throw parser.error("unexpected \(parser.describeByte()) after the JSON value") }
        return Result(value: value, issues: parser.issues)
    }

    // MARK: - Values

    private mutating func value(depth: Int, path: String) throws(SyntaxError) -> ExactJSON {
        skipWhitespace()
        guard position < bytes.count else { throw error("the input ends where a value should be") }
        switch bytes[position] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            if depth + 1 > maxDepth {
                issues.append(Issue(kind: .nestingTooDeep, path: path, offset: position))
                let reported = issues.count
                try skipDeepValue()
                issues.removeSubrange(reported...)  // what lies deeper is not kept, so not reported either
                return .null
            }
            return bytes[position] == UInt8(ascii: "{") ? try object(depth: depth + 1, path: path) : try array(depth: depth + 1, path: path)
        case UInt8(ascii: "\""): return .string(try string(path: path))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: throw error("unexpected \(describeByte()) where a value should be")
        }
    }

    private mutating func object(depth: Int, path: String) throws(SyntaxError) -> ExactJSON {
        position += 1
        var members: [ExactJSON.Member] = []
        var seen: Set<String> = []
        skipWhitespace()
        if peek(UInt8(ascii: "}")) { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek(UInt8(ascii: "\"")) else { throw error("expected a string key, found \(describeByte())") }
            let keyOffset = position
            let key = try string(path: path)
            skipWhitespace()
            guard peek(UInt8(ascii: ":")) else { throw error("expected ':' after an object key, found \(describeByte())") }
            position += 1
            let memberPath = JSONPath.member(path, key)
            let value = try value(depth: depth, path: memberPath)
            if seen.insert(key).inserted {
                members.append(.init(key, value))
            } else {
                issues.append(Issue(kind: .duplicateKey, path: memberPath, offset: keyOffset))
                members.removeAll { $0.key == key }
                members.append(.init(key, value))
            }
            skipWhitespace()
            guard position < bytes.count else { throw error("the input ends inside an object") }
            if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
            if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(members) }
            throw error("expected ',' or '}' in an object, found \(describeByte())")
        }
    }

    private mutating func array(depth: Int, path: String) throws(SyntaxError) -> ExactJSON {
        position += 1
        var items: [ExactJSON] = []
        skipWhitespace()
        if peek(UInt8(ascii: "]")) { position += 1; return .array(items) }
        while true {
            items.append(try value(depth: depth, path: JSONPath.index(path, items.count)))
            skipWhitespace()
            guard position < bytes.count else { throw error("the input ends inside an array") }
            if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
            if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
            throw error("expected ',' or ']' in an array, found \(describeByte())")
        }
    }

    /// Checks the syntax of a container too deep to keep, with an explicit stack.
    private mutating func skipDeepValue() throws(SyntaxError) {
        var stack: [UInt8] = []
        while true {
            // Expecting a value.
            skipWhitespace()
            guard position < bytes.count else { throw error("the input ends where a value should be") }
            let c = bytes[position]
            if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") {
                stack.append(c)
                position += 1
                skipWhitespace()
                if peek(c == UInt8(ascii: "[") ? UInt8(ascii: "]") : UInt8(ascii: "}")) {
                    position += 1
                    stack.removeLast()
                } else {
                    if c == UInt8(ascii: "{") { try skipKey() }
                    continue
                }
            } else {
                _ = try value(depth: 0, path: "")
            }
            // After a value: close containers or move to the next element.
            while true {
                guard let top = stack.last else { return }
                skipWhitespace()
                guard position < bytes.count else { throw error("the input ends inside a nested value") }
                let next = bytes[position]
                position += 1
                if next == UInt8(ascii: ",") {
                    if top == UInt8(ascii: "{") { try skipKey() }
                    break
                }
                if (top == UInt8(ascii: "[") && next == UInt8(ascii: "]")) || (top == UInt8(ascii: "{") && next == UInt8(ascii: "}")) {
                    stack.removeLast()
                    continue
                }
                position -= 1
                throw error("unexpected \(describeByte()) in a nested value")
            }
        }
    }

    private mutating func skipKey() throws(SyntaxError) {
        skipWhitespace()
        guard peek(UInt8(ascii: "\"")) else { throw error("expected a string key, found \(describeByte())") }
        _ = try string(path: "")
        skipWhitespace()
        guard peek(UInt8(ascii: ":")) else { throw error("expected ':' after an object key, found \(describeByte())") }
        position += 1
    }

    // MARK: - Scalars

    private mutating func string(path: String) throws(SyntaxError) -> String {
        position += 1
        var out: [UInt8] = []
        var start = position
        while true {
            guard position < bytes.count else { throw error("the input ends inside a string") }
            let c = bytes[position]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: bytes[start..<position])
                position += 1
                return String(decoding: out, as: UTF8.self)
            }
            if c < 0x20 { throw error("a control character (\(describeByte())) must be escaped inside a string") }
            if c != UInt8(ascii: "\\") { position += 1; continue }
            out.append(contentsOf: bytes[start..<position])
            let escapeOffset = position
            position += 1
            guard position < bytes.count else { throw error("the input ends inside an escape") }
            let e = bytes[position]
            position += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let unit = try hex4()
                var scalar: Unicode.Scalar?
                if (0xD800...0xDBFF).contains(unit) {
                    // A high surrogate must be followed by an escaped low one.
                    let save = position
                    if position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") {
                        position += 2
                        let low = try hex4()
                        if (0xDC00...0xDFFF).contains(low) {
                            scalar = Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        } else {
                            position = save
                        }
                    }
                } else if !(0xDC00...0xDFFF).contains(unit) {
                    scalar = Unicode.Scalar(unit)
                }
                if scalar == nil { issues.append(Issue(kind: .loneSurrogate, path: path, offset: escapeOffset)) }
                out.append(contentsOf: Array(String(scalar ?? "\u{FFFD}").utf8))
            default:
                position -= 1
                throw error("invalid escape \\\(describeByte())")
            }
            start = position
        }
    }

    private mutating func hex4() throws(SyntaxError) -> UInt32 {
        guard position + 4 <= bytes.count else { throw error("the input ends inside a \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[position]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("\(describeByte()) is not a hex digit in a \\u escape")
            }
            value = value * 16 + digit
            position += 1
        }
        return value
    }

    private mutating func number() throws(SyntaxError) -> String {
        let start = position
        if peek(UInt8(ascii: "-")) { position += 1 }
        guard position < bytes.count, isDigit(bytes[position]) else { throw error("a number needs a digit, found \(describeByte())") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count, isDigit(bytes[position]) { throw error("a number must not have a leading zero") }
        } else {
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if peek(UInt8(ascii: ".")) {
            position += 1
            guard position < bytes.count, isDigit(bytes[position]) else { throw error("a fraction needs a digit, found \(describeByte())") }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard position < bytes.count, isDigit(bytes[position]) else { throw error("an exponent needs a digit, found \(describeByte())") }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        return String(decoding: bytes[start..<position], as: UTF8.self)
    }

    private mutating func literal(_ word: String) throws(SyntaxError) {
        let expected = Array(word.utf8)
        guard position + expected.count <= bytes.count, bytes[position..<position + expected.count].elementsEqual(expected) else {
            throw error("unexpected \(describeByte()) where a value should be")
        }
        position += expected.count
    }

    // MARK: - Helpers

    private func isDigit(_ c: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) }

    private func peek(_ c: UInt8) -> Bool { position < bytes.count && bytes[position] == c }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private func describeByte() -> String {
        guard position < bytes.count else { return "the end of the input" }
        let c = bytes[position]
        return (0x21..<0x7F).contains(c) ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16, uppercase: true))"
    }

    private func error(_ message: String) -> SyntaxError { SyntaxError(offset: position, message: message) }
}

/// Paths into a document as violations name them: `candidates[2].text`, `metadata["a b"]`.
/// Keys that are not plain identifiers are quoted with control characters escaped, so a path
/// never carries a NUL or a line break into a log, a header or the database.
public enum JSONPath {
    public static func member(_ path: String, _ key: String) -> String {
        let plain = !key.isEmpty && key.utf8.count <= 64 && key.utf8.allSatisfy { c in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(c)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
        }
        if plain { return path.isEmpty ? key : "\(path).\(key)" }
        let shown = key.unicodeScalars.count > 64 ? String(String.UnicodeScalarView(key.unicodeScalars.prefix(64))) + "…" : key
        var quoted = ""
        ExactJSON.writeString(shown, to: &quoted)
        return path + "[" + quoted + "]"
    }

    public static func index(_ path: String, _ i: Int) -> String { "\(path)[\(i)]" }
}

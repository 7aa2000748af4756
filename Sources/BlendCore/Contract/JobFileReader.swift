/// Splits a file of jobs into one byte slice per job, so each is validated on the bytes a
/// producer would send (byte limits included). Accepts a single JSON object, a JSON array of
/// objects, JSONL, or objects simply concatenated (pretty-printed one after another).
/// Text that is not an object becomes its own record, to be reported as not JSON.
public enum JobFileReader {
    public struct Record: Sendable, Equatable {
        /// 1-based line where the record starts, for messages like "jobs.jsonl:17".
        public let line: Int
        public let bytes: [UInt8]
    }

    public static func records(in data: some Collection<UInt8>) -> [Record] {
        let bytes = Array(data)
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        if scanner.peek == UInt8(ascii: "[") {
            if let elements = scanner.arrayElements() { return elements }
            scanner = Scanner(bytes: bytes)
        }
        var records: [Record] = []
        while true {
            scanner.skipWhitespace()
            guard !scanner.atEnd else { break }
            records.append(scanner.peek == UInt8(ascii: "{") ? scanner.balancedValue() : scanner.restOfLine())
        }
        return records
    }

    private struct Scanner {
        let bytes: [UInt8]
        var position = 0
        var line = 1

        init(bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { position >= bytes.count }
        var peek: UInt8? { atEnd ? nil : bytes[position] }

        mutating func advance() {
            if bytes[position] == UInt8(ascii: "\n") { line += 1 }
            position += 1
        }

        mutating func skipWhitespace() {
            while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { advance() }
        }

        /// An object or array from `{`/`[` to its matching close, strings and escapes respected;
        /// an unterminated value runs to the end of the input.
        mutating func balancedValue() -> Record {
            let start = position, startLine = line
            var depth = 0, inString = false, escaped = false
            while let b = peek {
                advance()
                if inString {
                    if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                    continue
                }
                switch b {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return Record(line: startLine, bytes: Array(bytes[start..<position])) }
                default: break
                }
            }
            return Record(line: startLine, bytes: Array(bytes[start..<position]))
        }

        mutating func restOfLine() -> Record {
            let start = position, startLine = line
            while let b = peek, b != UInt8(ascii: "\n") { advance() }
            return Record(line: startLine, bytes: Array(bytes[start..<position]))
        }

        /// The elements of a top-level array, or nil when the input is not exactly one array
        /// (then it is read as a sequence of records instead, and the damage reported there).
        mutating func arrayElements() -> [Record]? {
            advance()
            var elements: [Record] = []
            while true {
                skipWhitespace()
                guard let b = peek else { return nil }
                if b == UInt8(ascii: "]") {
                    advance()
                    skipWhitespace()
                    return atEnd ? elements : nil
                }
                if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                    elements.append(balancedValue())
                } else {
                    elements.append(scalarElement())
                }
                skipWhitespace()
                if peek == UInt8(ascii: ",") { advance() } else if peek != UInt8(ascii: "]") { return nil }
            }
        }

        /// A non-container array element (a string, number, literal): kept so it is reported.
        mutating func scalarElement() -> Record {
            let start = position, startLine = line
            var inString = false, escaped = false
            while let b = peek {
                if inString {
                    if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                } else if b == UInt8(ascii: "\"") {
                    inString = true
                } else if b == UInt8(ascii: ",") || b == UInt8(ascii: "]") {
                    break
                }
                advance()
            }
            var end = position
            while end > start, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[end - 1]) { end -= 1 }
            return Record(line: startLine, bytes: Array(bytes[start..<end]))
        }
    }
}

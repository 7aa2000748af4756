/// A `tokenizer.json` decoder: turns the pieces of the ids into text (`decode_chain`, then joined).
indirect enum TokenDecoder: Sendable {
    case sequence([TokenDecoder])
    /// `▁` becomes a space, except in the first piece, where it is dropped (unless the scheme is `never`).
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme)
    case replace(TextReplacement, with: String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)

    func decode(_ pieces: [String]) -> String { chain(pieces).joined() }

    func chain(_ pieces: [String]) -> [String] {
        switch self {
        case .sequence(let all):
            var current = pieces
            for d in all { current = d.chain(current) }
            return current
        case .metaspace(let replacement, let scheme):
            return pieces.enumerated().map { i, piece in
                var out = String.UnicodeScalarView()
                for s in piece.unicodeScalars {
                    if s == replacement {
                        if i == 0 && scheme != .never { continue }
                        out.append(" ")
                    } else {
                        out.append(s)
                    }
                }
                return String(out)
            }
        case .replace(let pattern, let content):
            return pieces.map { pattern.replaceAll(in: $0, with: content) }
        case .byteFallback:
            var out: [String] = []
            var bytes: [UInt8] = []
            func flush() {
                guard !bytes.isEmpty else { return }
                if let s = String(validating: bytes, as: UTF8.self) {
                    out.append(s)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: bytes.count)
                }
                bytes.removeAll()
            }
            for piece in pieces {
                let u = Array(piece.utf8)
                if u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E,
                   let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    bytes.append(b)
                } else {
                    flush()
                    out.append(piece)
                }
            }
            flush()
            return out
        case .fuse:
            return [pieces.joined()]
        case .strip(let content, let start, let stop):
            return pieces.map { piece in
                let scalars = Array(piece.unicodeScalars)
                var lower = 0
                while lower < min(start, scalars.count), scalars[lower] == content { lower += 1 }
                var upper = scalars.count
                var removed = 0
                while removed < stop, upper > lower, scalars[upper - 1] == content { upper -= 1; removed += 1 }
                return String(String.UnicodeScalarView(scalars[lower..<upper]))
            }
        }
    }
}

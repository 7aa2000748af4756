/// SentencePiece's compiled normalization rules (`precompiled_charsmap` in `spm.model` and in
/// `tokenizer.json`'s `Precompiled` normalizer), applied the way Hugging Face `tokenizers` applies them.
///
/// The blob is `[u32 trie size in bytes][double-array trie of u32 units][NUL-terminated replacement strings]`;
/// a trie leaf holds the byte offset of its replacement string.
struct PrecompiledCharsmap: Sendable {
    private let units: [UInt32]
    private let replacements: [UInt8]

    init(_ blob: [UInt8]) throws(TokenizerLoadError) {
        guard blob.count >= 4 else { throw TokenizerLoadError("precompiled_charsmap is \(blob.count) bytes, too short for its header") }
        let trieBytes = Int(UInt32(blob[0]) | UInt32(blob[1]) << 8 | UInt32(blob[2]) << 16 | UInt32(blob[3]) << 24)
        guard trieBytes % 4 == 0, 4 + trieBytes <= blob.count, trieBytes >= 4 else {
            throw TokenizerLoadError("precompiled_charsmap declares a \(trieBytes)-byte trie in a \(blob.count)-byte blob")
        }
        var units = [UInt32](repeating: 0, count: trieBytes / 4)
        for i in 0..<units.count {
            let o = 4 + 4 * i
            units[i] = UInt32(blob[o]) | UInt32(blob[o + 1]) << 8 | UInt32(blob[o + 2]) << 16 | UInt32(blob[o + 3]) << 24
        }
        self.units = units
        replacements = Array(blob[(4 + trieBytes)...])
    }

    /// The replacement for the shortest key that is a prefix of `key` (not necessarily all of it: that is
    /// how `spm_precompiled` answers, and so how the reference normalizes), or nil when no key matches.
    func replacement<C: Collection>(forPrefixOf key: C) -> ArraySlice<UInt8>? where C.Element == UInt8 {
        var position = 0
        var unit = units[0]
        position ^= Self.offset(unit)
        for byte in key {
            if byte == 0 { break }
            position ^= Int(byte)
            guard position < units.count else { return nil }
            unit = units[position]
            if Self.label(unit) != UInt32(byte) { return nil }
            position ^= Self.offset(unit)
            guard position < units.count else { return nil }
            if (unit >> 8) & 1 == 1 {
                let start = Int(units[position] & 0x7FFF_FFFF)
                guard start <= replacements.count else { return nil }
                var end = start
                while end < replacements.count, replacements[end] != 0 { end += 1 }
                return replacements[start..<end]
            }
        }
        return nil
    }

    private static func label(_ unit: UInt32) -> UInt32 { unit & (0x8000_0000 | 0xFF) }
    private static func offset(_ unit: UInt32) -> Int { Int((unit >> 10) << ((unit & (1 << 9)) >> 6)) }

    /// Per grapheme cluster: a cluster shorter than 6 bytes with a match is replaced whole; otherwise each
    /// scalar is looked up on its own and kept when nothing matches.
    func normalize(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 8)
        var modified = false
        var scalarBytes: [UInt8] = []
        scalarBytes.reserveCapacity(4)
        for cluster in text {
            let utf8 = cluster.utf8
            if utf8.count < 6, let r = replacement(forPrefixOf: utf8) {
                out += r
                modified = true
                continue
            }
            for scalar in cluster.unicodeScalars {
                scalarBytes.removeAll(keepingCapacity: true)
                UTF8.encode(scalar) { scalarBytes.append($0) }
                if let r = replacement(forPrefixOf: scalarBytes) {
                    out += r
                    modified = true
                } else {
                    out += scalarBytes
                }
            }
        }
        return modified ? String(decoding: out, as: UTF8.self) : text
    }
}

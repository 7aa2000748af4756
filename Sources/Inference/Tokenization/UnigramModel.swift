/// A Unigram language model as Hugging Face `tokenizers` runs it: Viterbi over the UTF-8 bytes of one
/// pre-tokenized word, in f64, where a later candidate replaces the best path ending at a position only
/// when it scores strictly higher (so among equal scores the one found first wins: the path whose last
/// piece starts earliest, then the shortest such piece). A character no piece covers becomes `unk` with
/// the lowest score minus 10; consecutive unknowns fuse into one `unk`; with byte fallback an unknown
/// stretch becomes `<0xXX>` pieces when the vocabulary has them all.
struct UnigramModel: Sendable {
    let pieces: [String]
    let scores: [Double]
    let unknownId: Int?
    let byteFallback: Bool
    private let idByPiece: [String: Int]
    private let unknownScore: Double
    private let trie: ByteTrie
    /// `<0xXX>` piece ids by byte value, when byte fallback is on and the vocabulary has all 256.
    private let byteIds: [Int]?

    init(vocabulary: [(piece: String, score: Double)], unknownId: Int?, byteFallback: Bool) throws(TokenizerLoadError) {
        if let unknownId, !(0..<vocabulary.count).contains(unknownId) {
            throw TokenizerLoadError("unk_id \(unknownId) is outside the \(vocabulary.count)-piece vocabulary")
        }
        pieces = vocabulary.map(\.piece)
        scores = vocabulary.map(\.score)
        self.unknownId = unknownId
        self.byteFallback = byteFallback
        var ids: [String: Int] = [:]
        ids.reserveCapacity(vocabulary.count)
        var builder = ByteTrie.Builder()
        var minScore = Double.infinity
        for (id, entry) in vocabulary.enumerated() {
            ids[entry.piece] = id   // a repeated piece maps to its last id, as in tokenizers
            minScore = min(minScore, entry.score)
        }
        idByPiece = ids
        for (piece, id) in ids { builder.insert(Array(piece.utf8), id: id) }
        unknownScore = minScore - 10
        trie = builder.build()
        if byteFallback {
            let table = (0..<256).map { ids[Self.bytePiece(UInt8($0))] }
            byteIds = table.contains(where: { $0 == nil }) ? nil : table.map { $0! }
        } else {
            byteIds = nil
        }
    }

    static func bytePiece(_ byte: UInt8) -> String {
        let hex = Array("0123456789ABCDEF")
        return "<0x" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 15)]) + ">"
    }

    func id(of piece: String) -> Int? { idByPiece[piece] }

    func piece(_ id: Int) -> String? { pieces.indices.contains(id) ? pieces[id] : nil }

    private struct Node {
        var id = 0
        var score = 0.0
        var start = -1
    }

    /// Appends the ids of one word to `ids`; false (and nothing appended) when the word has a character no
    /// piece covers and the model has no unknown piece.
    func encode(_ word: [UInt8], into ids: inout [Int]) -> Bool {
        let n = word.count
        guard n > 0 else { return true }
        var best = [Node](repeating: Node(), count: n + 1)
        var start = 0
        while start < n {
            let here = best[start].score
            let charLength = Self.utf8Length(word[start])
            var coversCharacter = false
            trie.forEachPrefix(of: word, from: start) { end, id in
                let candidate = scores[id] + here
                if best[end].start < 0 || candidate > best[end].score {
                    best[end] = Node(id: id, score: candidate, start: start)
                }
                if end - start == charLength { coversCharacter = true }
            }
            if !coversCharacter {
                guard let unknownId else { return false }
                let end = min(n, start + charLength)
                let candidate = unknownScore + here
                if best[end].start < 0 || candidate > best[end].score {
                    best[end] = Node(id: unknownId, score: candidate, start: start)
                }
            }
            start += charLength
        }
        // Backtrack; runs of unknowns fuse into one piece.
        var spans: [(start: Int, end: Int, id: Int)] = []
        var end = n
        while end > 0 {
            let node = best[end]
            if node.id == unknownId, let last = spans.last, last.id == unknownId {
                spans[spans.count - 1].start = node.start
            } else {
                spans.append((node.start, end, node.id))
            }
            end = node.start
        }
        for span in spans.reversed() {
            guard span.id == unknownId else {
                ids.append(span.id)
                continue
            }
            // The reference maps the fused unknown text back through the vocabulary before falling back.
            let bytes = word[span.start..<span.end]
            if let id = idByPiece[String(decoding: bytes, as: UTF8.self)] {
                ids.append(id)
            } else if let byteIds {
                for b in bytes { ids.append(byteIds[Int(b)]) }
            } else if let unknownId {
                ids.append(unknownId)
            }
        }
        return true
    }

    private static func utf8Length(_ lead: UInt8) -> Int {
        switch lead {
        case 0..<0x80: 1
        case 0xF0...: 4
        case 0xE0...: 3
        case 0xC0...: 2
        default: 1
        }
    }
}

/// A byte trie over the vocabulary with flat child lists: the root has a 256-entry table, other nodes
/// keep their children in one shared array.
struct ByteTrie: Sendable {
    private var rootChildren: [Int32]
    private var childStart: [Int32]
    private var childCount: [Int32]
    private var childBytes: [UInt8]
    private var childNodes: [Int32]
    private var leafId: [Int32]

    struct Builder {
        private var children: [[UInt8: Int]] = [[:]]
        private var leaf: [Int32] = [-1]

        mutating func insert(_ key: [UInt8], id: Int) {
            guard !key.isEmpty else { return }
            var node = 0
            for b in key {
                if let next = children[node][b] {
                    node = next
                } else {
                    children.append([:])
                    leaf.append(-1)
                    children[node][b] = children.count - 1
                    node = children.count - 1
                }
            }
            leaf[node] = Int32(id)
        }

        func build() -> ByteTrie {
            var root = [Int32](repeating: -1, count: 256)
            for (b, child) in children[0] { root[Int(b)] = Int32(child) }
            var start = [Int32](repeating: 0, count: children.count)
            var count = [Int32](repeating: 0, count: children.count)
            var bytes: [UInt8] = []
            var nodes: [Int32] = []
            for (node, map) in children.enumerated() {
                start[node] = Int32(bytes.count)
                count[node] = Int32(map.count)
                for (b, child) in map.sorted(by: { $0.key < $1.key }) {
                    bytes.append(b)
                    nodes.append(Int32(child))
                }
            }
            return ByteTrie(rootChildren: root, childStart: start, childCount: count, childBytes: bytes, childNodes: nodes, leafId: leaf)
        }
    }

    /// Calls `body(end, id)` for every key that equals `text[from..<end]`, shortest first.
    func forEachPrefix(of text: [UInt8], from: Int, _ body: (Int, Int) -> Void) {
        guard from < text.count else { return }
        var node = Int(rootChildren[Int(text[from])])
        var i = from + 1
        while node >= 0 {
            if leafId[node] >= 0 { body(i, Int(leafId[node])) }
            guard i < text.count else { return }
            let b = text[i]
            let s = Int(childStart[node]), c = Int(childCount[node])
            var next = -1
            for k in s..<(s + c) where childBytes[k] == b {
                next = Int(childNodes[k])
                break
            }
            node = next
            i += 1
        }
    }
}

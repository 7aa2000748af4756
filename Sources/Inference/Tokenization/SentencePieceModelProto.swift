import Foundation

/// The parts of a SentencePiece `ModelProto` (`spm.model`, `spiece.model`) that transformers' converters
/// read: pieces with scores and types, the trainer's model type, unk id and byte fallback, and the
/// normalizer's precompiled charsmap. A minimal protobuf reader; unknown fields are skipped.
struct SentencePieceModelProto {
    enum PieceType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    struct Piece {
        var piece = ""
        var score: Float = 0
        var type = PieceType.normal
    }

    var pieces: [Piece] = []
    var modelType = 1
    var unknownId = 0
    var byteFallback = false
    var precompiledCharsmap: [UInt8] = []

    init(bytes: [UInt8]) throws(TokenizerLoadError) {
        var reader = ProtobufReader(bytes[...])
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let b)):
                var piece = Piece()
                var r = ProtobufReader(b)
                while let (f, v) = try r.next() {
                    switch (f, v) {
                    case (1, .bytes(let s)): piece.piece = String(decoding: s, as: UTF8.self)
                    case (2, .fixed32(let bits)): piece.score = Float(bitPattern: bits)
                    case (3, .varint(let t)):
                        guard let type = PieceType(rawValue: Int(t)) else { throw TokenizerLoadError("piece \(pieces.count) has unknown type \(t)") }
                        piece.type = type
                    default: break
                    }
                }
                pieces.append(piece)
            case (2, .bytes(let b)):
                var r = ProtobufReader(b)
                while let (f, v) = try r.next() {
                    switch (f, v) {
                    case (3, .varint(let t)): modelType = Int(t)
                    case (35, .varint(let t)): byteFallback = t != 0
                    case (40, .varint(let t)): unknownId = Int(Int32(truncatingIfNeeded: t))
                    default: break
                    }
                }
            case (3, .bytes(let b)):
                var r = ProtobufReader(b)
                while let (f, v) = try r.next() {
                    if f == 2, case .bytes(let map) = v { precompiledCharsmap = Array(map) }
                }
            default: break
            }
        }
        guard !pieces.isEmpty else { throw TokenizerLoadError("the SentencePiece model has no pieces") }
    }
}

/// Protobuf wire format: varint, 64-bit, length-delimited and 32-bit fields (groups are not used).
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    private var data: ArraySlice<UInt8>

    init(_ data: ArraySlice<UInt8>) { self.data = data }

    private mutating func varint() throws(TokenizerLoadError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = data.first {
            data.removeFirst()
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { break }
        }
        throw TokenizerLoadError("the SentencePiece model is not valid protobuf (a varint runs past the end)")
    }

    private mutating func take(_ n: Int) throws(TokenizerLoadError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= data.count else { throw TokenizerLoadError("the SentencePiece model is not valid protobuf (a field runs past the end)") }
        let out = data.prefix(n)
        data.removeFirst(n)
        return out
    }

    mutating func next() throws(TokenizerLoadError) -> (Int, Value)? {
        guard !data.isEmpty else { return nil }
        let key = try varint()
        let field = Int(key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: return (field, .fixed64(try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }))
        case 2: return (field, .bytes(try take(Int(try varint()))))
        case 5: return (field, .fixed32(try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }))
        case let w: throw TokenizerLoadError("the SentencePiece model is not valid protobuf (wire type \(w) in field \(field))")
        }
    }
}

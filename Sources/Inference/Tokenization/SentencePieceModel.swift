import CSentencePiece

public struct TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "tokenizer \(path): \(message)" }
}

/// A SentencePiece model loaded by Debian's libsentencepiece. Encoding is thread-safe (the C++ processor
/// is immutable after loading).
public final class SentencePieceModel: @unchecked Sendable {
    private let handle: OpaquePointer
    public let path: String
    public let pieceCount: Int

    public init(path: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = blendd_spm_load(path, &error, error.count) else {
            throw TokenizerError(path: path, message: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        self.handle = handle
        self.path = path
        pieceCount = Int(blendd_spm_piece_count(handle))
    }

    deinit { blendd_spm_free(handle) }

    public func encode(_ text: String) throws -> [Int] {
        var utf8 = Array(text.utf8)
        var capacity = max(16, utf8.count * 2)
        var error = [CChar](repeating: 0, count: 512)
        while true {
            var ids = [Int32](repeating: 0, count: capacity)
            let n = utf8.withUnsafeMutableBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    blendd_spm_encode(handle, chars.baseAddress, chars.count, &ids, ids.count, &error, error.count)
                }
            }
            if n < 0 {
                throw TokenizerError(path: path, message: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            if Int(n) <= capacity { return ids.prefix(Int(n)).map(Int.init) }
            capacity = Int(n)
            _ = utf8.count
        }
    }

    public func id(of piece: String) -> Int? {
        var bytes = Array(piece.utf8)
        let id = bytes.withUnsafeMutableBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { blendd_spm_piece_to_id(handle, $0.baseAddress, $0.count) }
        }
        return id < 0 ? nil : Int(id)
    }

    public func piece(_ id: Int) -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        var n = blendd_spm_id_to_piece(handle, Int32(id), &buffer, buffer.count)
        if n < 0 { return nil }
        if Int(n) > buffer.count {
            buffer = [CChar](repeating: 0, count: Int(n))
            n = blendd_spm_id_to_piece(handle, Int32(id), &buffer, buffer.count)
        }
        return String(decoding: buffer.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func isControl(_ id: Int) -> Bool { blendd_spm_is_control(handle, Int32(id)) != 0 }
    public func isUnknown(_ id: Int) -> Bool { blendd_spm_is_unknown(handle, Int32(id)) != 0 }
}

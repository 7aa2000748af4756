/// The central directory of a zip archive, as `torch.save` writes it: entries stored without compression
/// (torch never compresses), zip64 records for archives or entries past 4 GiB.
struct ZipArchive {
    struct Entry {
        var name: String
        var dataRange: Range<Int>
    }

    let file: MappedFile
    let entries: [String: Entry]

    init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        func bad(_ reason: String) -> CheckpointError { .malformed(path: path, reason: reason) }
        let size = file.count
        guard size >= 22 else { throw bad("too short to be a zip archive (truncated?)") }
        // End of central directory: the last 22 bytes plus a comment of at most 64 KiB.
        var eocd = -1
        var at = size - 22
        while at >= max(0, size - 22 - 65_535) {
            if file.readLE(UInt32.self, at: at) == 0x0605_4B50 { eocd = at; break }
            at -= 1
        }
        guard eocd >= 0 else { throw bad("no end-of-central-directory record (truncated or not a zip)") }
        var count = Int(file.readLE(UInt16.self, at: eocd + 10))
        var directorySize = Int(file.readLE(UInt32.self, at: eocd + 12))
        var directoryOffset = Int(file.readLE(UInt32.self, at: eocd + 16))
        if directoryOffset == 0xFFFF_FFFF || count == 0xFFFF, eocd >= 20,
           file.readLE(UInt32.self, at: eocd - 20) == 0x0706_4B50 {
            let record = Int(file.readLE(UInt64.self, at: eocd - 12))
            guard record >= 0, record + 56 <= size, file.readLE(UInt32.self, at: record) == 0x0606_4B50 else {
                throw bad("zip64 end-of-central-directory record is missing")
            }
            count = Int(file.readLE(UInt64.self, at: record + 32))
            directorySize = Int(file.readLE(UInt64.self, at: record + 40))
            directoryOffset = Int(file.readLE(UInt64.self, at: record + 48))
        }
        guard directoryOffset >= 0, directorySize >= 0, directoryOffset + directorySize <= size else {
            throw bad("central directory lies outside the file (truncated?)")
        }
        var entries: [String: Entry] = [:]
        var cursor = directoryOffset
        for _ in 0..<count {
            guard cursor + 46 <= size, file.readLE(UInt32.self, at: cursor) == 0x0201_4B50 else {
                throw bad("central directory entry at \(cursor) is damaged")
            }
            let method = file.readLE(UInt16.self, at: cursor + 10)
            var compressed = Int(file.readLE(UInt32.self, at: cursor + 20))
            var uncompressed = Int(file.readLE(UInt32.self, at: cursor + 24))
            let nameLength = Int(file.readLE(UInt16.self, at: cursor + 28))
            let extraLength = Int(file.readLE(UInt16.self, at: cursor + 30))
            let commentLength = Int(file.readLE(UInt16.self, at: cursor + 32))
            var localOffset = Int(file.readLE(UInt32.self, at: cursor + 42))
            guard cursor + 46 + nameLength + extraLength <= size else { throw bad("central directory is truncated") }
            let name = String(decoding: file.slice((cursor + 46)..<(cursor + 46 + nameLength)), as: UTF8.self)
            // zip64 extra field: the 64-bit values appear in this order, only for fields saturated above.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let tag = file.readLE(UInt16.self, at: extra)
                let length = Int(file.readLE(UInt16.self, at: extra + 2))
                if tag == 0x0001 {
                    var field = extra + 4
                    if uncompressed == 0xFFFF_FFFF { uncompressed = Int(file.readLE(UInt64.self, at: field)); field += 8 }
                    if compressed == 0xFFFF_FFFF { compressed = Int(file.readLE(UInt64.self, at: field)); field += 8 }
                    if localOffset == 0xFFFF_FFFF { localOffset = Int(file.readLE(UInt64.self, at: field)) }
                }
                extra += 4 + length
            }
            guard method == 0, compressed == uncompressed else {
                throw bad("entry \(name) is compressed (method \(method)); torch checkpoints store entries uncompressed")
            }
            guard localOffset >= 0, localOffset + 30 <= size, file.readLE(UInt32.self, at: localOffset) == 0x0403_4B50 else {
                throw bad("local header of \(name) is missing (truncated?)")
            }
            let start = localOffset + 30 + Int(file.readLE(UInt16.self, at: localOffset + 26))
                + Int(file.readLE(UInt16.self, at: localOffset + 28))
            guard start + compressed <= size else { throw bad("entry \(name) runs past the end of the file (truncated?)") }
            entries[name] = Entry(name: name, dataRange: start..<(start + compressed))
            cursor += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
    }
}

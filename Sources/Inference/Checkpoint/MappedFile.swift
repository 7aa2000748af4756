import Foundation

/// A read-only memory map of a whole file; pages are loaded on first touch, so opening a multi-GB
/// checkpoint costs nothing until its tensors are read.
final class MappedFile: @unchecked Sendable {
    let path: String
    let bytes: UnsafeRawBufferPointer

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw CheckpointError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(info.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw CheckpointError.unreadable(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }

    var count: Int { bytes.count }

    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Drops the pages wholly inside `range` from this process's resident set once a tensor has been
    /// converted, so loading never holds the file and the converted weights at once (a later read of
    /// the range faults the pages in from the file again: the map is private and never written).
    func release(_ range: Range<Int>) {
        guard let base = bytes.baseAddress, !range.isEmpty else { return }
        let start = (range.lowerBound + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        let end = range.upperBound / Self.pageSize * Self.pageSize
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// Converts `count` elements of `dtype` starting at byte `start`, a page at a time, releasing each
    /// converted page at once, so a tensor's file pages never sit in memory beside its Float32 copy.
    func convert(_ dtype: StoredDType, from start: Int, count: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let end = start + count * dtype.size
        var done = 0
        while done < count {
            // Chunks end on page boundaries (1 MiB apart), so each release drops every page it converted.
            let from = start + done * dtype.size
            let boundary = min(end, (from / (1 << 20) + 1) << 20)
            let n = max(1, min(count - done, (boundary - from) / dtype.size))
            dtype.convert(slice(from..<(from + n * dtype.size)), count: n, into: UnsafeMutableBufferPointer(rebasing: out[done..<(done + n)]))
            release(from..<(from + n * dtype.size))
            done += n
        }
    }

    func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + MemoryLayout<T>.size)])) }
        return T(littleEndian: value)
    }
}

/// Element types found in checkpoints, converted to Float32 on load.
enum StoredDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64", i32 = "I32"

    var size: Int {
        switch self {
        case .f16, .bf16: 2
        case .f32, .i32: 4
        case .f64, .i64: 8
        }
    }

    /// Converts `count` elements starting at element `offset`.
    func convert(_ raw: UnsafeRawBufferPointer, elementOffset: Int = 0, count: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let base = raw.baseAddress!.advanced(by: elementOffset * size)
        switch self {
        case .f32:
            UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(start: base, count: count * 4))
        case .bf16:
            // bf16 is the top half of an IEEE float32.
            for i in 0..<count {
                let bits = UInt32(base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                out[i] = Float(bitPattern: bits << 16)
            }
        case .f16:
            for i in 0..<count {
                out[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            }
        case .f64:
            for i in 0..<count { out[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        case .i64:
            for i in 0..<count { out[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)) }
        case .i32:
            for i in 0..<count { out[i] = Float(base.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        }
    }
}

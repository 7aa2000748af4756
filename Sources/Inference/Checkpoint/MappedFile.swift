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

    func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
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

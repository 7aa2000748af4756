import CKernels
import Foundation

/// Keeps the allocator from holding on to loading's intermediates (Float32 copies, concatenated
/// projections, packing buffers). glibc serves blocks below a threshold that grows with every large
/// block freed from its heap, and keeps freed heap memory for reuse; over a checkpoint's hundreds of
/// tensors that retention reached ~110 MB beside PairRM's 1.24 GB of bf16 weights. While loading,
/// every block of 1 MiB or more gets its own mapping, returned to the system when freed; afterwards
/// the threshold is the allocator's own ceiling (32 MiB), so inference reuses its activation buffers
/// from the heap as before, and whatever loading left free in the heap is handed back.
public enum LoadingMemory {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var depth = 0

    public static func compact<T>(_ load: () throws -> T) rethrows -> T {
        lock.withLock {
            if depth == 0 {
                bk_allocator_loading(1)
            }
            depth += 1
        }
        defer {
            lock.withLock {
                depth -= 1
                if depth == 0 {
                    bk_allocator_loading(0)
                }
            }
        }
        return try load()
    }
}

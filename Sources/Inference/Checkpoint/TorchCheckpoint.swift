/// A PyTorch `torch.save` file (zip format): `<archive>/data.pkl` pickles the state dict, and each tensor's
/// storage is the raw entry `<archive>/data/<key>`. The pickle is read by a restricted unpickler that knows
/// only the opcodes and globals a state dict uses; any other global (such as `posix.system`) or opcode is
/// refused before anything could run. Nothing is ever executed: globals are matched by name to our own
/// rebuilders.
final class TorchCheckpoint: @unchecked Sendable {
    struct TensorRef {
        var storageKey: String
        var dtype: StoredDType
        var storageOffset: Int
        var shape: [Int]
        var stride: [Int]
    }

    let file: MappedFile
    let archive: ZipArchive
    let prefix: String
    let tensors: [String: TensorRef]

    init(path: String) throws {
        file = try MappedFile(path: path)
        if file.count >= 2, file.readLE(UInt16.self, at: 0) == 0x0280 {
            throw CheckpointError.malformed(path: path, reason: "legacy (pre-1.6) torch serialization is not supported; re-save it with torch.save")
        }
        archive = try ZipArchive(file: file)
        guard let pickle = archive.entries.keys.filter({ $0.hasSuffix("data.pkl") }).min(by: { $0.count < $1.count }) else {
            throw CheckpointError.malformed(path: path, reason: "no data.pkl in the archive")
        }
        prefix = String(pickle.dropLast("data.pkl".count))
        let range = archive.entries[pickle]!.dataRange
        var unpickler = RestrictedUnpickler(path: path, bytes: file.slice(range))
        let root = try unpickler.load()
        guard let items = root.asDict else {
            throw CheckpointError.malformed(path: path, reason: "the pickle holds \(root.kind), not a state dict")
        }
        var tensors: [String: TensorRef] = [:]
        for (key, value) in items {
            guard case let .string(name) = key else { continue }
            if case let .tensor(ref) = value { tensors[name] = ref }
        }
        self.tensors = tensors
    }

    var names: [String] { Array(tensors.keys) }

    func shape(_ name: String) -> [Int]? { tensors[name]?.shape }

    func tensor(_ name: String) throws -> Tensor? {
        guard let ref = tensors[name] else { return nil }
        let path = file.path
        guard let entry = archive.entries[prefix + "data/" + ref.storageKey] else {
            throw CheckpointError.malformed(path: path, reason: "storage \(ref.storageKey) of \(name) is not in the archive")
        }
        let storage = file.slice(entry.dataRange)
        let elements = storage.count / ref.dtype.size
        let count = ref.shape.reduce(1, *)
        // The furthest element the view touches must lie inside the storage.
        let last = ref.storageOffset + zip(ref.shape, ref.stride).reduce(0) { $0 + max($1.0 - 1, 0) * $1.1 }
        guard count == 0 || (ref.storageOffset >= 0 && last < elements) else {
            throw CheckpointError.malformed(path: path, reason: "tensor \(name) reaches past its storage (\(elements) elements)")
        }
        let contiguous = Self.contiguousStrides(ref.shape)
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if ref.stride == contiguous || count <= 1 {
                file.convert(ref.dtype, from: entry.dataRange.lowerBound + ref.storageOffset * ref.dtype.size, count: count, into: buffer)
            } else {
                // A strided view (e.g. a saved transpose): walk it element by element.
                var index = [Int](repeating: 0, count: ref.shape.count)
                for i in 0..<count {
                    let offset = ref.storageOffset + zip(index, ref.stride).reduce(0) { $0 + $1.0 * $1.1 }
                    ref.dtype.convert(storage, elementOffset: offset, count: 1, into: UnsafeMutableBufferPointer(rebasing: buffer[i..<(i + 1)]))
                    var d = index.count - 1
                    while d >= 0 {
                        index[d] += 1
                        if index[d] < ref.shape[d] { break }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
            initialized = count
        }
        file.release(entry.dataRange)
        return Tensor(shape: ref.shape, storage: values)
    }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = running
            running *= shape[d]
        }
        return strides
    }
}

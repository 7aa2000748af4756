import BlendCore
import Foundation

/// The tensors of a Hugging Face model directory, from whichever file layout it was published in:
/// `model.safetensors`, sharded safetensors with `model.safetensors.index.json`, `pytorch_model.bin`, or
/// sharded `.bin` files with `pytorch_model.bin.index.json`. Tensors are converted to Float32 when taken.
public final class WeightStore: @unchecked Sendable {
    public enum Format: String, Sendable {
        case safetensors, shardedSafetensors = "sharded safetensors", pytorch, shardedPytorch = "sharded pytorch"
        /// Tensors made on demand (benchmarks on random weights of a real model's shape).
        case synthetic
    }

    private enum Source {
        case safetensors(SafetensorsFile)
        case torch(TorchCheckpoint)
        case synthetic(shapes: [String: [Int]], make: @Sendable (String, [Int]) -> Tensor)
    }

    public let directory: String
    public let format: Format
    private let sources: [String: Source]
    private let shapes: [String: [Int]]

    public var names: [String] { shapes.keys.sorted() }

    public func shape(of name: String) -> [Int]? { shapes[name] }

    public static func open(directory: String) throws -> WeightStore {
        let fm = FileManager.default
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        if fm.fileExists(atPath: path("model.safetensors")) {
            let file = try SafetensorsFile(path: path("model.safetensors"))
            return WeightStore(directory: directory, format: .safetensors, files: [.safetensors(file)])
        }
        if fm.fileExists(atPath: path("model.safetensors.index.json")) {
            let shards = try shardNames(index: path("model.safetensors.index.json"))
            return WeightStore(directory: directory, format: .shardedSafetensors,
                               files: try shards.map { .safetensors(try SafetensorsFile(path: path($0))) })
        }
        if fm.fileExists(atPath: path("pytorch_model.bin")) {
            return WeightStore(directory: directory, format: .pytorch, files: [.torch(try TorchCheckpoint(path: path("pytorch_model.bin")))])
        }
        if fm.fileExists(atPath: path("pytorch_model.bin.index.json")) {
            let shards = try shardNames(index: path("pytorch_model.bin.index.json"))
            return WeightStore(directory: directory, format: .shardedPytorch,
                               files: try shards.map { .torch(try TorchCheckpoint(path: path($0))) })
        }
        throw CheckpointError.noWeights(directory: directory)
    }

    /// Opens one weights file directly (tests, conversions).
    public static func open(file: String) throws -> WeightStore {
        let directory = (file as NSString).deletingLastPathComponent
        if file.hasSuffix(".safetensors") {
            return WeightStore(directory: directory, format: .safetensors, files: [.safetensors(try SafetensorsFile(path: file))])
        }
        return WeightStore(directory: directory, format: .pytorch, files: [.torch(try TorchCheckpoint(path: file))])
    }

    /// `<directory name>@<fingerprint>`, the fingerprint an FNV-1a of config.json and the tensor names and shapes:
    /// cheap on a multi-GB checkpoint, and different when the directory holds another model.
    public static func label(directory: String, store: WeightStore) -> String {
        var hash = FNV1a()
        hash.combine(FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent("config.json")) ?? Data())
        for name in store.names {
            hash.combine(name.utf8)
            hash.combine(String(describing: store.shape(of: name) ?? []).utf8)
        }
        let name = (directory as NSString).standardizingPath.split(separator: "/").last.map(String.init) ?? "model"
        return "\(name)@\(hash.shortHex)"
    }

    /// A store whose tensors are made when taken, so a model of several GB is never held twice.
    public static func synthetic(shapes: [String: [Int]], make: @escaping @Sendable (String, [Int]) -> Tensor) -> WeightStore {
        WeightStore(directory: "", format: .synthetic, files: [.synthetic(shapes: shapes, make: make)])
    }

    private static func shardNames(index: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: index) else {
            throw CheckpointError.unreadable(path: index, reason: "no such file")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = json["weight_map"] as? [String: String] else {
            throw CheckpointError.malformed(path: index, reason: "no weight_map object")
        }
        for shard in Set(map.values) where shard.contains("/") || shard.hasPrefix(".") {
            throw CheckpointError.malformed(path: index, reason: "shard name \(shard) leaves the model directory")
        }
        return Set(map.values).sorted()
    }

    private init(directory: String, format: Format, files: [Source]) {
        self.directory = directory
        self.format = format
        var sources: [String: Source] = [:]
        var shapes: [String: [Int]] = [:]
        for file in files {
            switch file {
            case let .safetensors(f):
                for (name, entry) in f.entries { sources[name] = file; shapes[name] = entry.shape }
            case let .torch(t):
                for (name, ref) in t.tensors { sources[name] = file; shapes[name] = ref.shape }
            case let .synthetic(all, _):
                for (name, shape) in all { sources[name] = file; shapes[name] = shape }
            }
        }
        self.sources = sources
        self.shapes = shapes
    }

    /// The tensor converted to Float32, or nil when the checkpoint has no such name.
    public func tensor(_ name: String) throws -> Tensor? {
        switch sources[name] {
        case nil: return nil
        case let .safetensors(f)?: return f.tensor(name)
        case let .torch(t)?: return try t.tensor(name)
        case let .synthetic(all, make)?: return make(name, all[name]!)
        }
    }

    public func reader(prefix: String = "") -> WeightReader { WeightReader(store: self, prefix: prefix) }
}

/// Takes a model's tensors by name and expected shape, collecting every missing, mis-shaped and
/// (at `finish`) unused tensor, so one error lists all of them.
public final class WeightReader {
    public let store: WeightStore
    public let prefix: String
    private var taken: Set<String> = []
    private(set) var problems: [CheckpointError.TensorProblem] = []

    init(store: WeightStore, prefix: String) {
        self.store = store
        self.prefix = prefix
    }

    /// The tensor `prefix + name`; a zero tensor of the expected shape stands in when it is missing or
    /// mis-shaped, so building can go on and report everything at once.
    public func take(_ name: String, _ shape: [Int]) throws -> Tensor {
        let full = prefix + name
        taken.insert(full)
        guard let found = store.shape(of: full) else {
            problems.append(.missing(name: full, expected: shape))
            return Tensor(zeros: shape)
        }
        guard found == shape else {
            problems.append(.shape(name: full, expected: shape, found: found))
            return Tensor(zeros: shape)
        }
        return try store.tensor(full)!
    }

    /// Whether the checkpoint has `prefix + name` (for optional tensors such as a tied head).
    public func has(_ name: String) -> Bool { store.shape(of: prefix + name) != nil }

    /// Marks names as deliberately unused (tied copies, buffers the model recomputes).
    public func ignore(where predicate: (String) -> Bool) {
        for name in store.names where predicate(name) { taken.insert(name) }
    }

    /// Throws every problem found; tensors nobody took are unexpected.
    public func finish() throws {
        var all = problems
        for name in store.names where !taken.contains(name) {
            all.append(.unexpected(name: name, shape: store.shape(of: name) ?? []))
        }
        if !all.isEmpty { throw CheckpointError.tensors(all) }
    }
}

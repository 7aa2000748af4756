import Foundation

/// Why a model directory could not be loaded. Every case names the file or tensor it is about.
public enum CheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformed(path: String, reason: String)
    /// A pickle asked for something a state dict never needs; nothing was executed.
    case refusedPickle(path: String, reason: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case noWeights(directory: String)
    case config(path: String, reason: String)
    /// Every tensor problem found while building a model, reported together.
    case tensors([TensorProblem])

    public enum TensorProblem: Sendable, Equatable, CustomStringConvertible {
        case missing(name: String, expected: [Int])
        case unexpected(name: String, shape: [Int])
        case shape(name: String, expected: [Int], found: [Int])

        public var description: String {
            switch self {
            case let .missing(name, expected): "missing \(name) (expected \(expected))"
            case let .unexpected(name, shape): "unexpected \(name) \(shape)"
            case let .shape(name, expected, found): "\(name) has shape \(found), expected \(expected)"
            }
        }
    }

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read \(path): \(reason)"
        case let .malformed(path, reason): "\(path) is not a valid checkpoint file: \(reason)"
        case let .refusedPickle(path, reason): "refusing to load \(path): \(reason); nothing in it was executed"
        case let .unsupportedDType(path, tensor, dtype): "\(path): tensor \(tensor) has unsupported dtype \(dtype)"
        case let .noWeights(directory):
            "\(directory) holds no weights (looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json)"
        case let .config(path, reason): "\(path): \(reason)"
        case let .tensors(problems):
            "checkpoint does not match the model: " + problems.map(\.description).joined(separator: "; ")
        }
    }
}

extension CheckpointError {
    /// A model directory's JSON file (config.json, generation_config.json) as an object, or the error naming it.
    static func readJSONObject(_ path: String) throws -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.unreadable(path: path, reason: "no such file")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.config(path: path, reason: "not a JSON object")
        }
        return json
    }
}

import Foundation

/// A `.safetensors` file: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw data. The file is memory-mapped; tensors are converted on request.
final class SafetensorsFile: @unchecked Sendable {
    struct Entry: Sendable {
        var dtype: StoredDType
        var shape: [Int]
        var range: Range<Int>
    }

    let file: MappedFile
    let entries: [String: Entry]

    init(path: String) throws {
        file = try MappedFile(path: path)
        func bad(_ reason: String) -> CheckpointError { .malformed(path: path, reason: reason) }
        guard file.count >= 8 else { throw bad("shorter than its 8-byte header length") }
        let headerLength = Int(file.readLE(UInt64.self, at: 0))
        guard headerLength > 0, headerLength <= file.count - 8 else {
            throw bad("header length \(headerLength) does not fit in a \(file.count)-byte file")
        }
        let header = Data(file.slice(8..<(8 + headerLength)))
        guard let json = try? JSONSerialization.jsonObject(with: header) as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        let dataStart = 8 + headerLength
        var entries: [String: Entry] = [:]
        for (name, value) in json where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw bad("entry \(name) lacks dtype, shape or data_offsets") }
            guard let dtype = StoredDType(rawValue: dtypeName) else {
                throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: dtypeName)
            }
            let begin = dataStart + offsets[0], end = dataStart + offsets[1]
            guard offsets[0] >= 0, begin <= end, end <= file.count else {
                throw bad("tensor \(name) spans bytes \(offsets) outside the file")
            }
            guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) * dtype.size == end - begin else {
                throw bad("tensor \(name) of shape \(shape) and dtype \(dtypeName) does not fill its \(end - begin) bytes")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: begin..<end)
        }
        self.entries = entries
    }

    func tensor(_ name: String) -> Tensor? {
        guard let entry = entries[name] else { return nil }
        let count = entry.shape.reduce(1, *)
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            file.convert(entry.dtype, from: entry.range.lowerBound, count: count, into: buffer)
            initialized = count
        }
        return Tensor(shape: entry.shape, storage: values)
    }
}

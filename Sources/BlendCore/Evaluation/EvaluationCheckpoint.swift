import Foundation

/// The progress file of `blendd eval`: one JSON line per ranked record, appended as records finish, so an
/// interrupted run resumes where it stopped. A crash can leave the last line torn; it is dropped (and the
/// record ranked again). Anything unreadable before the last line is an error, never silently skipped.
public enum EvaluationCheckpoint {
    public struct Entry: Codable, Sendable, Equatable {
        public var ranker: String
        /// The rank mode the ranks were made with: another mode ranks the record again.
        public var mode: String
        public var id: String
        /// `MixInstructRecord.fingerprint` of the record that was ranked.
        public var fingerprint: String
        public var ranks: [Int]
        /// The ranker's scores; null where a score was not a number.
        public var scores: [Double?]

        public init(ranker: String, mode: String, id: String, fingerprint: String, ranks: [Int], scores: [Double?]) {
            self.ranker = ranker
            self.mode = mode
            self.id = id
            self.fingerprint = fingerprint
            self.ranks = ranks
            self.scores = scores
        }
    }

    public struct Contents: Sendable, Equatable {
        public var entries: [Entry]
        /// Bytes of the complete lines; a torn tail beyond them is cut before appending.
        public var validLength: Int

        public init(entries: [Entry], validLength: Int) {
            self.entries = entries
            self.validLength = validLength
        }
    }

    public struct CorruptLine: Error, Sendable, Equatable, CustomStringConvertible {
        public var line: Int
        public init(line: Int) { self.line = line }
        public var description: String { "line \(line) is not a checkpoint entry (only a torn last line is tolerated)" }
    }

    public static func parse(_ data: Data) throws -> Contents {
        let bytes = [UInt8](data)
        var entries: [Entry] = []
        var start = 0, line = 1
        let decoder = JSONDecoder()
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else {
                // No terminator: the write of this line was cut short.
                return Contents(entries: entries, validLength: start)
            }
            let text = bytes[start..<newline]
            if !text.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) {
                guard let entry = try? decoder.decode(Entry.self, from: Data(text)) else {
                    if newline + 1 >= bytes.count { return Contents(entries: entries, validLength: start) }
                    throw CorruptLine(line: line)
                }
                entries.append(entry)
            }
            start = newline + 1
            line += 1
        }
        return Contents(entries: entries, validLength: bytes.count)
    }

    /// One entry as a JSON line, newline included.
    public static func line(_ entry: Entry) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(entry)
        data.append(UInt8(ascii: "\n"))
        return data
    }
}

/// A JSON value exactly as written: numbers keep their literal text (`18446744073709551617`,
/// `1e400`, `-0` and `1.0` stay what they are), objects keep their members in order.
/// `JSONParser` reads one; `serialized()` writes it back with the same numbers and strings.
///
/// Equality is semantic for objects: the same keys with equal values, in any order.
public indirect enum ExactJSON: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: ExactJSON
        public init(_ key: String, _ value: ExactJSON) { self.key = key; self.value = value }
    }

    case null
    case bool(Bool)
    /// The number's literal text, valid under JSON's number grammar.
    case number(String)
    case string(String)
    case array([ExactJSON])
    case object([Member])

    public static func == (a: ExactJSON, b: ExactJSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)):
            x.count == y.count && x.allSatisfy { m in y.contains { $0.key == m.key && $0.value == m.value } }
        default: false
        }
    }

    public subscript(key: String) -> ExactJSON? {
        if case .object(let members) = self { return members.last { $0.key == key }?.value }
        return nil
    }

    /// The same document for validation, numbers as the nearest Double (±infinity beyond range).
    public var jsonValue: JSONValue {
        switch self {
        case .null: .null
        case .bool(let b): .bool(b)
        case .number(let literal): .number(Double(literal) ?? (literal.hasPrefix("-") ? -.infinity : .infinity))
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(\.jsonValue))
        case .object(let members):
            .object(Dictionary(members.map { ($0.key, $0.value.jsonValue) }, uniquingKeysWith: { _, last in last }))
        }
    }

    /// A value built in code; integral numbers are written without a fraction.
    public init(_ value: JSONValue) {
        switch value {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let n) where !n.isFinite: self = .null
        case .number(let n): self = .number(n.rounded() == n && abs(n) < 9.007_199_254_740_992e15 ? String(Int64(n)) : "\(n)")
        case .string(let s): self = .string(s)
        case .array(let items): self = .array(items.map(ExactJSON.init))
        case .object(let fields): self = .object(fields.keys.sorted().map { Member($0, ExactJSON(fields[$0]!)) })
        }
    }

    /// Compact JSON text: numbers as written, strings escaped only where JSON requires it.
    public func serialized() -> String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let literal): out += literal
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += "," }
                Self.writeString(member.key, to: &out)
                out += ":"
                member.value.write(to: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// This object with `value` under `key`, placed among keys sorted by their UTF-8 bytes
    /// (the order of a sorted-keys encoder).
    func insertingSorted(_ key: String, _ value: ExactJSON) -> ExactJSON {
        guard case .object(var members) = self else { return self }
        members.removeAll { $0.key == key }
        let index = members.firstIndex { !$0.key.utf8.lexicographicallyPrecedes(key.utf8) } ?? members.count
        members.insert(Member(key, value), at: index)
        return .object(members)
    }
}

extension ExactJSON: Codable {
    /// Decoding through a `Decoder` can only see numbers as Doubles; `JSONParser` keeps them exact.
    public init(from decoder: Decoder) throws {
        self.init(try JSONValue(from: decoder))
    }

    /// Encoding through an `Encoder` writes numbers as the nearest Double (or exact Int64);
    /// `serialized()` writes them as written.
    public func encode(to encoder: Encoder) throws {
        switch self {
        case .number(let literal):
            var container = encoder.singleValueContainer()
            if let exact = Int64(literal) { try container.encode(exact) } else { try container.encode(Double(literal) ?? 0) }
        case .null, .bool, .string:
            try jsonValue.encode(to: encoder)
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        case .object(let members):
            var container = encoder.container(keyedBy: AnyKey.self)
            for member in members { try container.encode(member.value, forKey: AnyKey(member.key)) }
        }
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

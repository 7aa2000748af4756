import Foundation

/// A Swift value sent as a query parameter, in PostgreSQL's text format; nil is SQL NULL.
public protocol PostgresEncodable: Sendable {
    var postgresText: String? { get }
}

/// A Swift type a result column (text format) can be read as.
public protocol PostgresDecodable {
    /// nil text means SQL NULL; non-optional types throw on it.
    static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> Self
}

/// Why a column could not be decoded; wrapped into a `PostgresError` with the column name.
public struct PostgresDecodingFailure: Error, Sendable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self }
    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> String {
        guard let postgresText else { throw PostgresDecodingFailure("is NULL") }
        return postgresText
    }
}

extension Substring: PostgresEncodable {
    public var postgresText: String? { String(self) }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self ? "true" : "false" }
    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> Bool {
        switch postgresText {
        case "t", "true": return true
        case "f", "false": return false
        default: throw PostgresDecodingFailure("is not a boolean: \(postgresText ?? "NULL")")
        }
    }
}

/// Integers and floats share one shape: text out, `init?(String)` in.
public protocol PostgresNumber: PostgresEncodable, PostgresDecodable, LosslessStringConvertible {}

extension PostgresNumber {
    public var postgresText: String? { description }
    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> Self {
        guard let postgresText, let value = Self(postgresText) else {
            throw PostgresDecodingFailure("is not a \(Self.self): \(postgresText ?? "NULL")")
        }
        return value
    }
}

extension Int: PostgresNumber {}
extension Int16: PostgresNumber {}
extension Int32: PostgresNumber {}
extension Int64: PostgresNumber {}

extension Double: PostgresNumber {
    public var postgresText: String? { isNaN ? "NaN" : isInfinite ? (self > 0 ? "Infinity" : "-Infinity") : description }
}

extension Float: PostgresNumber {
    public var postgresText: String? { Double(self).postgresText }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresText: String? { self?.postgresText }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> Wrapped? {
        guard postgresText != nil else { return nil }
        return try Wrapped.decode(postgresText: postgresText)
    }
}

extension Date: PostgresEncodable, PostgresDecodable {
    /// Sessions run with TimeZone=UTC and DateStyle=ISO, so timestamptz text is predictable.
    public var postgresText: String? {
        formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
    }

    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> Date {
        guard let text = postgresText else { throw PostgresDecodingFailure("is NULL") }
        // "2026-11-25 02:31:47.123456+00" — PostgreSQL ISO output; fractional digits vary.
        var s = text.replacingOccurrences(of: " ", with: "T")
        if s.hasSuffix("+00") || s.hasSuffix("-00") { s = String(s.dropLast(3)) + "Z" }
        var fraction = 0.0
        if let dot = s.firstIndex(of: "."), let zone = s[dot...].firstIndex(where: { $0 == "Z" || $0 == "+" || $0 == "-" }) {
            fraction = Double("0" + s[dot..<zone]) ?? 0
            s.removeSubrange(dot..<zone)
        }
        guard let whole = try? Date(s, strategy: Date.ISO8601FormatStyle()) else {
            throw PostgresDecodingFailure("is not a timestamp with time zone: \(text)")
        }
        return whole.addingTimeInterval(fraction)
    }
}

/// bytea, sent and read in hex format.
public struct PostgresBytes: PostgresEncodable, PostgresDecodable, Equatable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var postgresText: String? {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 2 + bytes.count * 2)
        out[0] = UInt8(ascii: "\\"); out[1] = UInt8(ascii: "x")
        for (i, b) in bytes.enumerated() {
            out[2 + 2 * i] = digits[Int(b >> 4)]
            out[3 + 2 * i] = digits[Int(b & 0xF)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> PostgresBytes {
        guard let text = postgresText, text.hasPrefix("\\x") else { throw PostgresDecodingFailure("is not hex bytea") }
        let hex = Array(text.utf8.dropFirst(2))
        guard hex.count % 2 == 0 else { throw PostgresDecodingFailure("has an odd number of hex digits") }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.count / 2)
        var i = 0
        while i < hex.count {
            guard let hi = nibble(hex[i]), let lo = nibble(hex[i + 1]) else { throw PostgresDecodingFailure("has a bad hex digit") }
            bytes.append(hi << 4 | lo)
            i += 2
        }
        return PostgresBytes(bytes)
    }
}

/// A json/jsonb value, sent and read as its JSON text.
public struct PostgresJSON: PostgresEncodable, PostgresDecodable, Equatable {
    public var text: String
    public init(text: String) { self.text = text }
    public init(bytes: [UInt8]) { self.text = String(decoding: bytes, as: UTF8.self) }
    public init<T: Encodable>(encoding value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.text = String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public var postgresText: String? { text }
    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> PostgresJSON {
        guard let postgresText else { throw PostgresDecodingFailure("is NULL") }
        return PostgresJSON(text: postgresText)
    }

    public func decoded<T: Decodable>(as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}

/// One-dimensional integer arrays (int[] / bigint[]), e.g. fusion source indexes.
extension Array: PostgresEncodable where Element: PostgresNumber {
    public var postgresText: String? { "{" + map { $0.description }.joined(separator: ",") + "}" }
}

extension Array: PostgresDecodable where Element: PostgresNumber {
    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> [Element] {
        guard let text = postgresText, text.hasPrefix("{"), text.hasSuffix("}") else {
            throw PostgresDecodingFailure("is not an array: \(postgresText ?? "NULL")")
        }
        let body = text.dropFirst().dropLast()
        if body.isEmpty { return [] }
        var out: [Element] = []
        for part in body.split(separator: ",") {
            guard let v = Element(String(part)) else { throw PostgresDecodingFailure("has a bad element \(part)") }
            out.append(v)
        }
        return out
    }
}

/// A one-dimensional text[] parameter; elements are quoted, so any text round-trips.
public struct PostgresTextArray: PostgresEncodable, PostgresDecodable, Equatable {
    public var elements: [String?]
    public init(_ elements: [String?]) { self.elements = elements }

    /// Every element is double-quoted (so "NULL", "", braces, commas and spaces stay text) with
    /// `"` and `\` backslash-escaped; a nil element is an unquoted NULL. Built from runs of bytes: the
    /// result store sends whole batches of texts in one array, so this runs over megabytes.
    public var postgresText: String? {
        var out: [UInt8] = []
        out.reserveCapacity(2 + elements.reduce(0) { $0 + ($1?.utf8.count ?? 4) + 3 })
        out.append(UInt8(ascii: "{"))
        for (i, element) in elements.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            guard let element else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(UInt8(ascii: "\""))
            var text = element
            text.withUTF8 { bytes in
                // Runs without a quote or backslash are copied whole; most elements are one run.
                var start = 0
                for (i, byte) in bytes.enumerated() where byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<i]))
                    out.append(UInt8(ascii: "\\"))
                    start = i
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(postgresText: String?) throws(PostgresDecodingFailure) -> PostgresTextArray {
        guard let text = postgresText, text.first == "{", text.last == "}" else {
            throw PostgresDecodingFailure("is not an array: \(postgresText ?? "NULL")")
        }
        var out: [String?] = []
        let chars = Array(text.dropFirst().dropLast())
        var i = 0
        while i < chars.count {
            if chars[i] == "\"" {
                var value = ""
                i += 1
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                    value.append(chars[i])
                    i += 1
                }
                out.append(value)
                i += 1
            } else {
                var value = ""
                while i < chars.count, chars[i] != "," { value.append(chars[i]); i += 1 }
                out.append(value == "NULL" ? nil : value)
            }
            if i < chars.count, chars[i] == "," { i += 1 }
        }
        return PostgresTextArray(out)
    }
}

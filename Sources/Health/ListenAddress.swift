/// A `host:port` listen setting turned into the sockets to bind.
///
/// - `*:P`, `:P` and `[::]:P` listen on every IPv4 and IPv6 address (one dual-stack socket; IPv4 only
///   where the kernel has no IPv6).
/// - `localhost:P` listens on both loopbacks, 127.0.0.1 and ::1.
/// - `[v6]:P`, `v4:P` or a host name listen on exactly that address.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// Hosts to bind, in order; all share one port.
    public var hosts: [String]
    /// 0 picks a free port (the first socket's; the others then use the same).
    public var port: Int
    /// The text it was parsed from.
    public let text: String

    public static let anyHost = "::"

    public init(parsing text: String) throws(ListenAddressError) {
        self.text = text
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ListenAddressError(text: text, reason: "an IPv6 address is written [address]:port")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw ListenAddressError(text: text, reason: "expected host:port") }
            host = String(text[..<colon])
            guard !host.contains(":") else { throw ListenAddressError(text: text, reason: "write an IPv6 address in brackets, [address]:port") }
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ListenAddressError(text: text, reason: "the port must be a number from 0 to 65535")
        }
        self.port = port
        switch host {
        case "", "*", "::": hosts = [Self.anyHost]
        case "localhost": hosts = ["127.0.0.1", "::1"]
        default: hosts = [host]
        }
    }

    public var description: String { text }

    /// An address a local client can reach this listener on (for `blendd status` and tests).
    public var loopbackHost: String {
        switch hosts[0] {
        case Self.anyHost, "0.0.0.0": "127.0.0.1"
        default: hosts[0]
        }
    }
}

public struct ListenAddressError: Error, CustomStringConvertible, Equatable {
    public let text: String
    public let reason: String
    public var description: String { "listen address \"\(text)\": \(reason)" }
}

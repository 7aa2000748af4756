/// The one list of what counts as a secret, and the masking every output channel (config check,
/// logs, error messages, /status) applies before a value leaves the process.
///
/// Secrets are: the settings declared `secret:` (postgres.url, whose password is masked in place),
/// every value read from a `BLENDD_*_FILE` file, and the librdkafka properties `isSecretKafkaProperty`
/// names (sasl.password, sasl.oauthbearer.client.secret, ssl.key.password, ssl.keystore.password, …).
extension ConfigurationLoader {
    public static let masked = "****"

    /// Settings whose values are, or contain, secrets.
    public static var secretSettings: [ConfigurationSetting] { settings.filter(\.isSecret) }

    /// librdkafka properties whose whole value is a secret. Any name with "password" or "secret"
    /// in it, and the key material and token configuration that have neither.
    public static func isSecretKafkaProperty(_ key: String) -> Bool {
        let k = key.lowercased()
        return k.contains("password") || k.contains("secret") || secretKafkaPropertyNames.contains(k)
    }

    static let secretKafkaPropertyNames: Set<String> = [
        "ssl.key.pem", "ssl_key", "sasl.oauthbearer.config", "sasl.oauthbearer.extensions",
    ]

    /// Keys of `key=value` pairs whose value is a secret wherever they appear: libpq's `password`
    /// and `sslpassword` (not `passfile`, a path), in conninfo strings and URL queries, and the
    /// secret Kafka properties.
    static func isSecretKey(_ key: String) -> Bool { isSecretKafkaProperty(key) }

    /// `text` with every password replaced by `****`: in URLs (`user:pass@`, several hosts,
    /// percent-encoded or not, `?password=` and `&sslpassword=`), in conninfo strings
    /// (`password=x`, `password = 'quoted \' with spaces'`), and in `key=value` Kafka properties.
    /// Works on whole log lines and error messages, not only on a bare value.
    public static func mask(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            if let (keyEnd, key) = key(in: s, at: i) {
                var j = keyEnd
                while j < s.count && s[j] == " " { j += 1 }
                if j < s.count && s[j] == "=" && isSecretKey(percentDecoded(key)) {
                    j += 1
                    while j < s.count && s[j] == " " { j += 1 }
                    out.append(contentsOf: s[i..<j])
                    out.append(contentsOf: masked.unicodeScalars)
                    let inQuery = i > 0 && (s[i - 1] == "?" || s[i - 1] == "&")
                    i = valueEnd(in: s, from: j, inQuery: inQuery)
                    continue
                }
                // Not a secret: copy the whole key, so its tail is not taken for another key.
                out.append(contentsOf: s[i..<keyEnd])
                i = keyEnd
                continue
            }
            if s[i] == ":", i + 2 < s.count, s[i + 1] == "/", s[i + 2] == "/" {
                out.append(contentsOf: "://".unicodeScalars)
                i += 3
                if let password = userinfoPassword(in: s, from: i) {
                    out.append(contentsOf: s[i..<password.lowerBound])
                    out.append(contentsOf: masked.unicodeScalars)
                    i = password.upperBound
                }
                continue
            }
            out.append(s[i])
            i += 1
        }
        return String(out)
    }

    private static func isKeyScalar(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "a"..."z", "A"..."Z", "0"..."9", "_", ".", "%", "-": true
        default: false
        }
    }

    /// A key starting at `i` (not in the middle of a word): its end and text.
    private static func key(in s: [Unicode.Scalar], at i: Int) -> (Int, String)? {
        guard i == 0 || !isKeyScalar(s[i - 1]), ("a"..."z").contains(s[i]) || ("A"..."Z").contains(s[i]) else { return nil }
        var j = i
        while j < s.count && isKeyScalar(s[j]) { j += 1 }
        var key = String.UnicodeScalarView()
        key.append(contentsOf: s[i..<j])
        return (j, String(key))
    }

    /// Where a value starting at `j` ends: after its closing quote (libpq's backslash escapes
    /// honoured; unterminated means the rest of the text), or at whitespace, or at `&` in a URL query.
    private static func valueEnd(in s: [Unicode.Scalar], from j: Int, inQuery: Bool) -> Int {
        if j < s.count, s[j] == "'" || s[j] == "\"" {
            let quote = s[j]
            var k = j + 1
            while k < s.count {
                if s[k] == "\\" { k += 2; continue }
                if s[k] == quote { return k + 1 }
                k += 1
            }
            return s.count
        }
        var k = j
        while k < s.count && !s[k].properties.isWhitespace && !(inQuery && s[k] == "&") {
            k += s[k] == "\\" ? 2 : 1
        }
        return min(k, s.count)
    }

    /// The password of a URL's user information, for a URL whose scheme ends just before `start`.
    /// The user information ends at the last `@` that a host follows, so an unencoded `@`, `/`
    /// or `?` in a password is masked too (an `@` in the query may mask more than the password:
    /// too much is harmless, too little is a leak).
    private static func userinfoPassword(in s: [Unicode.Scalar], from start: Int) -> Range<Int>? {
        var end = start
        while end < s.count && !s[end].properties.isWhitespace { end += 1 }
        let ats = s[start..<end].indices.filter { s[$0] == "@" }
        guard let last = ats.last else { return nil }
        let at = ats.last { isHost(s, after: $0, end: end) } ?? last
        guard let colon = s[start..<at].firstIndex(of: ":") else { return nil }
        return (colon + 1)..<at
    }

    /// Whether a host list (`db:5432,[::1]:5433`) follows position `at`, up to the path, query or end.
    private static func isHost(_ s: [Unicode.Scalar], after at: Int, end: Int) -> Bool {
        var k = at + 1
        while k < end && s[k] != "/" && s[k] != "?" {
            switch s[k] {
            case "a"..."z", "A"..."Z", "0"..."9", ".", "-", ":", ",", "[", "]", "%", "_": k += 1
            default: return false
            }
        }
        return k > at + 1
    }

    private static func percentDecoded(_ key: String) -> String {
        guard key.contains("%") else { return key }
        var bytes: [UInt8] = []
        var scalars = Array(key.utf8)[...]
        while let b = scalars.popFirst() {
            if b == UInt8(ascii: "%"), scalars.count >= 2,
               let v = UInt8(String(decoding: scalars.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                scalars = scalars.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Small helpers for connection strings.
public enum PostgresURL {
    /// The same server and options with another database: `postgresql://u@h:5432/a?x=1` → `…/name?x=1`;
    /// a conninfo string gets `dbname=name` appended (later keys win in libpq).
    public static func replacingDatabase(in url: String, with name: String) -> String {
        guard let scheme = url.range(of: "://") else { return url + " dbname=\(name)" }
        let rest = url[scheme.upperBound...]
        let query = rest.firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
        let authority = rest.prefix { $0 != "?" }.prefix { $0 != "/" }
        return String(url[..<scheme.upperBound]) + authority + "/" + name + query
    }
}

import Foundation
import XCTest
@testable import BlendCore

final class SecretMaskingTests: XCTestCase {
    /// Each form a password can take, with the exact masked text.
    static let forms: [(String, String)] = [
        ("postgresql://blendd:hunter2@db:5432/blendd", "postgresql://blendd:****@db:5432/blendd"),
        ("postgres://blendd:hunter2@db1:5432,db2:5433/blendd?target_session_attrs=read-write",
         "postgres://blendd:****@db1:5432,db2:5433/blendd?target_session_attrs=read-write"),
        ("postgresql://blendd:hunter%402%3F@db/blendd", "postgresql://blendd:****@db/blendd"),
        ("postgresql://blendd:hun@ter/2?x@db/blendd?application_name=app", "postgresql://blendd:****@db/blendd?application_name=app"),
        ("postgresql://db/blendd?user=blendd&password=hunter2&sslmode=require",
         "postgresql://db/blendd?user=blendd&password=****&sslmode=require"),
        ("postgresql://db/blendd?password=hunter2", "postgresql://db/blendd?password=****"),
        ("postgresql://db/blendd?sslmode=verify-full&sslpassword=hunter2", "postgresql://db/blendd?sslmode=verify-full&sslpassword=****"),
        ("postgresql://db/blendd?pass%77ord=hunter2&user=u", "postgresql://db/blendd?pass%77ord=****&user=u"),
        ("postgresql://u:hunter2@db/x?password=hunter2", "postgresql://u:****@db/x?password=****"),
        ("host=db user=u password=hunter2 dbname=x", "host=db user=u password=**** dbname=x"),
        ("host=db password = hunter2 dbname=x", "host=db password = **** dbname=x"),
        ("host=db password='hunter2 with \\' and spaces' dbname=x", "host=db password=**** dbname=x"),
        ("host=db password='unterminated hunter2", "host=db password=****"),
        ("host=db password=hun\\ ter2 dbname=x", "host=db password=**** dbname=x"),
        ("host=db sslpassword=hunter2 passfile=/run/pgpass sslkey=/k", "host=db sslpassword=**** passfile=/run/pgpass sslkey=/k"),
        ("PASSWORD=hunter2 host=db", "PASSWORD=**** host=db"),
        ("bootstrap.servers=k:9092 sasl.password=hunter2 sasl.username=svc", "bootstrap.servers=k:9092 sasl.password=**** sasl.username=svc"),
        ("sasl.oauthbearer.client.secret=hunter2 ssl.key.password=hunter2 ssl.keystore.password=hunter2",
         "sasl.oauthbearer.client.secret=**** ssl.key.password=**** ssl.keystore.password=****"),
        ("sasl.oauthbearer.config=principal=hunter2", "sasl.oauthbearer.config=****"),
        ("cannot connect to postgresql://u:hunter2@db/x: refused", "cannot connect to postgresql://u:****@db/x: refused"),
        ("worker --set postgres.url=postgresql://u:hunter2@db/x --set kafka.properties.sasl.password=hunter2",
         "worker --set postgres.url=postgresql://u:****@db/x --set kafka.properties.sasl.password=****"),
    ]

    func testEveryFormOfAPasswordIsMaskedExactly() {
        for (input, expected) in Self.forms {
            XCTAssertEqual(ConfigurationLoader.mask(input), expected, input)
            XCTAssertFalse(ConfigurationLoader.mask(input).contains("hunter"), input)
        }
    }

    func testTextWithoutSecretsIsUnchanged() {
        for text in ["postgresql://db:5432/blendd", "postgresql://blendd@db/blendd", "host=db user=u dbname=x passfile=/p",
                     "kafka error _TRANSPORT while the producer: Connect to ipv4#127.0.0.1:9 failed: Connection refused",
                     "", "a=b c=d", "user:pass is how it is written", "ünïcødé password"] {
            XCTAssertEqual(ConfigurationLoader.mask(text), text)
        }
    }

    func testMaskingIsIdempotent() {
        for (input, _) in Self.forms {
            let once = ConfigurationLoader.mask(input)
            XCTAssertEqual(ConfigurationLoader.mask(once), once)
        }
    }

    func testGeneratedPasswordsNeverSurviveInAnyForm() {
        var rng = SplitMix64(seed: 16)
        let alphabet = Array("abcXYZ019 '\\@:/?&=%#\"")
        for _ in 0..<500 {
            let core = String((0..<Int.random(in: 4...16, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let password = "Zq" + core + "Zq"
            let encoded = password.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let quoted = "'" + password.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
            let forms = [
                "postgresql://u:\(encoded)@db/x", "postgresql://db/x?password=\(encoded)&a=b",
                "host=db password=\(quoted) dbname=x", "sasl.password=\(quoted)",
            ]
            for form in forms {
                let masked = ConfigurationLoader.mask(form)
                XCTAssertFalse(masked.contains(password) || masked.contains(encoded), "\(form) → \(masked)")
            }
        }
    }

    func testTheSecretListNamesThePasswordSettingAndTheSecretKafkaProperties() {
        XCTAssertEqual(ConfigurationLoader.secretSettings.map(\.path), ["postgres.url"])
        for property in ["sasl.password", "sasl.oauthbearer.client.secret", "ssl.key.password", "ssl.keystore.password",
                         "ssl.key.pem", "sasl.oauthbearer.config", "SASL.PASSWORD"] {
            XCTAssertTrue(ConfigurationLoader.isSecretKafkaProperty(property), property)
        }
        for property in ["sasl.username", "ssl.key.location", "security.protocol", "client.id"] {
            XCTAssertFalse(ConfigurationLoader.isSecretKafkaProperty(property), property)
        }
    }

    func testValuesFromSecretFilesAreShownMaskedWhateverTheSetting() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
        try "reallysecretgroup\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let loaded = ConfigurationLoader.load(file: nil, environment: [
            "BLENDD_KAFKA_GROUP_ID_FILE": path, "BLENDD_KAFKA_PROPERTY_SASL_USERNAME_FILE": path,
            "BLENDD_POSTGRES_URL": "host=db password='x y' dbname=z",
        ])
        XCTAssertEqual(loaded.problems, [])
        XCTAssertEqual(loaded.configuration.kafka.groupId, "reallysecretgroup")
        let text = loaded.rendered().joined(separator: "\n")
        XCTAssertFalse(text.contains("reallysecretgroup"), text)
        XCTAssertTrue(text.contains("kafka.group_id = ****  (environment)"), text)
        XCTAssertTrue(text.contains("kafka.properties.sasl.username = ****  (environment)"), text)
        XCTAssertTrue(text.contains("postgres.url = host=db password=**** dbname=z  (environment)"), text)
        let wrongType = ConfigurationLoader.load(file: nil, environment: ["BLENDD_POSTGRES_POOL_SIZE_FILE": path])
        XCTAssertEqual(wrongType.problems.map(\.message), ["postgres.pool_size must be an integer, found (hidden)"])
    }
}

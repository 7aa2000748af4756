import XCTest
@testable import BlendCore

final class JobFileReaderTests: XCTestCase {
    private func texts(_ s: String) -> [String] {
        JobFileReader.records(in: Array(s.utf8)).map { String(decoding: $0.bytes, as: UTF8.self) }
    }

    func testSingleObjectIsOneRecord() {
        XCTAssertEqual(texts("  {\"a\": \"}{\"}\n"), ["{\"a\": \"}{\"}"])
    }

    func testJSONLinesGiveOneRecordPerLineWithLineNumbers() {
        let records = JobFileReader.records(in: Array("{\"a\":1}\n\n{\"b\":\"x\\\"}\"}\nnot json\n{\"c\":3}".utf8))
        XCTAssertEqual(records.map(\.line), [1, 3, 4, 5])
        XCTAssertEqual(records.map { String(decoding: $0.bytes, as: UTF8.self) },
                       ["{\"a\":1}", "{\"b\":\"x\\\"}\"}", "not json", "{\"c\":3}"])
    }

    func testArrayElementsKeepTheirOwnBytesAndLines() {
        let records = JobFileReader.records(in: Array("[\n  {\"a\": [1, 2]},\n  {\"b\": {}} ,\n  42\n]\n".utf8))
        XCTAssertEqual(records.map(\.line), [2, 3, 4])
        XCTAssertEqual(records.map { String(decoding: $0.bytes, as: UTF8.self) }, ["{\"a\": [1, 2]}", "{\"b\": {}}", "42"])
    }

    func testPrettyPrintedObjectsOneAfterAnother() {
        XCTAssertEqual(texts("{\n \"a\": 1\n}\n{\n \"b\": 2\n}"), ["{\n \"a\": 1\n}", "{\n \"b\": 2\n}"])
    }

    func testUnterminatedInputBecomesOneRecordToReport() {
        XCTAssertEqual(texts("{\"a\": \"open"), ["{\"a\": \"open"])
        XCTAssertEqual(texts("[{\"a\":1}, {\"b\""), ["[{\"a\":1}, {\"b\""])
        XCTAssertEqual(texts(""), [])
    }
}

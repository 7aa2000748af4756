import XCTest
@testable import BlendCore

final class ConversationFlatteningTests: XCTestCase {
    private func user(_ text: String) -> ConversationTurn { ConversationTurn(role: "USER", content: text) }
    private func assistant(_ text: String) -> ConversationTurn { ConversationTurn(role: "ASSISTANT", content: text) }

    private func problem(_ a: [ConversationTurn], _ b: [ConversationTurn],
                         file: StaticString = #filePath, line: UInt = #line) -> ConversationProblem? {
        switch ConversationFlattening.flatten(a: a, b: b) {
        case .success(let pair):
            XCTFail("expected a problem, got \(pair)", file: file, line: line)
            return nil
        case .failure(let p): return p
        }
    }

    private func flattened(_ a: [ConversationTurn], _ b: [ConversationTurn],
                           file: StaticString = #filePath, line: UInt = #line) throws -> FlattenedConversationPair {
        try ConversationFlattening.flatten(a: a, b: b).get()
    }

    func testInstructionKeepsTheReferencesMisspelling() {
        XCTAssertEqual(ConversationFlattening.instruction,
                       "Finish the following coversation in each i-th turn by filling in <Response i> with your response.")
    }

    func testSingleTurnFlattensToTheReferenceFormat() throws {
        let pair = try flattened([user("hello"), assistant("hi")], [user("hello"), assistant("hey there")])
        XCTAssertEqual(pair.instruction, ConversationFlattening.instruction)
        XCTAssertEqual(pair.input, "USER: hello\nAssistant: <Response 1>")
        XCTAssertEqual(pair.a, "<Response 1>: hi")
        XCTAssertEqual(pair.b, "<Response 1>: hey there")
    }

    func testMultiTurnNumbersResponsesFromOneAndJoinsWithNewlines() throws {
        let a = [user("q1"), assistant("a1"), user("q2\nmore"), assistant("a2"), user("q3"), assistant("")]
        let b = [user("q1"), assistant("b1"), user("q2\nmore"), assistant("b2"), user("q3"), assistant("b3")]
        // The empty assistant turn of `a` is rejected; the same shape with content flattens.
        XCTAssertEqual(problem(a, b)?.kind, .emptyTurn)
        var filled = a
        filled[5].content = "a3"
        let pair = try flattened(filled, b)
        XCTAssertEqual(pair.input,
                       "USER: q1\nAssistant: <Response 1>\nUSER: q2\nmore\nAssistant: <Response 2>\nUSER: q3\nAssistant: <Response 3>")
        XCTAssertEqual(pair.a, "<Response 1>: a1\n<Response 2>: a2\n<Response 3>: a3")
        XCTAssertEqual(pair.b, "<Response 1>: b1\n<Response 2>: b2\n<Response 3>: b3")
    }

    func testEmptyConversationIsRejected() {
        let p = problem([], [])
        XCTAssertEqual(p?.kind, .empty)
        XCTAssertEqual(p?.side, "a")
        XCTAssertNil(p?.turn)
        XCTAssertEqual(p?.message, "conversation a has no turns")
    }

    func testEmptyTurnNamesSideTurnAndRole() {
        let p = problem([user("q"), assistant("a")], [user("q"), assistant("")])
        XCTAssertEqual(p?.kind, .emptyTurn)
        XCTAssertEqual(p?.side, "b")
        XCTAssertEqual(p?.turn, 1)
        XCTAssertEqual(p?.message, "conversation b turn 1 (ASSISTANT) has empty content")
        XCTAssertEqual(p?.description, "empty_turn: conversation b turn 1 (ASSISTANT) has empty content")
    }

    func testRoleOutOfOrderNamesTheTurnAndTheExpectedRole() {
        let b = [user("q"), assistant("x"), user("r"), user("y")]
        let p = problem([user("q"), assistant("a"), user("r"), assistant("b")], b)
        XCTAssertEqual(p?.kind, .notAlternating)
        XCTAssertEqual(p?.side, "b")
        XCTAssertEqual(p?.turn, 3)
        XCTAssertEqual(p?.message, "conversation b turn 3 has role USER where ASSISTANT was expected")
    }

    func testConversationStartingWithAssistantIsRejected() {
        let p = problem([assistant("a"), user("q")], [user("q"), assistant("a")])
        XCTAssertEqual(p?.kind, .notAlternating)
        XCTAssertEqual(p?.side, "a")
        XCTAssertEqual(p?.turn, 0)
    }

    func testRolesAreCaseSensitiveAsInTheReference() {
        let p = problem([ConversationTurn(role: "user", content: "q"), assistant("a")], [user("q"), assistant("a")])
        XCTAssertEqual(p?.kind, .notAlternating)
        XCTAssertEqual(p?.message,
                       "conversation a turn 0 has role \"user\" where USER was expected (roles are matched exactly, in upper case)")
        let unknown = problem([user("q"), ConversationTurn(role: "system", content: "a")], [user("q"), assistant("a")])
        XCTAssertEqual(unknown?.message, "conversation a turn 1 has role \"system\" where ASSISTANT was expected")
    }

    func testOddTurnCountIsAMissingAssistantReply() {
        let p = problem([user("q"), assistant("a"), user("r")], [user("q"), assistant("a"), user("r")])
        XCTAssertEqual(p?.kind, .notAlternating)
        XCTAssertEqual(p?.side, "a")
        XCTAssertEqual(p?.turn, 3)
        XCTAssertEqual(p?.message,
                       "conversation a has 3 turns and ends with a USER turn; turn 3 must be its ASSISTANT reply")
    }

    func testTurnCountsDiffer() {
        let p = problem([user("q"), assistant("a")], [user("q"), assistant("a"), user("r"), assistant("b")])
        XCTAssertEqual(p?.kind, .turnCountsDiffer)
        XCTAssertNil(p?.side)
        XCTAssertEqual(p?.message, "conversation a has 2 turns and conversation b has 4; both must have the same number")
    }

    func testUserTurnsDifferNamesTheFirstDifferingTurn() {
        let p = problem([user("q"), assistant("a"), user("r"), assistant("b")],
                        [user("q"), assistant("x"), user("R"), assistant("y")])
        XCTAssertEqual(p?.kind, .userTurnsDiffer)
        XCTAssertEqual(p?.turn, 2)
        XCTAssertEqual(p?.message, "USER turn 2 differs between conversation a and conversation b; both must ask the same")
    }

    func testCanonicallyEquivalentUserTurnsDifferAsPythonStringsDo() {
        // Swift's == equates these; Python's does not, and neither may we.
        XCTAssertEqual("\u{E9}", "e\u{301}")
        let p = problem([user("caf\u{E9}"), assistant("a")], [user("cafe\u{301}"), assistant("b")])
        XCTAssertEqual(p?.kind, .userTurnsDiffer)
    }

    func testReferenceProblemsComeBeforeOurStricterOnes() {
        // An empty turn in a together with a turn-count mismatch: the reference reports the
        // count, so we do too.
        let p = problem([user(""), assistant("a")], [user(""), assistant("a"), user("r"), assistant("b")])
        XCTAssertEqual(p?.kind, .turnCountsDiffer)
        // An empty `a` against a non-empty `b` is a count mismatch in the reference.
        XCTAssertEqual(problem([], [user("q"), assistant("a")])?.kind, .turnCountsDiffer)
        // B's shape is checked before the pair's counts.
        XCTAssertEqual(problem([user("q"), assistant("a")], [user("q")])?.side, "b")
    }

    // MARK: generated conversations

    private struct Generator {
        var rng: SplitMix64
        let alphabet: [String] = ["a", "Z", "7", " ", "\n", "\t", "USER:", "<Response 1>", "é", "e\u{301}", "中",
                                  "\u{200B}", "\u{0}", "🙂", "Assistant:", "\\n", "\"", ".", "!!"]

        mutating func int(_ bound: Int) -> Int { Int(rng.next() % UInt64(bound)) }

        mutating func text(allowEmpty: Bool = false) -> String {
            let n = int(6) + (allowEmpty ? 0 : 1)
            return (0..<n).map { _ in alphabet[int(alphabet.count)] }.joined()
        }

        /// A valid pair: same user turns, independent assistant turns, 1...5 exchanges.
        mutating func pair() -> ([ConversationTurn], [ConversationTurn]) {
            var a: [ConversationTurn] = [], b: [ConversationTurn] = []
            for _ in 0..<(1 + int(5)) {
                let question = text()
                a += [ConversationTurn(role: "USER", content: question), ConversationTurn(role: "ASSISTANT", content: text())]
                b += [ConversationTurn(role: "USER", content: question), ConversationTurn(role: "ASSISTANT", content: text())]
            }
            return (a, b)
        }
    }

    func testGeneratedValidPairsFlattenWithTheDocumentedStructure() throws {
        var g = Generator(rng: SplitMix64(seed: 17))
        for _ in 0..<500 {
            let (a, b) = g.pair()
            let pair = try flattened(a, b)
            let exchanges = a.count / 2
            // Each side's candidate depends only on that side; the input only on the user turns.
            XCTAssertEqual(pair.a, try flattened(a, a).a)
            XCTAssertEqual(pair.b, try flattened(b, b).a)
            XCTAssertEqual(pair.input, try flattened(b, a).input)
            XCTAssertEqual(try flattened(b, a).a, pair.b)
            // Piece k of the input and of each candidate, found by its prefix.
            var inputRest = Substring(pair.input)
            var aRest = Substring(pair.a)
            for k in 1...exchanges {
                let question = "USER: " + a[2 * (k - 1)].content + "\nAssistant: <Response \(k)>"
                XCTAssertTrue(inputRest.hasPrefix(question), "input piece \(k)")
                inputRest = inputRest.dropFirst(question.count)
                let answer = "<Response \(k)>: " + a[2 * k - 1].content
                XCTAssertTrue(aRest.hasPrefix(answer), "candidate piece \(k)")
                aRest = aRest.dropFirst(answer.count)
                if k < exchanges {
                    XCTAssertEqual(inputRest.first, "\n")
                    XCTAssertEqual(aRest.first, "\n")
                    inputRest = inputRest.dropFirst()
                    aRest = aRest.dropFirst()
                }
            }
            XCTAssertTrue(inputRest.isEmpty)
            XCTAssertTrue(aRest.isEmpty)
        }
    }

    func testGeneratedMutationsAreRejectedWithTheMatchingKindSideAndTurn() {
        var g = Generator(rng: SplitMix64(seed: 1717))
        var seen = Set<String>()
        for _ in 0..<2000 {
            var (a, b) = g.pair()
            let mutateB = g.int(2) == 1
            let side = mutateB ? "b" : "a"
            var target = mutateB ? b : a
            let expected: (ConversationProblem.Kind, String?, Int?)
            switch g.int(6) {
            case 0:
                let i = g.int(target.count)
                target[i].role = ["user", "Assistant", "SYSTEM", "", i % 2 == 0 ? "ASSISTANT" : "USER"][g.int(5)]
                expected = (.notAlternating, side, i)
            case 1:
                target.removeLast()
                expected = (.notAlternating, side, target.count)
            case 2:
                // An assistant turn: an empty user turn on one side would first differ from the other.
                let i = 2 * g.int(target.count / 2) + 1
                target[i].content = ""
                expected = (.emptyTurn, side, i)
            case 3:
                target += [ConversationTurn(role: "USER", content: "x"), ConversationTurn(role: "ASSISTANT", content: "y")]
                expected = (.turnCountsDiffer, nil, nil)
            case 4:
                let i = 2 * g.int(target.count / 2)
                target[i].content += "?"
                expected = (.userTurnsDiffer, nil, i)
            default:
                a = []
                b = []
                target = []
                expected = (.empty, "a", nil)
            }
            if mutateB { b = target } else { a = target }
            guard case .failure(let p) = ConversationFlattening.flatten(a: a, b: b) else {
                XCTFail("mutation \(expected) accepted: \(a) / \(b)")
                continue
            }
            XCTAssertEqual(p.kind, expected.0, p.message)
            XCTAssertEqual(p.side, expected.1, p.message)
            XCTAssertEqual(p.turn, expected.2, p.message)
            XCTAssertFalse(p.message.isEmpty)
            seen.insert(p.kind.rawValue)
        }
        XCTAssertEqual(seen, ["empty", "not_alternating", "empty_turn", "turn_counts_differ", "user_turns_differ"])
    }
}

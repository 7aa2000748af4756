import Foundation

/// The parts of a fast tokenizer, read from `tokenizer.json` or built by `SentencePieceConversion`.
struct TokenizerPipeline {
    var model: UnigramModel
    var normalizer: TextNormalizer?
    var preTokenizer: PreTokenizer?
    var decoder: TokenDecoder?
    var addedTokens: [AddedVocabulary.Token]
    var prefixIds: [Int]
    var suffixIds: [Int]
}

/// A tokenizer directory's JSON files.
struct TokenizerDirectory {
    let directory: String
    let config: [String: Any]
    let specialTokensMap: [String: Any]?
    let addedTokensFile: [String: Any]?
    let tokenizerJSON: [String: Any]?
    let tokenizerJSONData: Data?

    init(_ directory: String) throws {
        self.directory = directory
        func read(_ name: String) throws -> (Data, [String: Any])? {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError(path: path, message: "not a JSON object")
            }
            return (data, object)
        }
        config = try read("tokenizer_config.json")?.1 ?? [:]
        specialTokensMap = try read("special_tokens_map.json")?.1
        addedTokensFile = try read("added_tokens.json")?.1
        let tokenizer = try read("tokenizer.json")
        tokenizerJSON = tokenizer?.1
        tokenizerJSONData = tokenizer?.0
    }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    /// DeBERTa-v2/v3 or T5, from `tokenizer_class`, else from which SentencePiece file is there.
    func family() throws -> Tokenizer.Family {
        let className = (config["tokenizer_class"] as? String) ?? ""
        if className.hasPrefix("T5") { return .t5 }
        if className.hasPrefix("DebertaV2") { return .debertaV2 }
        if exists("spiece.model") { return .t5 }
        if exists("spm.model") { return .debertaV2 }
        throw TokenizerError(path: directory, message: "no spm.model (DeBERTa-v2/v3) or spiece.model (T5) tokenizer; tokenizer_class is \(className.isEmpty ? "unset" : className)")
    }
}

extension TokenizerPipeline {
    /// Reads `tokenizer.json` (format 1.0). Components the checkpoints do not use are refused by name.
    init(tokenizerJSON json: [String: Any], data: Data, path: String) throws {
        func fail(_ message: String) -> TokenizerError { TokenizerError(path: path, message: message) }
        do {
            guard let modelJSON = json["model"] as? [String: Any] else { throw fail("no model") }
            guard (modelJSON["type"] as? String) == "Unigram" else {
                throw fail("model type \(modelJSON["type"] ?? "unset") is not supported (only Unigram)")
            }
            // Scores are read by JSONDecoder: JSONSerialization's doubles are not always correctly rounded, and a
            // last-bit error breaks the Viterbi ties the reference resolves.
            let vocab: [UnigramEntry]
            do {
                vocab = try JSONDecoder().decode(UnigramFile.self, from: data).model.vocab
            } catch {
                throw fail("the Unigram vocab is not a list of [piece, score]: \(error)")
            }
            model = try UnigramModel(vocabulary: vocab.map { ($0.piece, $0.score) }, unknownId: modelJSON["unk_id"] as? Int,
                                     byteFallback: (modelJSON["byte_fallback"] as? Bool) ?? false)
            normalizer = try (json["normalizer"] as? [String: Any]).map(Self.normalizer)
            preTokenizer = try (json["pre_tokenizer"] as? [String: Any]).map(Self.preTokenizer)
            decoder = try (json["decoder"] as? [String: Any]).map(Self.decoder)
            var tokens: [AddedVocabulary.Token] = []
            for entry in (json["added_tokens"] as? [[String: Any]]) ?? [] {
                guard let id = entry["id"] as? Int, let content = entry["content"] as? String else { throw fail("an added token has no id or content") }
                let special = (entry["special"] as? Bool) ?? false
                tokens.append(AddedVocabulary.Token(content: content, id: id, special: special,
                                                    normalized: (entry["normalized"] as? Bool) ?? !special,
                                                    lstrip: (entry["lstrip"] as? Bool) ?? false,
                                                    rstrip: (entry["rstrip"] as? Bool) ?? false,
                                                    singleWord: (entry["single_word"] as? Bool) ?? false))
            }
            addedTokens = tokens
            (prefixIds, suffixIds) = try Self.template(json["post_processor"] as? [String: Any])
        } catch let error as TokenizerLoadError {
            throw fail(error.message)
        }
    }

    private struct UnigramEntry: Decodable {
        var piece: String
        var score: Double
        init(from decoder: Decoder) throws {
            var c = try decoder.unkeyedContainer()
            piece = try c.decode(String.self)
            score = try c.decode(Double.self)
        }
    }

    private struct UnigramFile: Decodable {
        struct Model: Decodable { var vocab: [UnigramEntry] }
        var model: Model
    }

    private static func type(_ j: [String: Any]) -> String { (j["type"] as? String) ?? "unset" }

    static func normalizer(_ j: [String: Any]) throws(TokenizerLoadError) -> TextNormalizer {
        switch type(j) {
        case "Sequence":
            guard let all = j["normalizers"] as? [[String: Any]] else { throw TokenizerLoadError("a Sequence normalizer has no normalizers") }
            var list: [TextNormalizer] = []
            for n in all { list.append(try normalizer(n)) }
            return .sequence(list)
        case "Precompiled":
            guard let b64 = j["precompiled_charsmap"] as? String, let data = Data(base64Encoded: b64) else {
                throw TokenizerLoadError("the Precompiled normalizer's charsmap is not base64")
            }
            return .precompiled(try PrecompiledCharsmap(Array(data)))
        case "Replace":
            return .replace(try replacement(j), with: (j["content"] as? String) ?? "")
        case "Strip":
            return .strip(left: (j["strip_left"] as? Bool) ?? true, right: (j["strip_right"] as? Bool) ?? true)
        case "Lowercase": return .lowercase
        case "StripAccents": return .stripAccents
        case "Prepend": return .prepend((j["prepend"] as? String) ?? "")
        case let form where TextNormalizer.UnicodeForm(rawValue: form) != nil:
            return .unicode(TextNormalizer.UnicodeForm(rawValue: form)!)
        case let other: throw TokenizerLoadError("normalizer \(other) is not supported")
        }
    }

    private static func replacement(_ j: [String: Any]) throws(TokenizerLoadError) -> TextReplacement {
        guard let pattern = j["pattern"] as? [String: Any] else { throw TokenizerLoadError("a Replace has no pattern") }
        if let s = pattern["String"] as? String { return try TextReplacement(string: s) }
        if let r = pattern["Regex"] as? String { return try TextReplacement(regex: r) }
        throw TokenizerLoadError("a Replace pattern is neither String nor Regex")
    }

    private static func metaspace(_ j: [String: Any]) throws(TokenizerLoadError) -> (Unicode.Scalar, PrependScheme) {
        guard let r = j["replacement"] as? String, r.unicodeScalars.count == 1 else { throw TokenizerLoadError("Metaspace needs a one-character replacement") }
        var scheme = PrependScheme.always
        if let s = j["prepend_scheme"] as? String {
            guard let parsed = PrependScheme(rawValue: s) else { throw TokenizerLoadError("Metaspace prepend_scheme \(s) is unknown") }
            scheme = parsed
        } else if (j["add_prefix_space"] as? Bool) == false {
            scheme = .never   // the format before prepend_scheme
        }
        return (r.unicodeScalars.first!, scheme)
    }

    static func preTokenizer(_ j: [String: Any]) throws(TokenizerLoadError) -> PreTokenizer {
        switch type(j) {
        case "Sequence":
            guard let all = j["pretokenizers"] as? [[String: Any]] else { throw TokenizerLoadError("a Sequence pre-tokenizer has no pretokenizers") }
            var list: [PreTokenizer] = []
            for p in all { list.append(try preTokenizer(p)) }
            return .sequence(list)
        case "Metaspace":
            let (r, scheme) = try metaspace(j)
            return .metaspace(replacement: r, prependScheme: scheme, split: (j["split"] as? Bool) ?? true)
        case "WhitespaceSplit": return .whitespaceSplit
        case "Punctuation":
            let name = (j["behavior"] as? String) ?? "isolated"
            guard let behavior = DelimiterBehavior(rawValue: name.lowercased()) ?? DelimiterBehavior(rawValue: snake(name)) else {
                throw TokenizerLoadError("Punctuation behavior \(name) is unknown")
            }
            return .punctuation(behavior)
        case let other: throw TokenizerLoadError("pre-tokenizer \(other) is not supported")
        }
    }

    /// `MergedWithNext` (the serialized spelling) to `merged_with_next`.
    private static func snake(_ s: String) -> String {
        var out = ""
        for (i, c) in s.enumerated() {
            if c.isUppercase, i > 0 { out.append("_") }
            out.append(contentsOf: c.lowercased())
        }
        return out
    }

    static func decoder(_ j: [String: Any]) throws(TokenizerLoadError) -> TokenDecoder {
        switch type(j) {
        case "Sequence":
            guard let all = j["decoders"] as? [[String: Any]] else { throw TokenizerLoadError("a Sequence decoder has no decoders") }
            var list: [TokenDecoder] = []
            for d in all { list.append(try decoder(d)) }
            return .sequence(list)
        case "Metaspace":
            let (r, scheme) = try metaspace(j)
            return .metaspace(replacement: r, prependScheme: scheme)
        case "Replace": return .replace(try replacement(j), with: (j["content"] as? String) ?? "")
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            guard let c = (j["content"] as? String)?.unicodeScalars, c.count == 1 else { throw TokenizerLoadError("a Strip decoder needs one content character") }
            return .strip(content: c.first!, start: (j["start"] as? Int) ?? 0, stop: (j["stop"] as? Int) ?? 0)
        case let other: throw TokenizerLoadError("decoder \(other) is not supported")
        }
    }

    /// The ids before and after `$A` in a TemplateProcessing's `single` template (none without a post-processor).
    static func template(_ j: [String: Any]?) throws(TokenizerLoadError) -> ([Int], [Int]) {
        guard let j else { return ([], []) }
        guard type(j) == "TemplateProcessing" else { throw TokenizerLoadError("post-processor \(type(j)) is not supported") }
        guard let single = j["single"] as? [[String: Any]] else { throw TokenizerLoadError("TemplateProcessing has no single template") }
        let specials = (j["special_tokens"] as? [String: Any]) ?? [:]
        var before: [Int] = [], after: [Int] = []
        var seenSequence = false
        for item in single {
            if item["Sequence"] != nil {
                guard !seenSequence else { throw TokenizerLoadError("the single template has two sequences") }
                seenSequence = true
            } else if let token = item["SpecialToken"] as? [String: Any], let name = token["id"] as? String {
                guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int] else {
                    throw TokenizerLoadError("the template's special token \(name) has no ids")
                }
                if seenSequence { after += ids } else { before += ids }
            } else {
                throw TokenizerLoadError("a template item is neither Sequence nor SpecialToken")
            }
        }
        guard seenSequence else { throw TokenizerLoadError("the single template has no sequence") }
        return (before, after)
    }
}

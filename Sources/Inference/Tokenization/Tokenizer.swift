import Foundation

public struct TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "tokenizer \(path): \(message)" }
}

/// A problem in tokenizer data, before the loader knows which file to blame.
struct TokenizerLoadError: Error, Sendable {
    var message: String
    init(_ message: String) { self.message = message }
}

/// A Hugging Face fast tokenizer as transformers 4.46 runs it: the pipeline `tokenizer.json` declares
/// (added tokens, normalizer, pre-tokenizer, Unigram model, template, decoder), or, when there is no
/// `tokenizer.json`, the pipeline transformers' converter builds from `spm.model` / `spiece.model`
/// (see `SentencePieceConversion`). Immutable after loading, so encoding is thread-safe.
public final class Tokenizer: Sendable {
    public enum Family: String, Sendable {
        case debertaV2 = "deberta-v2"
        case t5
    }

    public enum TruncationSide: Sendable { case right, left }

    public struct AddedToken: Sendable, Equatable {
        public var content: String
        public var id: Int
        /// Special tokens are skipped when decoding; non-special ones (PairRM's markers) are ordinary text.
        public var special: Bool
    }

    /// Where the pipeline came from, for logs and errors.
    public enum Source: String, Sendable {
        case tokenizerJSON = "tokenizer.json"
        case sentencePieceConversion = "converted from the SentencePiece model"
    }

    public let family: Family
    public let source: Source
    public let addedTokens: [AddedToken]
    public let cleanUpSpaces: Bool
    /// Token ids the template puts around a single sequence.
    public let prefixIds: [Int]
    public let suffixIds: [Int]

    let model: UnigramModel
    let added: AddedVocabulary
    let normalizer: TextNormalizer?
    let preTokenizer: PreTokenizer?
    let decoder: TokenDecoder?

    /// The number of ids the tokenizer can produce (pieces plus added tokens).
    public var count: Int { max(model.pieces.count, (addedTokens.map(\.id).max() ?? -1) + 1) }

    init(family: Family, source: Source, pipeline: TokenizerPipeline, cleanUpSpaces: Bool) {
        self.family = family
        self.source = source
        model = pipeline.model
        normalizer = pipeline.normalizer
        preTokenizer = pipeline.preTokenizer
        decoder = pipeline.decoder
        added = AddedVocabulary(tokens: pipeline.addedTokens, normalizer: pipeline.normalizer)
        addedTokens = pipeline.addedTokens.map { AddedToken(content: $0.content, id: $0.id, special: $0.special) }.sorted { $0.id < $1.id }
        prefixIds = pipeline.prefixIds
        suffixIds = pipeline.suffixIds
        self.cleanUpSpaces = cleanUpSpaces
    }

    public func id(of token: String) -> Int? {
        added.tokens.last(where: { $0.content == token })?.id ?? model.id(of: token)
    }

    // MARK: Encoding

    /// Ids for `text`. With `addSpecialTokens`, the template is applied and `maxLength` counts it.
    /// `matchNonSpecialAddedTokens: false` leaves strings such as `<|source|>` in user text as text.
    public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int? = nil,
                       truncation: TruncationSide = .right, matchNonSpecialAddedTokens: Bool = true) throws -> [Int] {
        var ids = try encodeBody(text, matchNonSpecial: matchNonSpecialAddedTokens)
        let extra = addSpecialTokens ? prefixIds.count + suffixIds.count : 0
        if let maxLength, ids.count + extra > maxLength {
            let keep = max(0, maxLength - extra)
            ids = truncation == .right ? Array(ids.prefix(keep)) : Array(ids.suffix(keep))
        }
        return addSpecialTokens ? prefixIds + ids + suffixIds : ids
    }

    private func encodeBody(_ text: String, matchNonSpecial: Bool) throws -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 2 + 4)
        for segment in added.split(text, normalizedPass: false, atInputStart: true, matchNonSpecial: matchNonSpecial) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let raw, let atStart):
                let normalized = normalizer?.normalize(raw) ?? raw
                // A stripped leading space moves the stretch off the input's first byte in the reference's offsets.
                let startMoved = normalizer?.stripsLeadingWhitespace == true && raw.unicodeScalars.first?.properties.isWhitespace == true
                for inner in added.split(normalized, normalizedPass: true, atInputStart: atStart, matchNonSpecial: matchNonSpecial) {
                    switch inner {
                    case .token(let id):
                        ids.append(id)
                    case .text(let stretch, let innerStart):
                        let piece = TextPiece(text: stretch, atInputStart: innerStart && !(startMoved && stretch != normalized))
                        for word in preTokenizer?.split([piece]) ?? [piece] where !model.encode(Array(word.text.utf8), into: &ids) {
                            throw TokenizerError(path: source.rawValue, message: "\(word.text.debugDescription) has a character no piece covers, and the model has no unk_id")
                        }
                    }
                }
            }
        }
        return ids
    }

    // MARK: Decoding

    /// Text for `ids`, as transformers' fast `decode`: added tokens by content, other ids by piece, special
    /// tokens skipped when asked, the decoder's chain, then `clean_up_tokenization` when the config asks for it.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var pieces: [String] = []
        pieces.reserveCapacity(ids.count)
        for id in ids {
            guard let piece = added.token(id: id)?.content ?? model.piece(id) else { continue }
            if skipSpecialTokens && added.specialContents.contains(piece) { continue }
            pieces.append(piece)
        }
        var out = decoder?.decode(pieces) ?? pieces.joined(separator: " ")
        guard cleanUpSpaces else { return out }
        for (from, to) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            out = TextReplacement.literal(Array(from.utf8)).replaceAll(in: out, with: to)
        }
        return out
    }

    // MARK: Loading

    /// Loads a tokenizer directory: `tokenizer.json` when present; otherwise `spm.model` (DeBERTa-v2/v3) or
    /// `spiece.model` (T5) with `tokenizer_config.json`, `added_tokens.json` and `special_tokens_map.json`,
    /// converted as transformers 4.46 converts them.
    public static func load(directory: String) throws -> Tokenizer {
        let files = try TokenizerDirectory(directory)
        let pipeline: TokenizerPipeline
        let source: Source
        let family = try files.family()
        if let json = files.tokenizerJSON, let data = files.tokenizerJSONData {
            pipeline = try TokenizerPipeline(tokenizerJSON: json, data: data, path: files.path("tokenizer.json"))
            source = .tokenizerJSON
        } else {
            pipeline = try SentencePieceConversion(files: files, family: family).pipeline()
            source = .sentencePieceConversion
        }
        // transformers 4.46: `clean_up_tokenization_spaces` is false unless the config sets it.
        let cleanUp = (files.config["clean_up_tokenization_spaces"] as? Bool) ?? false
        return Tokenizer(family: family, source: source, pipeline: pipeline, cleanUpSpaces: cleanUp)
    }
}

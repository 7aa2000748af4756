import Foundation

/// The fast tokenizer transformers 4.46 builds when a directory has no `tokenizer.json`: the slow
/// tokenizer's SentencePiece model through `DebertaV2Converter` or `T5Converter` (both `SpmConverter`s),
/// then the added tokens of `tokenizer_config.json` / `added_tokens.json` / `special_tokens_map.json`.
struct SentencePieceConversion {
    let files: TokenizerDirectory
    let family: Tokenizer.Family

    private var modelFile: String { family == .t5 ? "spiece.model" : "spm.model" }

    func pipeline() throws -> TokenizerPipeline {
        let path = files.path(modelFile)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError(path: path, message: "missing; the \(family.rawValue) tokenizer needs its SentencePiece model (or a tokenizer.json)")
        }
        do {
            return try build(SentencePieceModelProto(bytes: Array(data)))
        } catch let error as TokenizerLoadError {
            throw TokenizerError(path: path, message: error.message)
        }
    }

    private func flag(_ key: String, _ fallback: Bool) -> Bool { (files.config[key] as? Bool) ?? fallback }

    private func build(_ proto: SentencePieceModelProto) throws -> TokenizerPipeline {
        guard proto.modelType == 1 else {
            throw TokenizerLoadError("model_type \(proto.modelType) is not Unigram; only Unigram SentencePiece models are supported")
        }
        // Vocabulary: the pieces with their f32 scores; T5 appends its sentinels counted down, scored 0.
        var vocabulary = proto.pieces.map { (piece: $0.piece, score: Double($0.score)) }
        let extraIds = family == .t5 ? ((files.config["extra_ids"] as? Int) ?? 100) : 0
        for i in stride(from: extraIds - 1, through: 0, by: -1) { vocabulary.append(("<extra_id_\(i)>", 0)) }
        // Both converters leave byte fallback off (`handle_byte_fallback = False`).
        let model = try UnigramModel(vocabulary: vocabulary, unknownId: proto.unknownId, byteFallback: false)

        let charsmap = proto.precompiledCharsmap.isEmpty ? nil : TextNormalizer.precompiled(try PrecompiledCharsmap(proto.precompiledCharsmap))
        let normalizer: TextNormalizer
        switch family {
        case .debertaV2:
            normalizer = .sequence((flag("do_lower_case", false) ? [.lowercase] : []) + [.strip(left: true, right: true)]
                                   + (charsmap.map { [$0] } ?? []) + [.replace(.run(of: " ", atLeast: 2), with: " ")])
        case .t5:
            normalizer = .sequence((charsmap.map { [$0] } ?? []) + [.strip(left: false, right: true), .replace(.run(of: " ", atLeast: 2), with: "▁")])
        }
        // `_get_prepend_scheme`: add_prefix_space (default true) gives `always`, or `first` for a tokenizer
        // whose `legacy` is false (T5Tokenizer has the attribute, default true; DebertaV2Tokenizer has none).
        let scheme: PrependScheme
        if !flag("add_prefix_space", true) {
            scheme = .never
        } else if family == .t5, !flag("legacy", true) {
            scheme = .first
        } else {
            scheme = .always
        }
        var preTokenizer = PreTokenizer.metaspace(replacement: "▁", prependScheme: scheme, split: true)
        if family == .debertaV2 {
            preTokenizer = .sequence((flag("split_by_punct", false) ? [.punctuation(.isolated)] : []) + [preTokenizer])
        }

        let added = try addedTokens(proto, model: model)
        func required(_ content: String) throws -> Int {
            if let id = added.last(where: { $0.content == content })?.id ?? model.id(of: content) { return id }
            throw TokenizerLoadError("the \(family.rawValue) template needs \(content), which is not in the vocabulary")
        }
        let prefix = family == .debertaV2 ? [try required("[CLS]")] : []
        let suffix = family == .debertaV2 ? [try required("[SEP]")] : [try required("</s>")]
        return TokenizerPipeline(model: model, normalizer: normalizer, preTokenizer: preTokenizer,
                                 decoder: .metaspace(replacement: "▁", prependScheme: scheme), addedTokens: added,
                                 prefixIds: prefix, suffixIds: suffix)
    }

    /// Control (special) and user-defined pieces first, as the converter adds them; then the config's
    /// `added_tokens_decoder` in id order (or, for older directories, `added_tokens.json`, special when the
    /// special-tokens map names them); then any special token not added yet. A content already added keeps
    /// its first definition, as in `tokenizers`.
    private func addedTokens(_ proto: SentencePieceModelProto, model: UnigramModel) throws -> [AddedVocabulary.Token] {
        var tokens: [AddedVocabulary.Token] = []
        var contents: Set<String> = []
        func add(_ token: AddedVocabulary.Token) {
            guard !token.content.isEmpty, !contents.contains(token.content) else { return }
            contents.insert(token.content)
            tokens.append(token)
        }
        for (id, p) in proto.pieces.enumerated() where p.type == .control || p.type == .userDefined {
            add(.init(content: p.piece, id: id, special: p.type == .control, normalized: false))
        }
        let specials = specialTokenContents()
        var nextId = model.pieces.count
        func id(for content: String, declared: Int?) -> Int {
            if let id = model.id(of: content) { return id }
            if let declared { return declared }
            defer { nextId += 1 }
            return max(nextId, (tokens.map(\.id).max() ?? -1) + 1)
        }
        if let decoder = files.config["added_tokens_decoder"] as? [String: Any] {
            let entries = try decoder.map { key, value -> (Int, [String: Any]) in
                guard let id = Int(key), let entry = value as? [String: Any], entry["content"] is String else {
                    throw TokenizerLoadError("tokenizer_config.json: added_tokens_decoder entry \(key) is malformed")
                }
                return (id, entry)
            }.sorted { $0.0 < $1.0 }
            for (declared, entry) in entries {
                let content = entry["content"] as! String
                let special = (entry["special"] as? Bool) ?? specials.contains(content)
                add(.init(content: content, id: id(for: content, declared: declared), special: special || specials.contains(content),
                          normalized: (entry["normalized"] as? Bool) ?? !special, lstrip: (entry["lstrip"] as? Bool) ?? false,
                          rstrip: (entry["rstrip"] as? Bool) ?? false, singleWord: (entry["single_word"] as? Bool) ?? false))
            }
        } else if let file = files.addedTokensFile {
            for (content, value) in file.compactMap({ k, v in (v as? Int).map { (k, $0) } }).sorted(by: { $0.1 < $1.1 }) {
                let special = specials.contains(content)
                add(.init(content: content, id: id(for: content, declared: value), special: special, normalized: !special))
            }
        }
        var remaining = specials.subtracting(contents).sorted()
        if family == .t5 {
            // The T5 sentinels are special tokens of the slow tokenizer even when no file lists them.
            let sentinels = (0..<((files.config["extra_ids"] as? Int) ?? 100)).map { "<extra_id_\($0)>" }
            remaining = sentinels.filter { !contents.contains($0) } + remaining.filter { !sentinels.contains($0) }
        }
        // DebertaV2Tokenizer wraps its unk token as `AddedToken(unk, normalized=True, special=True)`; every other
        // special token named only as a string becomes `AddedToken(token, special=True)`, which is not normalized.
        let unknown = family == .debertaV2 ? specialTokenContent("unk_token") : nil
        for content in remaining {
            add(.init(content: content, id: id(for: content, declared: nil), special: true, normalized: content == unknown))
        }
        return tokens
    }

    /// A special token named by the config, else by the special-tokens map (as a string or `{"content": ...}`).
    private func specialTokenContent(_ key: String) -> String? {
        for source in [files.config, files.specialTokensMap ?? [:]] {
            if let s = source[key] as? String { return s }
            if let d = source[key] as? [String: Any], let s = d["content"] as? String { return s }
        }
        return nil
    }

    /// Every special token the config and the special-tokens map name.
    private func specialTokenContents() -> Set<String> {
        var out: Set<String> = []
        func collect(_ value: Any?) {
            if let s = value as? String { out.insert(s) }
            if let d = value as? [String: Any], let s = d["content"] as? String { out.insert(s) }
            if let list = value as? [Any] { list.forEach(collect) }
        }
        let keys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "additional_special_tokens"]
        for source in [files.config, files.specialTokensMap ?? [:]] {
            for key in keys { collect(source[key]) }
        }
        return out
    }
}

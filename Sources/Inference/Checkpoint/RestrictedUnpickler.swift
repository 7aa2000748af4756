/// Reads the pickle of a PyTorch state dict without executing anything. It understands the opcodes of
/// protocols 2–4 that `torch.save` emits for dicts of tensors, and exactly these globals, each mapped to
/// our own code: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`,
/// and the `torch.*Storage` dtype markers. Anything else is refused with the name of what was asked for.
struct RestrictedUnpickler {
    final class Container {
        var list: [PickleValue] = []
        var dict: [(PickleValue, PickleValue)] = []
    }

    indirect enum PickleValue {
        case none
        case bool(Bool)
        case int(Int)
        case float(Double)
        case string(String)
        case bytes
        case tuple([PickleValue])
        case list(Container)
        case dict([(PickleValue, PickleValue)])
        case dictRef(Container)
        case global(String)
        case storage(key: String, dtype: StoredDType)
        case tensor(TorchCheckpoint.TensorRef)
        case mark

        var kind: String {
            switch self {
            case .none: "None"
            case .bool: "a bool"
            case .int: "an int"
            case .float: "a float"
            case .string: "a string"
            case .bytes: "bytes"
            case .tuple: "a tuple"
            case .list: "a list"
            case .dict, .dictRef: "a dict"
            case let .global(name): name
            case .storage: "a storage"
            case .tensor: "a tensor"
            case .mark: "a mark"
            }
        }
    }

    static let storageTypes: [String: StoredDType] = [
        "torch.FloatStorage": .f32, "torch.HalfStorage": .f16, "torch.BFloat16Storage": .bf16,
        "torch.DoubleStorage": .f64, "torch.LongStorage": .i64, "torch.IntStorage": .i32,
    ]
    static let callables: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    ]

    let path: String
    let bytes: UnsafeRawBufferPointer
    var position = 0
    var stack: [PickleValue] = []
    var memo: [Int: PickleValue] = [:]

    init(path: String, bytes: UnsafeRawBufferPointer) {
        self.path = path
        self.bytes = bytes
    }

    func malformed(_ reason: String) -> CheckpointError { .malformed(path: path, reason: "pickle: \(reason)") }
    func refused(_ reason: String) -> CheckpointError { .refusedPickle(path: path, reason: reason) }

    mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw malformed("ends without STOP (truncated)") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, position + n <= bytes.count else { throw malformed("ends inside a value (truncated)") }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    mutating func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let raw = try take(MemoryLayout<T>.size)
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: raw) }
        return T(littleEndian: v)
    }

    mutating func line() throws -> String {
        var out: [UInt8] = []
        while true {
            let b = try byte()
            if b == 0x0A { break }
            out.append(b)
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw malformed("stack underflow") }
        return v
    }

    mutating func popToMark() throws -> [PickleValue] {
        var items: [PickleValue] = []
        while true {
            let v = try pop()
            if case .mark = v { return items.reversed() }
            items.append(v)
        }
    }

    mutating func utf8(_ n: Int) throws -> PickleValue { .string(String(decoding: try take(n), as: UTF8.self)) }

    func global(_ module: String, _ name: String) throws -> PickleValue {
        let full = module + "." + name
        if Self.storageTypes[full] != nil || Self.callables.contains(full) { return .global(full) }
        throw refused("pickle global \(full) is not allowed (a state dict needs only OrderedDict, torch tensor rebuilders and storage types)")
    }

    mutating func load() throws -> PickleValue {
        while true {
            let op = try byte()
            switch op {
            case 0x80: _ = try byte()                                   // PROTO
            case 0x95: _ = try take(8)                                  // FRAME
            case 0x2E: return try pop()                                 // STOP
            case 0x7D: stack.append(.dictRef(Container()))              // EMPTY_DICT
            case 0x5D: stack.append(.list(Container()))                 // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                         // EMPTY_TUPLE
            case 0x28: stack.append(.mark)                              // MARK
            case 0x4E: stack.append(.none)                              // NONE
            case 0x88: stack.append(.bool(true))                        // NEWTRUE
            case 0x89: stack.append(.bool(false))                       // NEWFALSE
            case 0x4A: stack.append(.int(Int(try le(Int32.self))))      // BININT
            case 0x4B: stack.append(.int(Int(try byte())))              // BININT1
            case 0x4D: stack.append(.int(Int(try le(UInt16.self))))     // BININT2
            case 0x8A:                                                  // LONG1
                let n = Int(try byte())
                guard n <= 8 else { throw malformed("integer of \(n) bytes") }
                let raw = try take(n)
                var v: Int = 0
                for i in 0..<n { v |= Int(raw[i]) << (8 * i) }
                if n > 0 && n < 8 && raw[n - 1] & 0x80 != 0 { v -= 1 << (8 * n) }
                stack.append(.int(v))
            case 0x47:                                                  // BINFLOAT (big-endian)
                let raw = try take(8)
                var bits: UInt64 = 0
                for b in raw { bits = bits << 8 | UInt64(b) }
                stack.append(.float(Double(bitPattern: bits)))
            case 0x58: stack.append(try utf8(Int(try le(UInt32.self))))   // BINUNICODE
            case 0x8C: stack.append(try utf8(Int(try byte())))            // SHORT_BINUNICODE
            case 0x8D: stack.append(try utf8(Int(try le(UInt64.self))))   // BINUNICODE8
            case 0x43: _ = try take(Int(try byte())); stack.append(.bytes)          // SHORT_BINBYTES
            case 0x42: _ = try take(Int(try le(UInt32.self))); stack.append(.bytes) // BINBYTES
            case 0x74: stack.append(.tuple(try popToMark()))            // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))           // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
            case 0x71: memo[Int(try byte())] = stack.last               // BINPUT
            case 0x72: memo[Int(try le(UInt32.self))] = stack.last      // LONG_BINPUT
            case 0x94: memo[memo.count] = stack.last                    // MEMOIZE
            case 0x68, 0x6A:                                            // BINGET, LONG_BINGET
                let key = op == 0x68 ? Int(try byte()) : Int(try le(UInt32.self))
                guard let v = memo[key] else { throw malformed("memo \(key) is undefined") }
                stack.append(v)
            case 0x73:                                                  // SETITEM
                let value = try pop(), key = try pop()
                guard case let .dictRef(d) = stack.last else { throw malformed("SETITEM on \(stack.last?.kind ?? "nothing")") }
                d.dict.append((key, value))
            case 0x75:                                                  // SETITEMS
                let items = try popToMark()
                guard case let .dictRef(d) = stack.last, items.count % 2 == 0 else { throw malformed("SETITEMS on \(stack.last?.kind ?? "nothing")") }
                for i in stride(from: 0, to: items.count, by: 2) { d.dict.append((items[i], items[i + 1])) }
            case 0x61:                                                  // APPEND
                let v = try pop()
                guard case let .list(l) = stack.last else { throw malformed("APPEND on \(stack.last?.kind ?? "nothing")") }
                l.list.append(v)
            case 0x65:                                                  // APPENDS
                let items = try popToMark()
                guard case let .list(l) = stack.last else { throw malformed("APPENDS on \(stack.last?.kind ?? "nothing")") }
                l.list.append(contentsOf: items)
            case 0x63:                                                  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93:                                                  // STACK_GLOBAL
                guard case let .string(name) = try pop(), case let .string(module) = try pop() else {
                    throw malformed("STACK_GLOBAL without module and name strings")
                }
                stack.append(try global(module, name))
            case 0x51:                                                  // BINPERSID
                stack.append(try persistent(try pop()))
            case 0x52:                                                  // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args))
            case 0x62:                                                  // BUILD: attributes (OrderedDict._metadata) are dropped
                _ = try pop()
                guard let top = stack.last, case .dictRef = top else {
                    throw refused("BUILD on \(stack.last?.kind ?? "nothing") (only a state dict's metadata may be set)")
                }
            default:
                throw refused("pickle opcode 0x\(String(op, radix: 16)) at byte \(position - 1) is not used by state dicts")
            }
        }
    }

    /// `('storage', <storage type>, key, location, numel)` → a storage entry of the archive.
    func persistent(_ id: PickleValue) throws -> PickleValue {
        guard case let .tuple(parts) = id, parts.count >= 3, case .string("storage") = parts[0],
              case let .global(type) = parts[1], let dtype = Self.storageTypes[type], case let .string(key) = parts[2]
        else { throw refused("persistent id \(id.kind) is not a tensor storage") }
        return .storage(key: key, dtype: dtype)
    }

    func reduce(_ callable: PickleValue, _ args: PickleValue) throws -> PickleValue {
        guard case let .global(name) = callable, Self.callables.contains(name), case let .tuple(a) = args else {
            throw refused("REDUCE of \(callable.kind) is not allowed")
        }
        switch name {
        case "collections.OrderedDict":
            return .dictRef(Container())
        case "torch._utils._rebuild_tensor_v2":
            guard a.count >= 4, case let .storage(key, dtype) = a[0], case let .int(offset) = a[1],
                  case let .tuple(size) = a[2], case let .tuple(stride) = a[3] else {
                throw malformed("_rebuild_tensor_v2 with unexpected arguments")
            }
            func ints(_ v: [PickleValue]) throws -> [Int] {
                try v.map { guard case let .int(i) = $0, i >= 0 else { throw malformed("tensor size/stride is not a natural number") }; return i }
            }
            return .tensor(.init(storageKey: key, dtype: dtype, storageOffset: offset, shape: try ints(size), stride: try ints(stride)))
        default: // torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)
            guard let data = a.first, case .tensor = data else { throw malformed("_rebuild_parameter without a tensor") }
            return data
        }
    }
}

extension RestrictedUnpickler.PickleValue {
    /// Resolves dict references into plain key/value pairs at the top level.
    var asDict: [(RestrictedUnpickler.PickleValue, RestrictedUnpickler.PickleValue)]? {
        switch self {
        case let .dict(items): items
        case let .dictRef(c): c.dict
        default: nil
        }
    }
}

/// Which offsets of each partition may be committed when jobs finish out of order: a partition's
/// watermark advances over finished offsets only up to its lowest unfinished one, so a commit never
/// passes a job whose outcome is not stored. Offsets are registered in increasing order per partition
/// (the order the consumer delivers them); gaps between them (compacted or transaction-marker offsets)
/// were never delivered and hold nothing back.
///
/// `Item` is what the caller commits by (the Kafka message); a value type, guarded by its owner.
public struct OffsetWatermarks<Partition: Hashable, Item> {
    private struct Entry {
        let offset: Int64
        let item: Item
        var finished = false
    }

    /// Per partition: its registered, not yet committable entries in offset order, from `head` on.
    private struct Queue {
        var entries: [Entry] = []
        var head = 0
    }

    private var partitions: [Partition: Queue] = [:]

    public init() {}

    /// Offsets registered and not yet passed by their partition's watermark.
    public var pendingCount: Int { partitions.values.reduce(0) { $0 + $1.entries.count - $1.head } }

    /// Unfinished offsets of `partition`.
    public func unfinishedCount(_ partition: Partition) -> Int {
        guard let q = partitions[partition] else { return 0 }
        return q.entries[q.head...].filter { !$0.finished }.count
    }

    /// Starts tracking an offset. Registering one at or below the partition's newest registered offset
    /// (a redelivery after a rewind) forgets the entries from it on, which will be delivered again; the
    /// entries below it still hold the watermark back.
    public mutating func register(_ partition: Partition, offset: Int64, item: Item) {
        var q = partitions[partition] ?? Queue()
        while q.entries.count > q.head, let last = q.entries.last, last.offset >= offset { q.entries.removeLast() }
        if q.entries.count == q.head { q = Queue() }
        q.entries.append(Entry(offset: offset, item: item))
        partitions[partition] = q
    }

    /// Marks an offset finished (stored). Returns the item of the partition's new watermark — the highest
    /// offset all of whose registered predecessors are finished — when it advanced, else nil. Unknown
    /// offsets (of a dropped partition) are ignored.
    public mutating func finish(_ partition: Partition, offset: Int64) -> Item? {
        guard var q = partitions[partition] else { return nil }
        // Binary search over the live range; offsets are strictly increasing.
        var low = q.head, high = q.entries.count
        while low < high {
            let mid = (low + high) / 2
            if q.entries[mid].offset < offset { low = mid + 1 } else { high = mid }
        }
        guard low < q.entries.count, q.entries[low].offset == offset else { return nil }
        q.entries[low].finished = true
        var advanced: Item?
        while q.head < q.entries.count && q.entries[q.head].finished {
            advanced = q.entries[q.head].item
            q.head += 1
        }
        if q.head == q.entries.count {
            q = Queue()
        } else if q.head > 256 && q.head * 2 > q.entries.count {
            q.entries.removeFirst(q.head)
            q.head = 0
        }
        partitions[partition] = q
        return advanced
    }

    /// Forgets a partition (revoked or lost): nothing of it registered so far can commit any more.
    public mutating func drop(_ partition: Partition) {
        partitions[partition] = nil
    }

    /// Forgets every partition.
    public mutating func dropAll() {
        partitions = [:]
    }
}

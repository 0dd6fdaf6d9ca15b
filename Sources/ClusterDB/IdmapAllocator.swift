/// Picks uid/gid blocks for containers out of root's subordinate range: pure.
public enum IdmapAllocator {
    /// The lowest block start `rangeStart + k * block` whose `[start, start + block)`
    /// lies inside the range and overlaps no used block; nil when none is left.
    /// `used` are the starts of existing blocks of the same size (any order).
    public static func lowestFree(used: [Int64], rangeStart: Int64, rangeSize: Int64, block: Int64) -> Int64? {
        lowestFree(count: 1, used: used, rangeStart: rangeStart, rangeSize: rangeSize, block: block)?.first
    }

    /// The `count` lowest free `block`-aligned bases (one pass over the sorted used blocks: an overlapping
    /// used block pushes the candidate past it); nil when fewer are left.
    public static func lowestFree(count: Int, used: [Int64], rangeStart: Int64, rangeSize: Int64, block: Int64) -> [Int64]? {
        guard block > 0, rangeSize >= block else { return count == 0 ? [] : nil }
        let sorted = used.sorted()
        let rangeEnd = rangeStart + rangeSize
        var result: [Int64] = []
        result.reserveCapacity(count)
        var candidate = rangeStart
        var index = 0
        while result.count < count {
            while index < sorted.count, sorted[index] + block <= candidate { index += 1 }
            if index < sorted.count, sorted[index] < candidate + block {
                let pastIt = sorted[index] + block - rangeStart
                candidate = rangeStart + ((pastIt + block - 1) / block) * block
                continue
            }
            guard candidate + block <= rangeEnd else { return nil }
            result.append(candidate)
            candidate += block
        }
        return result
    }
}

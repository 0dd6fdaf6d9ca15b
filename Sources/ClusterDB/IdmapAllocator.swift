/// Picks uid/gid blocks for containers out of root's subordinate range: pure.
public enum IdmapAllocator {
    /// The lowest block start `rangeStart + k * block` whose `[start, start + block)`
    /// lies inside the range and overlaps no used block; nil when none is left.
    /// `used` are the starts of existing blocks of the same size (any order).
    public static func lowestFree(used: [Int64], rangeStart: Int64, rangeSize: Int64, block: Int64) -> Int64? {
        guard block > 0, rangeSize >= block else { return nil }
        let rangeEnd = rangeStart + rangeSize
        var candidate = rangeStart
        // Walk the used blocks in order; each one that overlaps the candidate pushes it past that block.
        for start in used.sorted() {
            if start + block <= candidate { continue }
            if start >= candidate + block { break }
            let pastIt = start + block - rangeStart
            candidate = rangeStart + ((pastIt + block - 1) / block) * block
        }
        return candidate + block <= rangeEnd ? candidate : nil
    }
}

/// Moves owners from one host id block to another while a tree is applied: a copy of an
/// instance gets a uid/gid block of its own, so every owner of the source's files
/// (`from ..< from + count`) becomes the same id in the copy's block (`to ..< to + count`).
/// Ids are also carried inside two xattrs, which are shifted too: POSIX ACLs (named users and
/// groups) and a version-3 file capability (its namespace root). Pure: no I/O.
public struct OwnerShift: Sendable, Equatable {
    public let from: UInt32
    public let to: UInt32
    public let count: UInt32

    /// Nil when either block does not fit in 32-bit ids or `count` is not positive.
    public init?(from: Int64, to: Int64, count: Int64) {
        guard count > 0, from >= 0, to >= 0, let f = UInt32(exactly: from), let t = UInt32(exactly: to), let c = UInt32(exactly: count),
              UInt64(f) + UInt64(c) - 1 <= UInt64(UInt32.max), UInt64(t) + UInt64(c) - 1 <= UInt64(UInt32.max) else { return nil }
        self.from = f
        self.to = t
        self.count = c
    }

    /// The id in the target block; nil when `id` is outside the source block.
    public func map(_ id: UInt32) -> UInt32? {
        guard id >= from, id - from < count else { return nil }
        return to + (id - from)
    }

    public var sourceRange: ClosedRange<UInt32> { from...(from + (count - 1)) }

    static let aclAccess = Array("system.posix_acl_access".utf8)
    static let aclDefault = Array("system.posix_acl_default".utf8)
    static let capability = Array("security.capability".utf8)

    /// The xattr's value with the ids it carries shifted; the value itself for xattrs that carry
    /// none. Nil when an id it carries is outside the source block, or an ACL or capability is
    /// malformed (the caller refuses the entry).
    public func xattr(name: [UInt8], value: [UInt8]) -> [UInt8]? {
        if name == Self.aclAccess || name == Self.aclDefault { return acl(value) }
        if name == Self.capability { return capabilityValue(value) }
        return value
    }

    /// Linux's xattr form of an ACL: a 4-byte version (2), then 8-byte entries of tag (u16),
    /// permissions (u16) and id (u32), little-endian; only named users (2) and groups (8) hold
    /// a real id.
    private func acl(_ value: [UInt8]) -> [UInt8]? {
        guard value.count >= 4, (value.count - 4) % 8 == 0, load32(value, 0) == 2 else { return nil }
        var out = value
        var at = 4
        while at < value.count {
            let tag = UInt16(value[at]) | UInt16(value[at + 1]) << 8
            if tag == 0x02 || tag == 0x08 {
                guard let shifted = map(load32(value, at + 4)) else { return nil }
                store32(&out, at + 4, shifted)
            }
            at += 8
        }
        return out
    }

    /// `vfs_ns_cap_data`: a version-3 capability (24 bytes, revision 0x03000000 in the top byte
    /// of its first word) names the uid that is root in the namespace it applies to.
    private func capabilityValue(_ value: [UInt8]) -> [UInt8]? {
        guard value.count >= 4 else { return nil }
        let revision = load32(value, 0) & 0xFF00_0000
        guard revision == 0x0300_0000 else { return value }
        guard value.count == 24, let root = map(load32(value, 20)) else { return nil }
        var out = value
        store32(&out, 20, root)
        return out
    }

    private func load32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    private func store32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) {
        for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
}

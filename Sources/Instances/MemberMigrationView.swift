import APITypes
import ClusterDB
import Foundation
import Migration

/// Members' migration capabilities as the database holds them (`MemberRow.migration`, JSON of
/// `MigrationCapabilities`) and as the API shows them (`MemberMigration`). Pure.
public enum MemberMigrationView {
    /// The capabilities a member published; nil when it published none, or nothing this build
    /// can read (the member republishes when its agent starts).
    public static func capabilities(of row: MemberRow) -> MigrationCapabilities? {
        guard let text = row.migration, let data = text.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode(MigrationCapabilities.self, from: data)
    }

    /// The JSON text `updateMemberMigration` stores (keys sorted: an unchanged probe writes the
    /// same text, so a restart with nothing new changes no row).
    public static func encode(_ capabilities: MigrationCapabilities) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Plain structs of numbers, booleans and strings: encoding cannot fail.
        return String(decoding: (try? encoder.encode(capabilities)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// What `GET /1.0/cluster/members/NAME` shows for `member`: each mode on it, and for every
    /// other member of `members` whether a live move from `member` to it is possible.
    public static func describe(_ member: MemberRow, among members: [MemberRow]) -> MemberMigration {
        let mine = capabilities(of: member)
        var modes: [String: MigrationModeAvailability] = [:]
        for mode in MigrationMode.allCases {
            let why = MoveModeRule.unavailability(of: mode, on: mine)
            modes[mode.rawValue] = MigrationModeAvailability(available: why == nil, reason: why)
        }
        var moves: [String: LiveMoveAvailability] = [:]
        for other in members where other.id != member.id {
            moves[other.name] = liveMove(from: member, mine, to: other)
        }
        return MemberMigration(criuVersion: mine?.criu?.version.description, modes: modes, liveMoves: moves)
    }

    /// Whether a live move from `source` to `target` would be planned now (with no mode asked
    /// for): the target's state, then `MoveModeRule`.
    static func liveMove(from source: MemberRow, _ capabilities: MigrationCapabilities?, to target: MemberRow) -> LiveMoveAvailability {
        switch target.state {
        case .offline: return LiveMoveAvailability(possible: false, reason: "member \(target.name) is offline")
        case .evacuated: return LiveMoveAvailability(possible: false, reason: "member \(target.name) is evacuated")
        default: break
        }
        guard let capabilities else {
            return LiveMoveAvailability(possible: false, reason: "member \(source.name) has not published its migration capabilities")
        }
        switch MoveModeRule.decide(method: .live, requested: nil, source: capabilities, target: Self.capabilities(of: target),
                                   sourceName: source.name, targetName: target.name) {
        case .use(let mode): return LiveMoveAvailability(possible: true, mode: mode.rawValue)
        case .refuse(let why): return LiveMoveAvailability(possible: false, reason: why)
        case .noMemory: return LiveMoveAvailability(possible: false, reason: "not a live move")
        }
    }
}

extension InstanceLifecycle {
    /// What this member can do for a live move: its CRIU probe (cached after the first), or why
    /// it has no usable CRIU. `missingReason` says why no checkpointer was made, when known.
    public func migrationCapabilities(missingReason: String? = nil) async -> MigrationCapabilities {
        guard let checkpointer = context.checkpointer else {
            return .withoutCRIU(missingReason ?? "no criu found on member \(context.member.name)")
        }
        do {
            return .probed(try await checkpointer.features())
        } catch {
            return .withoutCRIU("probing criu failed: \(error)")
        }
    }

    /// Writes this member's capabilities to its row, when they differ from what it holds.
    /// Returns whether the row changed.
    @discardableResult
    public func publishMigrationCapabilities(_ capabilities: MigrationCapabilities) async throws -> Bool {
        let (id, text) = (context.member.id, MemberMigrationView.encode(capabilities))
        return try await context.db.transaction { tx in try tx.updateMemberMigration(id: id, migration: text) }
    }
}

import Dqlite

/// A move of an instance between members, as the database holds it while it runs.
public struct InstanceMoveRow: Sendable, Equatable {
    public var project: String
    public var name: String
    /// The member that owns the instance until the move commits.
    public var sourceID: Int64
    public var targetID: Int64
    public var token: String

    public init(project: String, name: String, sourceID: Int64, targetID: Int64, token: String) {
        self.project = project
        self.name = name
        self.sourceID = sourceID
        self.targetID = targetID
        self.token = token
    }
}

/// The three writes that make a move safe: begin (the source claims the move), commit (the
/// target takes the instance: the point of no return) and abort (the source calls it off).
/// Commit and abort both require the token, so whichever reaches the leader first wins and the
/// other learns it lost: the instance is never owned by both ends, nor by neither.
extension Transaction {
    /// Marks a move of the instance from `sourceID` to `targetID`. False when the instance is
    /// not on `sourceID` or another move holds it.
    public func beginInstanceMove(name: String, project: String = "default", from sourceID: Int64, to targetID: Int64,
                                  token: String) throws -> Bool {
        try exec("""
            UPDATE instances SET move_token = ?, move_target = ?
            WHERE project = ? AND name = ? AND member_id = ? AND move_token IS NULL
            """, .text(token), .integer(targetID), .text(project), .text(name), .integer(sourceID)).rowsAffected == 1
    }

    /// Hands the instance to the move's target. False when the move was called off (or never was).
    public func commitInstanceMove(name: String, project: String = "default", token: String, to targetID: Int64) throws -> Bool {
        try exec("""
            UPDATE instances SET member_id = move_target, move_token = NULL, move_target = NULL
            WHERE project = ? AND name = ? AND move_token = ? AND move_target = ?
            """, .text(project), .text(name), .text(token), .integer(targetID)).rowsAffected == 1
    }

    /// Calls the move off. False when it is no longer pending: committed (see the instance's
    /// member) or aborted before.
    public func abortInstanceMove(name: String, project: String = "default", token: String) throws -> Bool {
        try exec("""
            UPDATE instances SET move_token = NULL, move_target = NULL
            WHERE project = ? AND name = ? AND move_token = ?
            """, .text(project), .text(name), .text(token)).rowsAffected == 1
    }

    /// The pending move of an instance, if any.
    public func instanceMove(name: String, project: String = "default") throws -> InstanceMoveRow? {
        let rows = try query("""
            SELECT project, name, member_id, move_target, move_token FROM instances
            WHERE move_token IS NOT NULL AND project = ? AND name = ?
            """, .text(project), .text(name))
        return try rows.rows.first.map { values in
            let r = Row(values: values, table: "instances")
            return InstanceMoveRow(project: try r.text(0, "project"), name: try r.text(1, "name"), sourceID: try r.int(2, "member_id"),
                                   targetID: try r.int(3, "move_target"), token: try r.text(4, "move_token"))
        }
    }
}

import Dqlite

/// A copy of an instance is inserted as a new row holding a pending move to its own member
/// (`beginInstanceMove` with the same member at both ends): its name, id block and room on the
/// member are taken while the files are copied, and nothing moves or claims it meanwhile. The
/// member that made the files commits it (`commitInstanceMove`); a copy that fails, or whose
/// maker died, is removed with its token (`discardPendingCopy`), so commit and discard cannot
/// both win.
extension Transaction {
    /// Removes the row of a copy still pending with `token`. False when it was committed (or is
    /// gone already).
    @discardableResult
    public func discardPendingCopy(name: String, project: String = "default", token: String) throws -> Bool {
        try exec("DELETE FROM instances WHERE project = ? AND name = ? AND move_token = ?",
                 .text(project), .text(name), .text(token)).rowsAffected == 1
    }
}

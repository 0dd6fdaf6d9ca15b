import Foundation
import Glibc
import Runtime
import Testing
@testable import Migration

/// Whether the tests that run the real CRIU can run here.
///
/// Run by hand (`swift test`), a host without root, busybox, the helper or a working CRIU skips
/// them, and the test runner reports each skip with its reason. `make test` installs CRIU
/// first and sets LXD_SWIFT_REQUIRE_CRIU=1: then nothing is skipped, and a missing or broken
/// prerequisite fails the test that needed it, with what is missing.
enum CRIUHost {
    static let required = ProcessInfo.processInfo.environment["LXD_SWIFT_REQUIRE_CRIU"] == "1"

    /// The condition of an `.enabled(if:)` trait of a CRIU test.
    static func runs(if met: Bool) -> Bool { met || required }

    static var installed: Bool { access(CRIU.installedPath, X_OK) == 0 }

    static var helperPath: String? {
        if let p = ProcessInfo.processInfo.environment["LXD_START"] { return p }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("lxd-start").path
            if access(candidate, X_OK) == 0 { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// Why real containers cannot be checkpointed here, or nil.
    static var containersMissing: String? {
        if getuid() != 0 { return "needs root" }
        if access("/bin/busybox", X_OK) != 0 { return "needs /bin/busybox (busybox-static)" }
        if helperPath == nil { return "lxd-start is not built next to the tests (swift build --build-tests) and LXD_START is unset" }
        if access(CRIU.installedPath, X_OK) != 0 { return "no criu at \(CRIU.installedPath); run scripts/install-criu" }
        return nil
    }

    struct Unavailable: Error, CustomStringConvertible {
        let description: String
    }

    /// Inside a test that its traits let run: nothing when `missing` is nil; else a failure when
    /// CRIU is required, and a skip (cancellation, with the reason) when it is not.
    static func require(_ missing: String?, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard let missing else { return }
        if required {
            throw Unavailable(description: "\(missing) (LXD_SWIFT_REQUIRE_CRIU=1: `make test` needs every CRIU test to run)")
        }
        try Test.cancel(Comment(rawValue: missing), sourceLocation: sourceLocation)
    }

    /// The CRIU to use, after `criu check` passed: a host whose kernel CRIU cannot work with
    /// skips (by hand) or fails (`make test`) here, with criu's own words.
    static func usableCRIU(sourceLocation: SourceLocation = #_sourceLocation) async throws -> CRIU {
        try require(getuid() != 0 ? "needs root to checkpoint processes" : nil, sourceLocation: sourceLocation)
        let criu: CRIU
        do { criu = try CRIU.locate() } catch {
            try require("\(error)", sourceLocation: sourceLocation)
            throw error
        }
        try require(await RealCRIUTests.unusable(criu), sourceLocation: sourceLocation)
        return criu
    }
}

import Foundation
import Logging
import Synchronization

/// Host settings post-copy needs, changed only while a post-copy move needs them, each change
/// logged. Root here lacks CAP_SYS_RESOURCE, so both limits must be lifted by sysctl.
public enum PostCopyHost {
    static let pipeMaxSize = "/proc/sys/fs/pipe-max-size"
    static let unprivilegedUserfaultfd = "/proc/sys/vm/unprivileged_userfaultfd"

    /// CRIU's lazy-pages transfer needs pipes of `CRIUFeatures.lazyPagesPipeSize`, above the
    /// usual 1 MiB: raised (never lowered) when a post-copy move starts.
    public static func ensurePipes(logger: Logger) {
        let current = CRIU.readPipeMaxSize()
        guard current < CRIUFeatures.lazyPagesPipeSize else { return }
        do {
            try write("\(CRIUFeatures.lazyPagesPipeSize)", to: pipeMaxSize)
            logger.notice("raised fs.pipe-max-size for a post-copy move", metadata: [
                "from": "\(current)", "to": "\(CRIUFeatures.lazyPagesPipeSize)",
            ])
        } catch {
            logger.warning("cannot raise fs.pipe-max-size; the post-copy move will fail",
                           metadata: ["error": "\(error)", "fix": "sysctl fs.pipe-max-size=\(CRIUFeatures.lazyPagesPipeSize)"])
        }
    }

    /// The restored tasks open their userfaultfd from inside the container's user namespace,
    /// which the kernel refuses unless `vm.unprivileged_userfaultfd` is 1. It is set for the
    /// restore only (the descriptors stay valid afterwards) and put back when the last
    /// overlapping post-copy restore is done.
    public static func withUnprivilegedUserfaultfd<T: Sendable>(logger: Logger, _ body: () async throws -> T) async throws -> T {
        let opened = window.withLock { w -> Bool in
            w.users += 1
            guard w.users == 1 else { return false }
            w.original = (try? String(contentsOfFile: unprivilegedUserfaultfd, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return w.original != "1"
        }
        if opened {
            do {
                try write("1", to: unprivilegedUserfaultfd)
                logger.notice("vm.unprivileged_userfaultfd set to 1 for a post-copy restore")
            } catch {
                logger.warning("cannot set vm.unprivileged_userfaultfd; the post-copy restore will fail", metadata: ["error": "\(error)"])
            }
        }
        defer {
            let restore = window.withLock { w -> String? in
                w.users -= 1
                guard w.users == 0, let original = w.original, original != "1" else { return nil }
                return original
            }
            if let restore {
                try? write(restore, to: unprivilegedUserfaultfd)
                logger.notice("vm.unprivileged_userfaultfd back to \(restore)")
            }
        }
        return try await body()
    }

    private static let window = Mutex<(users: Int, original: String?)>((0, nil))

    private static func write(_ value: String, to path: String) throws {
        try Data((value + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }
}

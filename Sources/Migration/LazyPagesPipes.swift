import Foundation
import Logging

/// Post-copy needs pipes of `CRIUFeatures.lazyPagesPipeSize` (CRIU's lazy-pages transfer), more
/// than the usual 1 MiB `fs.pipe-max-size`, and root here lacks CAP_SYS_RESOURCE to exceed it.
/// A post-copy move raises the limit (never lowers it) and says so.
public enum LazyPagesPipes {
    static let path = "/proc/sys/fs/pipe-max-size"

    public static func ensure(logger: Logger) {
        let current = CRIU.readPipeMaxSize()
        guard current < CRIUFeatures.lazyPagesPipeSize else { return }
        do {
            try Data("\(CRIUFeatures.lazyPagesPipeSize)\n".utf8).write(to: URL(fileURLWithPath: path))
            logger.notice("raised fs.pipe-max-size for a post-copy move", metadata: [
                "from": "\(current)", "to": "\(CRIUFeatures.lazyPagesPipeSize)",
            ])
        } catch {
            logger.warning("cannot raise fs.pipe-max-size; the post-copy move will fail",
                           metadata: ["error": "\(error)", "fix": "sysctl fs.pipe-max-size=\(CRIUFeatures.lazyPagesPipeSize)"])
        }
    }
}

import Glibc

/// What failed, on what, and (where it helps) what to do.
public enum RuntimeError: Error, CustomStringConvertible, Equatable {
    /// A system call failed: (operation, object, errno).
    case system(String, on: String, Int32)
    case notFound(String)
    case alreadyRunning(String)
    case notRunning(String)
    case startFailed(String, String)
    case invalid(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case let .system(op, on, code):
            return "\(op) on \(on) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .notFound(name): return "container \(name) does not exist (create it first)"
        case let .alreadyRunning(name): return "container \(name) is already running"
        case let .notRunning(name): return "container \(name) is not running"
        case let .startFailed(name, why): return "start of container \(name) failed: \(why)"
        case let .invalid(why): return why
        case let .unsupported(why): return why
        }
    }
}

import CRuntime
import Glibc

struct HelperError: Error {
    let message: String
    init(_ message: String) { self.message = message }

    /// "what failed: strerror (errno N)" for the current errno.
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> HelperError {
        HelperError("\(what): \(String(cString: strerror(code))) (errno \(code))")
    }
}

@inline(__always)
func check(_ rc: Int32, _ what: @autoclosure () -> String) throws(HelperError) {
    if rc < 0 { throw HelperError.errno(what()) }
}

func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        off += n
    }
}

func writeFile(_ path: String, _ text: String) throws(HelperError) {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    if fd < 0 { throw HelperError.errno("open \(path)") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    if n != bytes.count { throw HelperError.errno("write '\(text.split(separator: "\n").first ?? "")' to \(path)") }
}

/// Reads everything until EOF (used on the close-on-exec error pipe: EOF alone = success).
func readAll(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return out }
        out += buf[0..<n]
    }
}

func mountFS(_ source: String, _ target: String, _ type: String?, _ flags: Int, _ data: String?) throws(HelperError) {
    let rc: Int32
    if let data {
        rc = data.withCString { d in mount(source, target, type, UInt(flags), d) }
    } else {
        rc = mount(source, target, type, UInt(flags), nil)
    }
    if rc < 0 { throw HelperError.errno("mount \(type ?? "bind") \(source) on \(target)") }
}

func bind(_ source: String, _ target: String) throws(HelperError) {
    try mountFS(source, target, nil, Int(MS_BIND), nil)
}

func makeDir(_ path: String, _ mode: mode_t = 0o755) throws(HelperError) {
    if mkdir(path, mode) < 0 && errno != EEXIST { throw HelperError.errno("mkdir \(path)") }
}

func makeFile(_ path: String) throws(HelperError) {
    let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o644)
    if fd < 0 { throw HelperError.errno("create \(path)") }
    close(fd)
}

func makeSymlink(_ target: String, _ path: String) throws(HelperError) {
    if symlink(target, path) < 0 && errno != EEXIST { throw HelperError.errno("symlink \(path) -> \(target)") }
}

/// Signal dispositions, mask and the open-files limit back to defaults: the agent ignores
/// SIGPIPE, may block signals and may run with a raised fd limit; init and exec'd commands
/// must start clean. Real-time signals included (glibc's internal 32/33 just answer EINVAL).
func resetSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    sigprocmask(SIG_SETMASK, &set, nil)
    for sig in 1...Int32(64) where sig != SIGKILL && sig != SIGSTOP {
        signal(sig, SIG_DFL)
    }
    var files = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &files) == 0, files.rlim_cur > 1024 {
        files.rlim_cur = 1024
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &files)
    }
}

func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var ptrs: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    ptrs.append(nil)
    defer { for p in ptrs { free(p) } }
    return body(ptrs)
}

func pathJoin(_ a: String, _ b: String) -> String {
    a.hasSuffix("/") ? a + b : a + "/" + b
}

/// Writes this process's pid into each cgroup directory (v1 hierarchies or a v2 leaf), so
/// the container (or exec'd command) is accounted and limited from its first instruction.
/// A cgroup2 directory whose owner (systemd in the container) enabled controllers for its
/// children takes no processes itself (EBUSY, "no internal processes"): join a `.lxc` child.
func joinCgroups(_ dirs: [String]) throws(HelperError) {
    let me = "\(getpid())\n"
    for dir in dirs {
        let procs = pathJoin(dir, "cgroup.procs")
        let fd = open(procs, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw HelperError.errno("open \(procs)") }
        let n = me.utf8.withContiguousStorageIfAvailable { write(fd, $0.baseAddress, $0.count) } ?? -1
        let e = errno
        close(fd)
        if n == me.utf8.count { continue }
        guard e == EBUSY else { errno = e; throw HelperError.errno("write \(procs)") }
        let leaf = pathJoin(dir, ".lxc")
        if mkdir(leaf, 0o755) != 0 && errno != EEXIST { throw HelperError.errno("mkdir \(leaf)") }
        try writeFile(pathJoin(leaf, "cgroup.procs"), me)
    }
}

/// The security policy handed over by the agent: syscalls to deny, capabilities to drop.
func applySecurity(deny: [String], dropCaps: [String]) throws(HelperError) {
    let rc = withCStrings(dropCaps) { ptrs in
        ptrs.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) {
                cr_drop_bounding($0, Int32(dropCaps.count))
            }
        }
    }
    if rc == -2 { throw HelperError("unknown capability name in \(dropCaps)") }
    if rc < 0 { throw HelperError.errno("drop capabilities from the bounding set") }
    let src = withCStrings(deny) { ptrs in
        ptrs.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) {
                cr_seccomp_deny($0, Int32(deny.count), EPERM)
            }
        }
    }
    if src < 0 { throw HelperError.errno("load seccomp filter") }
}

/// execve with a PATH search when the command has no slash (like execvpe, but reporting
/// ENOENT only when no candidate exists). Returns only on failure, with the error.
func execCommand(_ argv: [String], env: [String]) -> HelperError {
    guard let cmd = argv.first, !cmd.isEmpty else { return HelperError("empty command") }
    var candidates: [String] = []
    if cmd.contains("/") {
        candidates = [cmd]
    } else {
        let pathVar = env.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
            ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        candidates = pathVar.split(separator: ":").map { pathJoin(String($0), cmd) }
    }
    var lastErr = ENOENT
    for path in candidates {
        withCStrings(argv) { a in
            withCStrings(env) { e in
                _ = execve(path, a, e)
            }
        }
        if errno != ENOENT && errno != ENOTDIR { lastErr = errno }
    }
    if lastErr == ENOENT { return HelperError("command not found: \(cmd)") }
    return HelperError.errno("execute \(cmd)", lastErr)
}

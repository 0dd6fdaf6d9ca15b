import APITypes
import ClusterDB
import Dqlite
import Foundation
import Images
import InstanceConfig
@testable import Instances
import Logging
import Migration
import Operations
import Runtime
import Synchronization

/// A ContainerHost that keeps containers as records: no root, no processes. `failStart` names
/// the containers whose start fails (after their files were made, as a real failed start leaves them).
/// Containers are keyed as messages name instances (`"\(ref)"`: the bare name in the default
/// project); `instances` keeps every identity the use cases passed.
final class FakeHost: ContainerHost {
    struct Container: Sendable {
        var spec: ContainerSpec
        var running: Bool
        var files: [String: ContainerFile] = [:]
    }

    let containers = Mutex<[String: Container]>([:])
    /// Every instance identity the host was asked about, in order of first use.
    let instances = Mutex<[InstanceRef]>([])
    private func saw(_ ref: InstanceRef) -> String {
        instances.withLock { if !$0.contains(ref) { $0.append(ref) } }
        return "\(ref)"
    }
    let failStart = Mutex<Set<String>>([])
    /// The spec of every start, in order.
    let startSpecs = Mutex<[ContainerSpec]>([])
    /// Every call that changes something, in order ("start c1", "delete c1", ...).
    let calls = Mutex<[String]>([])
    let limitUpdates = Mutex<[String: Limits]>([:])
    let readError = Mutex<RuntimeError?>(nil)
    let exitObserver = Mutex<(@Sendable (InitExit) -> Void)?>(nil)

    func observeExits(_ observer: @escaping @Sendable (InitExit) -> Void) { exitObserver.withLock { $0 = observer } }

    /// A container's init ending on its own (`signal` nil: exit code 0), as the runtime reports it.
    func endInit(_ name: String, signal: Int32?) -> InitExit {
        record("init ended \(name)")
        containers.withLock { $0[name]?.running = false }
        let raw: Int32 = signal ?? 0
        return InitExit(instance: InstanceRef(name: name), status: ExitStatus(raw: raw), requested: false)
    }

    var names: [String] { containers.withLock { $0.keys.sorted() } }
    var callLog: [String] { calls.withLock { $0 } }
    private func record(_ call: String) { calls.withLock { $0.append(call) } }

    func create(_ spec: ContainerSpec) throws(RuntimeError) {
        _ = saw(spec.instance)
        record("create \(spec.name)")
        containers.withLock { if $0[spec.name] == nil { $0[spec.name] = Container(spec: spec, running: false) } }
    }

    func start(_ spec: ContainerSpec) async throws(RuntimeError) -> RunningContainer {
        _ = saw(spec.instance)
        record("start \(spec.name)")
        startSpecs.withLock { $0.append(spec) }
        containers.withLock { if $0[spec.name] == nil { $0[spec.name] = Container(spec: spec, running: false) } }
        if failStart.withLock({ $0.contains(spec.name) }) { throw .startFailed(spec.name, "init exited at once (fake)") }
        let wasRunning = containers.withLock { all in
            defer { all[spec.name]?.running = true }
            return all[spec.name]?.running == true
        }
        if wasRunning { throw .alreadyRunning(spec.name) }
        return RunningContainer(instance: spec.instance, pid: 4242, pidStartTime: 1)
    }

    func stop(instance ref: InstanceRef, force: Bool, timeout: Duration) async throws(RuntimeError) {
        let name = saw(ref)
        record("stop \(name)")
        let wasRunning = containers.withLock { all in
            defer { all[name]?.running = false }
            return all[name]?.running == true
        }
        if !wasRunning { throw .notRunning(name) }
    }

    func delete(instance ref: InstanceRef) throws(RuntimeError) {
        let name = saw(ref)
        record("delete \(name)")
        let running = containers.withLock { all in
            if all[name]?.running == true { return true }
            all[name] = nil
            return false
        }
        if running { throw .alreadyRunning(name) }
    }

    /// Container names whose rename fails (either direction), as a real one does on a busy host.
    let failRename = Mutex<Set<String>>([])

    func renameContainer(from old: InstanceRef, to new: InstanceRef) throws(RuntimeError) {
        let (from, to) = (saw(old), saw(new))
        record("rename \(from) \(to)")
        if failRename.withLock({ $0.contains(from) || $0.contains(to) }) { throw .system("rename", on: from, EBUSY) }
        let outcome: RuntimeError? = containers.withLock { all in
            guard let c = all[from] else { return .notFound(from) }
            if c.running { return .alreadyRunning(from) }
            if all[to] != nil { return .invalid("container \(to) exists already") }
            all[from] = nil
            var moved = c
            moved.spec.instance = new
            all[to] = moved
            return nil
        }
        if let outcome { throw outcome }
        pendingRenames.withLock { pending in
            pending.removeAll { $0.at == old }
            pending.append(UnfinishedRename(from: old, to: new, at: new))
        }
    }

    /// Renames begun and not finished, as the real host keeps them in a marker beside the files.
    let pendingRenames = Mutex<[UnfinishedRename]>([])

    func finishRename(of instance: InstanceRef) throws(RuntimeError) {
        record("finish rename \(saw(instance))")
        pendingRenames.withLock { $0.removeAll { $0.at == instance } }
    }

    func unfinishedRenames() -> [UnfinishedRename] { pendingRenames.withLock { $0 } }

    func state(instance ref: InstanceRef) -> ContainerState? {
        let name = saw(ref)
        return containers.withLock { all in
            all[name].map { $0.running ? ContainerState(running: true, pid: 4242, processes: 1, memoryUsage: 0, memoryPeak: 0, cpuUsageNanoseconds: 0) : .stopped }
        }
    }

    func updateLimits(instance ref: InstanceRef, limits: Limits) throws(RuntimeError) {
        let name = saw(ref)
        record("limits \(name)")
        limitUpdates.withLock { $0[name] = limits }
    }

    func consoleLog(instance ref: InstanceRef) throws(RuntimeError) -> [UInt8] {
        let name = saw(ref)
        guard containers.withLock({ $0[name] != nil }) else { throw .notFound(name) }
        return Array("console of \(name)\n".utf8)
    }

    /// The monitor's ends of the consoles handed out (a SOCK_SEQPACKET pair per attachment),
    /// by instance name, for the test to drive; `consoleError` makes `openConsole` fail.
    let consoleMonitors = Mutex<[String: Int32]>([:])
    let consoleError = Mutex<RuntimeError?>(nil)

    func openConsole(instance ref: InstanceRef) throws(RuntimeError) -> Int32 {
        let name = saw(ref)
        if let error = consoleError.withLock({ $0 }) { throw error }
        guard containers.withLock({ $0[name]?.running == true }) else { throw .notRunning(name) }
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .system("socketpair", on: "console of \(name)", errno)
        }
        record("open console \(name)")
        consoleMonitors.withLock { $0[name] = pair[1] }
        return pair[0]
    }

    func clearConsoleLog(instance ref: InstanceRef) throws(RuntimeError) {
        let name = saw(ref)
        guard containers.withLock({ $0[name] != nil }) else { throw .notFound(name) }
        record("clear console \(name)")
    }

    func exec(instance ref: InstanceRef, command: [String], environment: [String: String], cwd: String,
              uid: UInt32, gid: UInt32, stdio: ExecStdio) async throws(RuntimeError) -> ExecProcess {
        throw .unsupported("the fake host runs no commands")
    }

    func readFile(instance ref: InstanceRef, path: String, maxBytes: Int) async throws(RuntimeError) -> ContainerFile {
        let name = saw(ref)
        if let error = readError.withLock({ $0 }) { throw error }
        guard let file = containers.withLock({ $0[name]?.files[path] }) else { throw .system("open", on: "\(path) in \(name)", ENOENT) }
        return file
    }

    func writeFile(instance ref: InstanceRef, path: String, content: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32) async throws(RuntimeError) {
        let name = saw(ref)
        record("write \(name) \(path)")
        containers.withLock { $0[name]?.files[path] = ContainerFile(content: content, mode: mode, uid: uid, gid: gid) }
    }

    /// Where saved states are looked for: nowhere on disk unless a test points it at a directory.
    let stateRoot = Mutex("/nonexistent")
    func savedStateDirectory(of instance: InstanceRef) -> String { stateRoot.withLock { $0 } + "/containers/\(instance.hostName)/state" }
    func directory(of instance: InstanceRef) -> String { stateRoot.withLock { $0 } + "/containers/\(instance.hostName)" }
    func upperDirectory(of instance: InstanceRef) -> String { directory(of: instance) + "/upper" }
    func resumeStopped(instance: InstanceRef) throws(RuntimeError) -> Int { 0 }
    func killFrozen(instance: InstanceRef) throws(RuntimeError) {}

    // Checkpoint and restore: the tests run without CRIU (checkpointer nil), so these are never reached.
    func checkpointTarget(instance: InstanceRef) async throws -> CheckpointTarget { throw RuntimeError.unsupported("no checkpoints on the fake host") }
    func waitStopped(instance: InstanceRef, timeout: Duration) async throws { throw RuntimeError.unsupported("no checkpoints on the fake host") }
    func prepareRestore(instance: InstanceRef) async throws -> RestoreTarget { throw RuntimeError.unsupported("no restores on the fake host") }
    func adoptRestored(instance: InstanceRef, pid: Int32, target: RestoreTarget) async throws { throw RuntimeError.unsupported("no restores on the fake host") }
    func abandonRestore(instance: InstanceRef) async {}
}

/// Image layers as records: `layer` answers for the fingerprints added, nothing is unpacked.
final class FakeLayers: LayerStore {
    let layers = Mutex<[String: ImportedLayer]>([:])
    let removed = Mutex<[String]>([])

    /// Template files by name, for every layer.
    let templateFiles = Mutex<[String: String]>([:])

    /// A layer; with `templates`, its metadata.yaml declares them (their files go in `templateFiles`).
    func add(_ fingerprint: String, templates: [String: ImageTemplate] = [:]) {
        layers.withLock {
            $0[fingerprint] = ImportedLayer(fingerprint: fingerprint, size: 1024,
                                            metadata: ImageMetadata(architecture: "x86_64", properties: ["os": "Busybox"], templates: templates),
                                            rootfsPath: "/nonexistent/\(fingerprint)/rootfs")
        }
    }

    func template(fingerprint: String, name: String) throws -> String {
        guard let text = templateFiles.withLock({ $0[name] }) else { throw ImageError.invalidImage("no template \(name) in the fake store") }
        return text
    }

    func layer(fingerprint: String) -> ImportedLayer? { layers.withLock { $0[fingerprint] } }

    func removeLayer(fingerprint: String) throws {
        removed.withLock { $0.append(fingerprint) }
        _ = layers.withLock { $0.removeValue(forKey: fingerprint) }
    }

    func importTarball(at path: String, maxBytes: Int64, expectedFingerprint: String?) throws -> ImportedLayer {
        throw ImageError.invalidImage("the fake store imports nothing")
    }
}

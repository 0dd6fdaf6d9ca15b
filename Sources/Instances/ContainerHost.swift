import Images
import InstanceConfig
import Migration
import Runtime

/// What the instance use cases need of the containers on this host. `ContainerRuntime` is the
/// real one (conformance below); unit tests pass a fake, so the use cases run without root.
/// Checkpoint and restore (stateful stop, start from a saved state) reach the host through
/// Migration's `CheckpointSource` and `RestoreDestination`.
public protocol ContainerHost: CheckpointSource, RestoreDestination {
    /// Prepares the container's root filesystem without starting it.
    func create(_ spec: ContainerSpec) throws(RuntimeError)
    /// Starts the container, creating its root filesystem first when it has none.
    func start(_ spec: ContainerSpec) async throws(RuntimeError) -> RunningContainer
    func stop(instance: InstanceRef, force: Bool, timeout: Duration) async throws(RuntimeError)
    /// Removes a stopped container's files and cgroups; a missing one is not an error.
    func delete(instance: InstanceRef) throws(RuntimeError)
    /// Renames a stopped container's files on this host (`old`'s directory becomes `new`'s);
    /// refuses a running one, one holding a saved state, and a name whose directory exists.
    func renameContainer(from old: InstanceRef, to new: InstanceRef) throws(RuntimeError)
    /// Ends a rename once the database holds the name the container's files now have.
    func finishRename(of instance: InstanceRef) throws(RuntimeError)
    /// Renames begun on this host and not finished (the agent died in between).
    func unfinishedRenames() -> [UnfinishedRename]
    /// Live figures; nil when there is no such container.
    func state(instance: InstanceRef) -> ContainerState?
    /// New limits for a running container.
    func updateLimits(instance: InstanceRef, limits: Limits) throws(RuntimeError)
    func consoleLog(instance: InstanceRef) throws(RuntimeError) -> [UInt8]
    /// Empties the console log of the container.
    func clearConsoleLog(instance: InstanceRef) throws(RuntimeError)
    /// A connected socket to the running container's console monitor, carrying
    /// `ConsoleMessage` packets; the caller closes it. EOF when the container stops or another
    /// client attaches.
    func openConsole(instance: InstanceRef) throws(RuntimeError) -> Int32
    func exec(instance: InstanceRef, command: [String], environment: [String: String], cwd: String,
              uid: UInt32, gid: UInt32, stdio: ExecStdio) async throws(RuntimeError) -> ExecProcess
    func readFile(instance: InstanceRef, path: String, maxBytes: Int) async throws(RuntimeError) -> ContainerFile
    func writeFile(instance: InstanceRef, path: String, content: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32) async throws(RuntimeError)
    /// Where a stateful stop keeps the container's dump until the next start.
    func savedStateDirectory(of instance: InstanceRef) -> String
    /// The container's directory on this host, and its overlay upper directory (what a move copies).
    func directory(of instance: InstanceRef) -> String
    func upperDirectory(of instance: InstanceRef) -> String
    /// Continues a container that a checkpoint left stopped (a move called off).
    @discardableResult
    func resumeStopped(instance: InstanceRef) throws(RuntimeError) -> Int
    /// Freezes every task of the running container (cgroup freezer) until `thaw`; throws why
    /// when the host has no usable freezer or the freeze does not complete.
    func freeze(instance: InstanceRef) async throws(RuntimeError)
    /// Thaws a frozen container; nothing happens to one that is not frozen.
    func thaw(instance: InstanceRef) throws(RuntimeError)
    /// Why the container cannot be frozen; nil when it can.
    func freezeProblem(instance: InstanceRef) -> String?
    /// Kills a frozen container's processes before thawing it (none runs again).
    func killFrozen(instance: InstanceRef) throws(RuntimeError)
    /// Sets who hears of every init that ended (after its cleanup), asked for or not.
    func observeExits(_ observer: @escaping @Sendable (InitExit) -> Void)
}

extension ContainerRuntime: ContainerHost {}

extension ContainerHost {
    /// Hosts that cannot freeze (test fakes) say so.
    public func freeze(instance: InstanceRef) async throws(RuntimeError) {
        throw .unsupported("this host cannot freeze containers")
    }
    public func thaw(instance: InstanceRef) throws(RuntimeError) {}
    public func freezeProblem(instance: InstanceRef) -> String? { "this host cannot freeze containers" }
}

/// The image layers on this host that instances are created from (`ImageStore` is the real one).
public protocol LayerStore: Sendable {
    /// The unpacked layer of an image, or nil when this member does not hold it.
    func layer(fingerprint: String) -> ImportedLayer?
    func removeLayer(fingerprint: String) throws
    /// Unpacks a tarball fetched from another member; refuses bytes whose hash is not `expectedFingerprint`.
    func importTarball(at path: String, maxBytes: Int64, expectedFingerprint: String?) throws -> ImportedLayer
    /// The text of a layer's template file (metadata.yaml `templates:`), checked at import.
    func template(fingerprint: String, name: String) throws -> String
}

extension ImageStore: LayerStore {}

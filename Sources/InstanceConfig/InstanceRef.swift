/// An instance's identity: (project, name), as in LXD. Every host-side name of an instance
/// (its data directory, cgroups, lock key, operation resource) comes from this one value, so
/// projects can land later without renaming anything that runs. Today every instance is in
/// the `default` project.
public struct InstanceRef: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let defaultProject = "default"

    public let project: String
    public let name: String

    public init(project: String = InstanceRef.defaultProject, name: String) {
        self.project = project
        self.name = name
    }

    /// The name of the instance on this host: its directory under `<dataDir>/containers/` and
    /// its cgroup leaf. `<project>_<name>`: instance names have no `_` and project names may
    /// not have one (`ProjectName`), so the split is unambiguous.
    public var hostName: String { project + "_" + name }

    /// Reads a host name back; nil for a name not of this shape (such as the layout before
    /// projects, `containers/<name>`) or whose parts are not valid names.
    public init?(hostName: String) {
        guard let cut = hostName.firstIndex(of: "_") else { return nil }
        let project = String(hostName[..<cut])
        let name = String(hostName[hostName.index(after: cut)...])
        guard (try? ProjectName.validate(project)) != nil, (try? InstanceName.validate(name)) != nil else { return nil }
        self.init(project: project, name: name)
    }

    /// The instance's API path, as LXD writes it in operation resources and event sources:
    /// `/1.0/instances/NAME`, with `?project=P` outside the default project.
    public var apiPath: String {
        project == Self.defaultProject ? "/1.0/instances/\(name)" : "/1.0/instances/\(name)?project=\(project)"
    }

    /// How messages name the instance: the bare name in the default project, so messages read
    /// as they did before projects.
    public var description: String {
        project == Self.defaultProject ? name : "\(name) (project \(project))"
    }

    public static func < (a: InstanceRef, b: InstanceRef) -> Bool {
        (a.project, a.name) < (b.project, b.name)
    }
}

/// LXD's rules for project names as far as they matter on a host: a project name is the first
/// part of every host name of its instances (`InstanceRef.hostName`), so it may not contain
/// `_` (which separates it from the instance name), `/`, whitespace or quotes, and may not be
/// `.` or `..`. Within that, only what is safe in a path, a cgroup name and a URL query:
/// 1 to 63 ASCII letters, digits, `-` and `.`, starting with a letter or a digit.
public enum ProjectName {
    public static func validate(_ name: String) throws(NameError) {
        guard !name.isEmpty, name.utf8.count <= 63 else { throw .length(name) }
        if name.contains("_") { throw .underscore(name) }
        guard name.utf8.allSatisfy(allowed.contains) else { throw .characters(name) }
        guard let first = name.utf8.first, first != UInt8(ascii: "-"), first != UInt8(ascii: ".") else { throw .start(name) }
    }

    private static let allowed: Set<UInt8> = Set(
        Array(UInt8(ascii: "a")...UInt8(ascii: "z")) + Array(UInt8(ascii: "A")...UInt8(ascii: "Z")) + Array(UInt8(ascii: "0")...UInt8(ascii: "9"))
            + "-.".utf8)

    public enum NameError: Error, CustomStringConvertible, Equatable {
        case length(String), underscore(String), characters(String), start(String)

        public var description: String {
            switch self {
            case .length(let n): "Invalid project name \(n.debugDescription): it must be 1 to 63 characters long"
            case .underscore(let n): "Invalid project name \(n.debugDescription): it may not contain '_' (it separates project and instance in host names)"
            case .characters(let n): "Invalid project name \(n.debugDescription): only ASCII letters, digits, '-' and '.' are allowed"
            case .start(let n): "Invalid project name \(n.debugDescription): it must start with a letter or a digit"
            }
        }
    }
}

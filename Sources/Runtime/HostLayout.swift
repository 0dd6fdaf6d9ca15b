import Foundation
import Glibc
import InstanceConfig

/// The step from the host layout before projects (`containers/<name>`, cgroups
/// `<member>/<name>`) to the one with them (`InstanceRef.hostName`: `containers/default_<name>`).
/// `ContainerRuntime.upgradeLayout` decides what moves when; this is the file work.
enum HostLayout {
    /// The instance that an entry of `containers/` names under the layout before projects:
    /// a valid instance name (which has no `_`, so no new-style entry is one); nil otherwise.
    static func legacyInstance(_ entry: String) -> InstanceRef? {
        guard !entry.contains("_"), (try? ContainerSpec.validate(name: entry)) != nil else { return nil }
        return InstanceRef(name: entry)
    }

    /// Moves the directory of a stopped container from `containers/<old>` to `containers/<new>`
    /// (the layout upgrade: to its host name; a rename: to its new host name). config.json may
    /// name the old directory (the shifted copy of the image layer, `lower`): it is rewritten
    /// first, so a crash between the two steps leaves a directory the next start still finds
    /// under its old name and moves again.
    static func moveStopped(containers: String, from old: String, to new: String) throws(RuntimeError) {
        let from = containers + "/" + old
        let to = containers + "/" + new
        if access(to, F_OK) == 0 {
            throw .invalid("cannot move \(from) to \(to): \(to) exists already; keep the one that holds the instance's files and remove the other, then restart the agent")
        }
        let configPath = from + "/config.json"
        if var config = try? StoredConfig.read(from: configPath), let lower = config.lower, lower.hasPrefix(from + "/") {
            config.lower = to + String(lower.dropFirst(from.count))
            try config.write(to: configPath)
        }
        if rename(from, to) != 0 { throw .system("rename to \(to)", on: from, errno) }
    }

    /// Points config.json's `lower` back at `dir`'s own shifted layer copy when it names the
    /// copy of another directory under the same `containers/`: what a move interrupted between
    /// rewriting config.json and moving the directory leaves behind.
    static func repointLower(dir: String) throws(RuntimeError) {
        let configPath = dir + "/config.json"
        guard var config = try? StoredConfig.read(from: configPath), let lower = config.lower else { return }
        let own = dir + "/lower"
        let containers = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        guard lower != own, lower.hasPrefix(containers + "/"), lower.hasSuffix("/lower"),
              lower.dropFirst(containers.count + 1).split(separator: "/").count == 2 else { return }
        config.lower = own
        try config.write(to: configPath)
    }
}

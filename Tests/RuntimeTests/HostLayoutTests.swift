import Foundation
import Glibc
import InstanceConfig
import Testing
@testable import Runtime

/// The step from `containers/<name>` to `containers/<project>_<name>`: file work over a temp
/// directory, no root needed.
@Suite struct HostLayoutTests {
    func tempContainers() throws -> String {
        let dir = NSTemporaryDirectory() + "lxd-layout-\(UUID().uuidString)/containers"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func onlyBareInstanceNamesAreTheOldLayout() {
        #expect(HostLayout.legacyInstance("c1") == InstanceRef(project: "default", name: "c1"))
        #expect(HostLayout.legacyInstance("web-2") == InstanceRef(name: "web-2"))
        for entry in ["default_c1", "web_c1", "lower.partial", "", "-x", ".tmp"] {
            #expect(HostLayout.legacyInstance(entry) == nil, "\(entry)")
        }
    }

    @Test func aStoppedContainerMovesWithItsFilesAndItsShiftedLayerPath() throws {
        let containers = try tempContainers()
        defer { try? FileManager.default.removeItem(atPath: (containers as NSString).deletingLastPathComponent) }
        let old = containers + "/c1"
        try FileManager.default.createDirectory(atPath: old + "/upper/root", withIntermediateDirectories: true)
        try "kept\n".write(toFile: old + "/upper/root/note", atomically: true, encoding: .utf8)
        try StoredConfig(layerRootfs: "/images/l/rootfs", idmap: IDMap(hostBase: 1_000_000), limits: nil,
                         lower: old + "/lower", idmappedLower: false).write(to: old + "/config.json")

        try HostLayout.moveStopped(containers: containers, from: "c1", to: InstanceRef(name: "c1").hostName)

        let new = containers + "/default_c1"
        #expect(access(old, F_OK) != 0)
        #expect(try String(contentsOfFile: new + "/upper/root/note", encoding: .utf8) == "kept\n")
        let config = try StoredConfig.read(from: new + "/config.json")
        #expect(config.lower == new + "/lower")
        #expect(config.layerRootfs == "/images/l/rootfs", "the image layer is not under the container and stays")
    }

    @Test func aMoveOntoAnExistingDirectoryIsRefusedAndTouchesNeither() throws {
        let containers = try tempContainers()
        defer { try? FileManager.default.removeItem(atPath: (containers as NSString).deletingLastPathComponent) }
        try FileManager.default.createDirectory(atPath: containers + "/c1/upper", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: containers + "/default_c1/upper", withIntermediateDirectories: true)
        #expect(throws: RuntimeError.self) {
            try HostLayout.moveStopped(containers: containers, from: "c1", to: InstanceRef(name: "c1").hostName)
        }
        #expect(access(containers + "/c1/upper", F_OK) == 0 && access(containers + "/default_c1/upper", F_OK) == 0)
    }

    /// An agent killed between rewriting config.json and moving the directory leaves `lower`
    /// naming the other directory's copy: it is pointed back; any other `lower` stays.
    @Test func anInterruptedMovesLowerPathIsPointedBack() throws {
        let containers = try tempContainers()
        defer { try? FileManager.default.removeItem(atPath: (containers as NSString).deletingLastPathComponent) }
        let dir = containers + "/default_c1"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func lower(_ value: String) throws -> String? {
            try StoredConfig(layerRootfs: "/images/l/rootfs", idmap: IDMap(hostBase: 1_000_000), limits: nil, lower: value, idmappedLower: false)
                .write(to: dir + "/config.json")
            try HostLayout.repointLower(dir: dir)
            return try StoredConfig.read(from: dir + "/config.json").lower
        }
        #expect(try lower(containers + "/default_c2/lower") == dir + "/lower")
        #expect(try lower(dir + "/lower") == dir + "/lower")
        #expect(try lower("/images/l/rootfs") == "/images/l/rootfs", "an image layer outside containers/ is not a copy")
        #expect(try lower(containers + "/default_c2/upper/lower") == containers + "/default_c2/upper/lower")
    }
}

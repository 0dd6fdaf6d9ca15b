import Foundation
import Testing

/// An image imported on one member only is fetched (over mutual TLS, hash-checked) by the
/// member an instance is created on, on first use.
@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class ImageFetchTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    /// Two joined members over HTTPS on 127.0.0.1-2 (enough: one holds the image, one lacks it).
    func cluster() throws -> (TestAgent, TestAgent) {
        let m = try (1...2).map { n in try TestAgent(name: "m\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())") }
        agents = m
        let token = try #require(try m[0].ok(["cluster", "add", "m2"]).split(separator: "\n").last.map(String.init))
        let join = try m[1].ctl(["cluster", "join", token])
        try #require(join.status == 0, "join m2: \(join.stderr)\n\(m[1].logTail())")
        let deadline = Date().addingTimeInterval(20)
        for a in m {
            while (try? a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n").count) != 2 {
                try #require(Date() < deadline, "\(a.name) never saw both members:\n\(a.logTail())")
                usleep(100_000)
            }
        }
        return (m[0], m[1])
    }

    /// 64-hex directories of a member's layer store.
    func layers(_ a: TestAgent) -> Set<String> {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "\(a.dataDir)/images")) ?? []
        return Set(entries.filter { $0.count == 64 && $0.allSatisfy(\.isHexDigit) })
    }

    @Test func launchOnMemberWithoutImageFetchesIt() throws {
        let (m1, m2) = try cluster()
        try m1.importBusybox(alias: "bb")
        let imported = layers(m1)
        try #require(imported.count == 1, "m1 layers: \(imported)")
        #expect(layers(m2).isEmpty)

        let started = Date()
        let launch = try m1.ctl(["launch", "bb", "c2", "--target", "m2"])
        let elapsed = Date().timeIntervalSince(started)
        try #require(launch.status == 0, "launch --target m2: \(launch.stderr)\n\(m2.logTail())")
        print("launch on m2 with image fetched from m1: \(String(format: "%.3f", elapsed)) s")

        let row = try m2.ok(["list", "--format", "csv"]).split(separator: "\n").first { $0.hasPrefix("c2,") }
        #expect(row?.contains("RUNNING") == true && row?.hasSuffix(",m2") == true, "c2 as m2 lists it: \(String(describing: row))")
        #expect(layers(m2) == imported, "m2 layers after launch: \(layers(m2))")
        let images = try m1.ok(["image", "list", "--format", "csv"]).split(separator: "\n")
        #expect(images.count == 1, "image list: \(images)")
        #expect(try m2.ok(["exec", "c2", "--", "hostname"]) == "c2\n")

        // Second use on m2: no fetch, the layer is local now.
        let again = Date()
        try m1.ok(["launch", "bb", "d2", "--target", "m2"])
        print("second launch on m2 (layer local): \(String(format: "%.3f", Date().timeIntervalSince(again))) s")
    }
}

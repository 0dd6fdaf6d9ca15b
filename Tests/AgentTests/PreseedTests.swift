import Agent
import Foundation
import Membership
import Testing

/// The preseed and cluster layout parsers are pure: every refusal names the offending key,
/// before anything is created.
@Suite struct PreseedTests {
    static let fingerprint = String(repeating: "ab", count: 32)

    static func token(for name: String) throws -> String {
        var rng = SystemRandomNumberGenerator()
        return try JoinToken.issue(name: name, fingerprint: fingerprint, addresses: ["127.0.0.1:8443"],
                                   now: Int64(Date().timeIntervalSince1970), using: &rng).encoded()
    }

    /// The key a refusal names, or "(parsed)" when the text was accepted.
    static func refusedKey(_ text: String) -> String? {
        do {
            _ = try Preseed.parse(text)
            return "(parsed)"
        } catch let error as PreseedError {
            return error.key
        } catch {
            return "(other error: \(error))"
        }
    }

    @Test func bootstrapPreseedParses() throws {
        let p = try Preseed.parse("""
            config:
              core.https_address: 127.0.0.1:8443
            cluster:
              server_name: m1
              enabled: true
              failure_domain: rack1
              member_config:
                scheduler.memory: 4GiB
                user.note: first
            """)
        #expect(p.httpsAddress == "127.0.0.1:8443")
        #expect(p.serverName == "m1")
        #expect(p.clusterEnabled)
        #expect(p.failureDomain == "rack1")
        #expect(p.memberConfig == ["scheduler.memory": "4GiB", "user.note": "first"])
        #expect(p.join == nil)
    }

    @Test func joinPreseedParsesAndChecksTheToken() throws {
        let token = try Self.token(for: "m2")
        let base = """
            config:
              core.https_address: 127.0.0.2:8443
            cluster:
              server_name: m2
              enabled: true
              cluster_address: 127.0.0.1:8443
              cluster_token: \(token)
            """
        let p = try Preseed.parse(base)
        #expect(p.join?.token == token)
        #expect(p.join?.clusterAddress == "127.0.0.1:8443")
        #expect(Self.refusedKey(base + "\n  cluster_certificate_fingerprint: \(Self.fingerprint)") == "(parsed)")
        // A fingerprint from another cluster, or a token made for another name.
        #expect(Self.refusedKey(base + "\n  cluster_certificate_fingerprint: \(String(repeating: "cd", count: 32))")
                == "cluster.cluster_certificate_fingerprint")
        #expect(Self.refusedKey(base.replacingOccurrences(of: "server_name: m2", with: "server_name: m3")) == "cluster.cluster_token")
        #expect(Self.refusedKey(base.replacingOccurrences(of: token, with: "not-a-token")) == "cluster.cluster_token")
    }

    @Test(arguments: [
        ("colour: red", nil as String?),
        ("config:\n  core.https_address: nowhere\n", "config.core.https_address"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: maybe\n", "cluster.enabled"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: false\n", "cluster.enabled"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  enabled: true\n", "cluster.server_name"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: a/b\n  enabled: true\n", "cluster.server_name"),
        ("cluster:\n  server_name: m1\n  enabled: true\n", "config.core.https_address"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n  member_config:\n    limits.cpu: 2\n", "cluster.member_config"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n  failure_domain: a b\n", "cluster.failure_domain"),
        ("config:\n  core.https_address: 127.0.0.1:8443\ncluster:\n  server_name: m1\n  enabled: true\n  cluster_address: 127.0.0.2:8443\n", "cluster.cluster_token"),
    ])
    func badPreseedsNameTheKey(text: String, key: String?) {
        let refused = Self.refusedKey(text)
        #expect(refused != "(parsed)", "accepted: \(text)")
        if let key { #expect(refused == key, "for \(text)") }
    }

    @Test func emptyAndInvalidYAMLAreRefused() {
        #expect(Self.refusedKey("") == nil)
        #expect(Self.refusedKey("config: [unclosed") == nil)
    }

    @Test func theRepositoryLayoutParses() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let layout = try ClusterLayout.load(path: "\(repo)/cluster-configs/three-members.yaml")
        #expect(layout.members.map(\.serverName) == ["m1", "m2", "m3"])
        #expect(layout.members.map(\.httpsAddress) == ["127.0.0.1:8443", "127.0.0.2:8443", "127.0.0.3:8443"])
        #expect(Set(layout.members.compactMap(\.failureDomain)).count == 3)
    }

    @Test func badLayoutsNameTheKey() {
        func key(_ text: String) -> String? {
            do { _ = try ClusterLayout.parse(text); return "(parsed)" } catch let e as PreseedError { return e.key } catch { return "(other)" }
        }
        #expect(key("members: []") == "members")
        #expect(key("members:\n  - server_name: m1\n    https_address: 127.0.0.1:1\n    colour: red\n") == "members[0].colour")
        #expect(key("members:\n  - server_name: m1\n    https_address: 127.0.0.1:1\n    data_dir: ../x\n") == "members[0].data_dir")
        #expect(key("members:\n  - server_name: m1\n    https_address: 127.0.0.1:1\n  - server_name: m1\n    https_address: 127.0.0.2:1\n")
                == "members[1].server_name")
        #expect(key("members:\n  - server_name: m1\n    https_address: 127.0.0.1:1\n") == "(parsed)")
    }
}

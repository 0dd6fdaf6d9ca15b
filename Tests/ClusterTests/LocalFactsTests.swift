@testable import Cluster
import APITypes
import Foundation
import Testing

@Suite struct LocalFactsTests {
    @Test func memberJSONRoundTripsWithLXDsKeys() throws {
        let dir = NSTemporaryDirectory() + "cluster-local-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try LocalState.load(from: dir) == nil)
        let state = LocalState(name: "m1", dqliteID: 3, address: "127.0.0.1:8443",
                               peers: [LocalPeer(name: "m2", address: "127.0.0.2:8443", fingerprint: "ab")], clusterEnabled: true)
        try state.save(to: dir)
        #expect(try LocalState.load(from: dir) == state)
        let text = try String(contentsOfFile: LocalState.path(in: dir), encoding: .utf8)
        #expect(text.contains("\"dqlite_id\":3") && text.contains("\"cluster_enabled\":true"))
    }

    @Test func anUnreadableMemberJSONNamesItsPath() throws {
        let dir = NSTemporaryDirectory() + "cluster-local-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{".write(toFile: LocalState.path(in: dir), atomically: true, encoding: .utf8)
        let error = #expect(throws: ClusterError.self) { try LocalState.load(from: dir) }
        #expect(error?.description.contains(LocalState.path(in: dir)) == true)
    }

    @Test func thePeerDirectoryTrustsOnlyKnownFingerprints() {
        let directory = PeerDirectory([LocalPeer(name: "m1", address: "a:1", fingerprint: "")])
        // A member that has not finished joining has no certificate yet: it must not match an empty one.
        #expect(!directory.contains(fingerprint: ""))
        let peers = [LocalPeer(name: "m1", address: "a:1", fingerprint: "f1"), LocalPeer(name: "m2", address: "a:2", fingerprint: "f2")]
        #expect(directory.replace(peers))
        #expect(!directory.replace(peers))
        #expect(directory.contains(fingerprint: "f2"))
        #expect(directory.fingerprint(address: "a:2") == "f2")
    }

    @Test func aMembersErrorEnvelopeKeepsItsStatusAndMessage() {
        let body = Array(#"{"type":"error","error":"instance c1 not found","error_code":404,"metadata":null}"#.utf8)
        let error = #expect(throws: APIError.self) {
            try MemberClient.operation(from: ForwardedResponse(status: 404, headers: [], body: body), member: "m2")
        }
        #expect(error?.status == 404)
        #expect(error?.message == "member m2: instance c1 not found")
        // A member that answers 200 without an operation is a broken member: a 500, not a success.
        let empty = #expect(throws: APIError.self) {
            try MemberClient.operation(from: ForwardedResponse(status: 200, headers: [], body: Array("{}".utf8)), member: "m2")
        }
        #expect(empty?.status == 500)
    }
}

@testable import Gateway
import Testing

/// A copy runs where the instance it copies lives: which creates are copies, and of what.
@Suite struct CopyForwardingTests {
    @Test func onlyAPostToTheInstancesCollectionIsACreate() {
        #expect(Forwarding.isCreate(method: "POST", path: "/1.0/instances"))
        #expect(!Forwarding.isCreate(method: "GET", path: "/1.0/instances"))
        #expect(!Forwarding.isCreate(method: "POST", path: "/1.0/instances/c1"))
        #expect(!Forwarding.isCreate(method: "POST", path: "/1.0/images"))
    }

    @Test func theCopiedInstanceIsReadFromTheBodyAndAnythingElseIsNotACopy() {
        func source(_ json: String) -> String? { Forwarding.copySource(body: Array(json.utf8)) }
        #expect(source(#"{"name":"c2","source":{"type":"copy","source":"c1","live":true},"config":{"volatile.x":"1"}}"#) == "c1")
        #expect(source(#"{"name":"c2","source":{"type":"image","alias":"busybox"}}"#) == nil)
        #expect(source(#"{"name":"c2","source":{"type":"copy"}}"#) == nil)
        #expect(source(#"{"name":"c2","source":{"type":"copy","source":""}}"#) == nil)
        #expect(source(#"{"name":"c2","source":{"type":"copy","source":7}}"#) == nil)
        #expect(source("not json") == nil)
        #expect(source("") == nil)
    }
}

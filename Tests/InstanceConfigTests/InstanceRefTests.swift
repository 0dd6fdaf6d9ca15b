import Testing
@testable import InstanceConfig

@Suite struct InstanceRefTests {
    @Test func hostNameCarriesTheProject() {
        #expect(InstanceRef(name: "c1").hostName == "default_c1")
        #expect(InstanceRef(project: "web", name: "c1").hostName == "web_c1")
        #expect(InstanceRef(project: "a.b-c", name: "x-1").hostName == "a.b-c_x-1")
    }

    @Test func hostNameReadsBack() {
        for ref in [InstanceRef(name: "c1"), InstanceRef(project: "web", name: "db-2"), InstanceRef(project: "a.b", name: "x")] {
            #expect(InstanceRef(hostName: ref.hostName) == ref)
        }
    }

    /// The layout before projects (`containers/<name>`) and anything else not of the shape.
    @Test(arguments: ["c1", "", "_c1", "default_", "default_c_1", "default_1c", "-x_c1", "default_c1/..", "de fault_c1"])
    func notAHostName(text: String) {
        #expect(InstanceRef(hostName: text) == nil)
    }

    @Test func apiPathAsLXDWritesIt() {
        #expect(InstanceRef(name: "c1").apiPath == "/1.0/instances/c1")
        #expect(InstanceRef(project: "web", name: "c1").apiPath == "/1.0/instances/c1?project=web")
    }

    @Test func messagesNameDefaultInstancesAsBefore() {
        #expect("\(InstanceRef(name: "c1"))" == "c1")
        #expect("\(InstanceRef(project: "web", name: "c1"))" == "c1 (project web)")
    }

    @Test func sameNameInTwoProjectsIsTwoInstances() {
        let a = InstanceRef(project: "a", name: "c1"), b = InstanceRef(project: "b", name: "c1")
        #expect(a != b && a.hostName != b.hostName && Set([a, b]).count == 2)
        #expect(a < b && InstanceRef(project: "a", name: "c1") < InstanceRef(project: "a", name: "c2"))
    }

    @Test func projectNames() throws {
        for good in ["default", "web", "Team-1", "a.b", "9lives", String(repeating: "p", count: 63)] {
            try ProjectName.validate(good)
        }
        #expect(throws: ProjectName.NameError.underscore("my_project")) { try ProjectName.validate("my_project") }
        #expect(throws: ProjectName.NameError.length("")) { try ProjectName.validate("") }
        #expect(throws: ProjectName.NameError.length(String(repeating: "p", count: 64))) {
            try ProjectName.validate(String(repeating: "p", count: 64))
        }
        for bad in ["a/b", "a b", "it's", "a\"b", "*", "é"] {
            #expect(throws: ProjectName.NameError.characters(bad)) { try ProjectName.validate(bad) }
        }
        for bad in [".", "..", "-x", ".hidden"] {
            #expect(throws: ProjectName.NameError.start(bad)) { try ProjectName.validate(bad) }
        }
    }
}

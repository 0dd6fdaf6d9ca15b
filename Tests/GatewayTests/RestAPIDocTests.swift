import Foundation
@testable import Gateway
import Testing
import Yams

/// docs/rest-api.yaml is the machine-readable API (scripts/fuzz-api fuzzes every route in it):
/// it must list exactly the routes of `Endpoints.all`, each with the access the router enforces.
@Suite struct RestAPIDocTests {
    /// One route as both sides spell it: method, path with `{param}`, access.
    struct Route: Hashable, CustomStringConvertible {
        var method: String
        var path: String
        var access: String
        var description: String { "\(method) \(path) [\(access)]" }
    }

    static let docURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/rest-api.yaml")

    static let methods: Set<String> = ["get", "put", "post", "patch", "delete", "head", "options", "trace"]

    /// The routes the document describes, with problems found on the way (a missing or unknown access).
    static func documented() throws -> (routes: [Route], problems: [String]) {
        let text = try String(contentsOf: docURL, encoding: .utf8)
        guard let root = try Yams.load(yaml: text) as? [String: Any], let paths = root["paths"] as? [String: Any] else {
            throw DocError("\(docURL.path) has no `paths` mapping")
        }
        var routes: [Route] = []
        var problems: [String] = []
        for (path, item) in paths {
            guard let item = item as? [String: Any] else { throw DocError("path \(path) is not a mapping") }
            for (key, operation) in item where methods.contains(key) {
                let method = key.uppercased()
                guard let operation = operation as? [String: Any] else { throw DocError("\(method) \(path) is not a mapping") }
                let access = operation["x-lxd-access"] as? String ?? ""
                if Access(rawValue: access) == nil {
                    problems.append("\(method) \(path): x-lxd-access \"\(access)\" is not one of \(Access.allCases.map(\.rawValue))")
                }
                routes.append(Route(method: method, path: path, access: access))
            }
        }
        return (routes, problems)
    }

    /// `/1.0/instances/:name` -> `/1.0/instances/{name}`.
    static func openAPIPath(_ pattern: String) -> String {
        "/" + pattern.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
    }

    static var table: [Route] {
        Endpoints.all.map { Route(method: $0.method, path: openAPIPath($0.path), access: $0.access.rawValue) }
    }

    @Test func documentListsExactlyTheRoutesTheRouterServesWithTheirAccess() throws {
        let (doc, problems) = try Self.documented()
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
        let documented = Set(doc), served = Set(Self.table)
        let undocumented = served.subtracting(documented).map(\.description).sorted()
        let notServed = documented.subtracting(served).map(\.description).sorted()
        #expect(undocumented.isEmpty, "served but not in docs/rest-api.yaml (add them, with x-lxd-access): \(undocumented)")
        #expect(notServed.isEmpty, "in docs/rest-api.yaml but not in Endpoints.all (or with another access): \(notServed)")
        #expect(doc.count == documented.count, "docs/rest-api.yaml lists a route twice")
    }

    @Test func pathConversionMatchesOpenAPITemplates() {
        #expect(Self.openAPIPath("/") == "/")
        #expect(Self.openAPIPath("/1.0") == "/1.0")
        #expect(Self.openAPIPath("/1.0/instances/:name/logs/:file") == "/1.0/instances/{name}/logs/{file}")
    }

    /// Every path parameter a route declares in its template is described, so the fuzzer generates it.
    @Test func everyPathParameterIsDescribed() throws {
        let text = try String(contentsOf: Self.docURL, encoding: .utf8)
        let root = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(root["paths"] as? [String: Any])
        let components = (root["components"] as? [String: Any])?["parameters"] as? [String: Any] ?? [:]
        func names(_ list: Any?) -> Set<String> {
            Set((list as? [Any] ?? []).compactMap { entry -> String? in
                var p = entry as? [String: Any] ?? [:]
                if let ref = p["$ref"] as? String, let target = components[String(ref.split(separator: "/").last ?? "")] as? [String: Any] {
                    p = target
                }
                return p["in"] as? String == "path" ? p["name"] as? String : nil
            })
        }
        for (path, item) in paths {
            let item = try #require(item as? [String: Any])
            let wanted = Set(path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) })
            for (key, operation) in item where Self.methods.contains(key) {
                let declared = names(item["parameters"]).union(names((operation as? [String: Any])?["parameters"]))
                #expect(declared == wanted, "\(key.uppercased()) \(path) declares path parameters \(declared.sorted()), its template has \(wanted.sorted())")
            }
        }
    }
}

struct DocError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

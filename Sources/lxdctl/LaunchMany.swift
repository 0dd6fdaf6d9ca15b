import APITypes
import LXDClient

/// `lxdctl launch IMAGE --count N`: one request, then the operation's progress until it ends,
/// then a summary (how many, how long, where they went).
enum LaunchMany {
    static func run(client: LXDClient, post: InstancesBatchPost, target: String?) async throws {
        let clock = ContinuousClock()
        let began = clock.now
        let op = try await client.startCreatingInstances(post, target: target)
        let total = post.count ?? 1
        let interactive = Terminal.isTerminal(2)
        var lastShown = ""
        var final = op
        while true {
            let current = try await client.operation(op.id)
            final = current
            let line = "\(post.start == false ? "Creating" : "Creating and starting") instances: \(progress(current) ?? "0/\(total)")"
            if line != lastShown {
                // On a terminal the line is rewritten in place; in a log, one line per change.
                Output.stderr(interactive ? "\r\(line)" : "\(line)\n")
                lastShown = line
            }
            if let status = current.knownStatus, status.isFinal { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        if interactive { Output.stderr("\n") }
        let seconds = seconds(clock.now - began)
        guard final.knownStatus == .success else {
            throw APIError(400, final.err.isEmpty ? "operation \(op.id) failed" : final.err)
        }
        var placement = ""
        if case .object(let members)? = final.metadata?["members"] {
            placement = ": " + members.keys.sorted().map { name -> String in
                if case .int(let n) = members[name]! { return "\(name) \(n)" }
                return name
            }.joined(separator: ", ")
        }
        let rate = seconds > 0 ? Double(total) / seconds : 0
        Output.stdout("Created \(total) instances in \(fixed(seconds, 2)) s (\(fixed(rate, 1))/s)\(placement)\n")
    }

    /// "done/total" (plus failures) from an operation's `progress` metadata.
    static func progress(_ op: APITypes.Operation) -> String? {
        guard case .object(let p)? = op.metadata?["progress"] else { return nil }
        func int(_ key: String) -> Int { if case .int(let v)? = p[key] { return v }; return 0 }
        let failed = int("failed")
        return "\(int("done"))/\(int("total"))" + (failed > 0 ? " (\(failed) failed)" : "")
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// `value` with `digits` decimals (no Foundation formatting in lxdctl).
    static func fixed(_ value: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = Int64(value * scale + 0.5)
        let whole = scaled / Int64(scale)
        let fraction = String(scaled % Int64(scale))
        return digits == 0 ? "\(whole)" : "\(whole)." + String(repeating: "0", count: digits - fraction.count) + fraction
    }
}

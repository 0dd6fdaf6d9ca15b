import APITypes
import Foundation
import Gateway
import LXDClient
import Logging
import Operations
import Testing

// MARK: - Pure parts: the hub, its bounded mailboxes, the relay's policy, the CLI's lines

@Suite struct EventHubTests {
    func event(_ n: Int, type: EventType = .lifecycle) -> Event {
        Event(type: type.rawValue, timestamp: "t\(n)", metadata: .int(n), location: "m1")
    }

    @Test func typeListsParseAndUnknownTypesAreRefused() throws {
        #expect(try EventType.parseList(nil) == Set(EventType.allCases))
        #expect(try EventType.parseList("") == Set(EventType.allCases))
        #expect(try EventType.parseList("operation,lifecycle") == [.operation, .lifecycle])
        #expect(try EventType.parseList("lifecycle") == [.lifecycle])
        #expect(throws: APIError.badRequest("Unknown event type \"bogus\": use operation, lifecycle or logging (comma-separated)")) {
            try EventType.parseList("lifecycle,bogus")
        }
        #expect(throws: APIError.self) { try EventType.parseList("lifecycle,") }
    }

    @Test func subscribersGetTheirTypesOnlyStampedWithTheMember() async {
        let hub = EventHub(location: "m7")
        let lifecycle = hub.subscribe(types: [.lifecycle])
        let operations = hub.subscribe(types: [.operation])
        hub.lifecycle(.instanceStarted, source: "/1.0/instances/c1", name: "c1")
        hub.publish(type: .operation, metadata: .object(["id": .string("x")]))
        lifecycle.close()
        operations.close()
        var seen: [Event] = []
        for await e in lifecycle.stream { seen.append(e) }
        #expect(seen.count == 1)
        #expect(seen.first?.location == "m7")
        #expect(seen.first?.metadata["action"]?.stringValue == "instance-started")
        #expect(seen.first?.metadata["source"]?.stringValue == "/1.0/instances/c1")
        var ops: [Event] = []
        for await e in operations.stream { ops.append(e) }
        #expect(ops.map(\.type) == ["operation"])
    }

    @Test func aSubscriberThatFallsBehindIsCutOffAfterAnUnbrokenPrefix() async {
        let hub = EventHub(location: "m1")
        let slow = hub.subscribe(types: [.lifecycle], capacity: 3)
        let fast = hub.subscribe(types: [.lifecycle], capacity: 100)
        for n in 1...5 { hub.publish(event(n)) }
        #expect(slow.overflowed)
        #expect(!fast.overflowed)
        var got: [Int] = []
        for await e in slow.stream { got.append(e.metadata.intValue ?? -1) }
        // What was queued before the cut-off, in order; then the end.
        #expect(got == [1, 2, 3])
        // The cut-off subscriber is gone from the hub; the other one is untouched.
        #expect(hub.subscriberCount == 1)
        fast.close()
        var all: [Int] = []
        for await e in fast.stream { all.append(e.metadata.intValue ?? -1) }
        #expect(all == [1, 2, 3, 4, 5])
        #expect(hub.subscriberCount == 0)
    }

    @Test func aReaderThatLeavesUnsubscribes() async {
        let hub = EventHub(location: "m1")
        let mailbox = hub.subscribe(types: [.lifecycle])
        let reader = Task { for await _ in mailbox.stream {} }
        #expect(hub.subscriberCount == 1)
        reader.cancel()
        await reader.value
        #expect(hub.subscriberCount == 0)
        // Publishing afterwards reaches nobody and does not fail.
        hub.publish(event(1))
    }

    @Test func operationsPublishEveryStateChange() async throws {
        let registry = OperationRegistry(location: "m2", memberID: 2, logger: Logger(label: "test"))
        let mailbox = registry.events.subscribe(types: [.operation])
        let ok = await registry.start(description: "works") { context in
            await context.setMetadata("progress", .int(50))
            return ["answer": .int(42)]
        }
        _ = await registry.wait(ok.id, timeout: .seconds(5))
        let bad = await registry.start(description: "fails") { _ in throw APIError.badRequest("no good") }
        _ = await registry.wait(bad.id, timeout: .seconds(5))
        let cancelled = await registry.start(description: "cancelled") { _ in throw CancellationError() }
        _ = await registry.wait(cancelled.id, timeout: .seconds(5))
        mailbox.close()
        var seen: [(id: String, status: String, err: String)] = []
        for await e in mailbox.stream {
            #expect(e.type == "operation" && e.location == "m2")
            seen.append((e.metadata["id"]?.stringValue ?? "", e.metadata["status"]?.stringValue ?? "", e.metadata["err"]?.stringValue ?? ""))
        }
        #expect(seen.filter { $0.id == ok.id }.map(\.status) == ["Running", "Running", "Success"])
        #expect(seen.filter { $0.id == bad.id }.map(\.status) == ["Running", "Failure"])
        #expect(seen.first { $0.id == bad.id && $0.status == "Failure" }?.err == "no good")
        #expect(seen.filter { $0.id == cancelled.id }.map(\.status) == ["Running", "Cancelled"])
    }

    @Test func relayBackoffDoublesToACapAndPlansFollowTheMemberList() {
        #expect(EventRelayPolicy.backoff(failures: 1) == .milliseconds(100))
        #expect(EventRelayPolicy.backoff(failures: 2) == .milliseconds(200))
        #expect(EventRelayPolicy.backoff(failures: 4) == .milliseconds(800))
        #expect(EventRelayPolicy.backoff(failures: 7) == .seconds(5))
        #expect(EventRelayPolicy.backoff(failures: 1000) == .seconds(5))
        let plan = EventRelayPolicy.plan(running: ["m2", "m3"], members: ["m3", "m4"])
        #expect(plan.start == ["m4"] && plan.stop == ["m2"])
        let none = EventRelayPolicy.plan(running: ["m2"], members: ["m2"])
        #expect(none.start.isEmpty && none.stop.isEmpty)
    }

    @Test func aLinkIsDeadAfterItsMissedPingsOnlyAndAnyFrameRevivesIt() {
        let t0 = ContinuousClock.now
        var link = LinkLiveness(missedLimit: 3, openedAt: t0)
        // The pong to the first ping.
        #expect(link.tick(lastHeard: t0 + .milliseconds(3)) == .ping)
        #expect(link.missed == 0)
        // Two silent intervals: still alive.
        #expect(link.tick(lastHeard: t0 + .milliseconds(3)) == .ping)
        #expect(link.tick(lastHeard: t0 + .milliseconds(3)) == .ping)
        #expect(link.missed == 2)
        // Any frame (an event as much as a pong) starts the count again.
        #expect(link.tick(lastHeard: t0 + .seconds(2)) == .ping)
        #expect(link.missed == 0)
        #expect(link.tick(lastHeard: t0 + .seconds(2)) == .ping)
        #expect(link.tick(lastHeard: t0 + .seconds(2)) == .ping)
        #expect(link.tick(lastHeard: t0 + .seconds(2)) == .dead(missed: 3))
        // A link nothing ever came back on is dead after exactly the limit.
        var mute = LinkLiveness(missedLimit: 2, openedAt: t0)
        #expect(mute.tick(lastHeard: t0) == .ping)
        #expect(mute.tick(lastHeard: t0) == .dead(missed: 2))
    }

    @Test func pingTimingIsProductionUnlessTheEnvironmentSetsAnInterval() {
        #expect(EventLinkTiming.production.pingInterval == .seconds(5))
        #expect(EventLinkTiming.production.deadAfter == .seconds(15))
        #expect(EventLinkTiming(environment: [:]) == .production)
        let fast = EventLinkTiming(environment: [EventLinkTiming.intervalVariable: "1000"])
        #expect(fast.pingInterval == .seconds(1) && fast.missedPings == 3 && fast.deadAfter == .seconds(3))
        for bad in ["", "abc", "10", "-5", "1.5", "999999999"] {
            #expect(EventLinkTiming(environment: [EventLinkTiming.intervalVariable: bad]) == .production, "\(bad)")
        }
    }

    @Test func theMissedEventsNoticeNamesTheMemberAndTheSpan() throws {
        let from = Date(timeIntervalSince1970: 1_800_000_000)
        let to = from.addingTimeInterval(17.25)
        let notice = EventRelayPolicy.missedEventsNotice(member: "m3", from: from, to: to, location: "m1")
        #expect(notice.type == "logging" && notice.location == "m1" && notice.project == "default")
        let (start, end) = (OperationRegistry.timestamp(from), OperationRegistry.timestamp(to))
        #expect(notice.timestamp == end)
        #expect(notice.metadata["level"]?.stringValue == "warning")
        #expect(notice.metadata["context"] == .object(["member": .string("m3"), "from": .string(start), "to": .string(end)]))
        let message = try #require(notice.metadata["message"]?.stringValue)
        #expect(message.hasPrefix("Events from member m3 between \(start) and \(end) may have been missed"), "\(message)")
        // lxdctl monitor prints it like any log record.
        #expect(EventText.line(notice) == "\(end) m1 logging warning \(message)")
    }

    @Test func prettyLinesNameWhatHappenedWhere() {
        let lifecycle = Event(type: "lifecycle", timestamp: "T", metadata: LifecycleEvent(
            action: .instanceStopped, source: "/1.0/instances/c1", name: "c1", context: ["stateful": .bool(true)]).jsonValue, location: "m3")
        #expect(EventText.line(lifecycle) == "T m3 lifecycle instance-stopped /1.0/instances/c1 stateful=true")
        let op = Event(type: "operation", timestamp: "T", metadata: .object([
            "id": .string("abc"), "status": .string("Failure"), "description": .string("Creating instance"), "err": .string("boom"),
        ]), location: "m1")
        #expect(EventText.line(op) == "T m1 operation Failure \"Creating instance\" abc error=\"boom\"")
    }
}

// MARK: - Real members

/// What one `/1.0/events` watcher has received so far.
actor EventLog {
    private(set) var events: [Event] = []
    private(set) var ended = false
    func add(_ e: Event) { events.append(e) }
    func end() { ended = true }
}

/// A watcher reading into an `EventLog` in the background.
final class Watcher: Sendable {
    let log = EventLog()
    let stream: EventStream
    let reader: Task<Void, Never>

    init(_ client: LXDClient, types: Set<EventType>? = [.lifecycle, .operation], headers: [(name: String, value: String)] = []) async throws {
        stream = try await client.watchEvents(types: types, headers: headers)
        let (stream, log) = (self.stream, self.log)
        reader = Task {
            do { for try await e in stream { await log.add(e) } } catch {}
            await log.end()
        }
    }

    /// Waits until `condition` holds for the events so far; records an issue on timeout.
    @discardableResult
    func until(_ what: String, timeout: Double = 30, _ condition: @Sendable ([Event]) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition(await log.events) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for events: \(what); got \(await log.events.map(Self.describe))")
        return false
    }

    func close() async {
        await stream.close()
        reader.cancel()
    }

    static func describe(_ e: Event) -> String {
        "\(e.location):\(e.type):\(e.metadata["action"]?.stringValue ?? e.metadata["status"]?.stringValue ?? "?"):\(e.metadata["source"]?.stringValue ?? e.metadata["description"]?.stringValue ?? "")"
    }
}

extension Event {
    func isLifecycle(_ action: LifecycleAction, _ source: String) -> Bool {
        type == "lifecycle" && metadata["action"]?.stringValue == action.rawValue && metadata["source"]?.stringValue == source
    }
}

@Suite(.serialized, .enabled(if: Prerequisites.available, "needs root, busybox and the built binaries"))
final class EventTests {
    var agents: [TestAgent] = []

    deinit {
        for a in agents.reversed() { a.destroy() }
    }

    /// `joiner` joins through `issuer`; waits until the first `members` agents of `cluster` list that many.
    static func join(_ joiner: TestAgent, via issuer: TestAgent, cluster: [TestAgent], members: Int) throws {
        let out = try issuer.ok(["cluster", "add", joiner.name])
        let token = try #require(out.split(separator: "\n").last.map(String.init))
        let join = try joiner.ctl(["cluster", "join", token])
        try #require(join.status == 0, "join \(joiner.name): \(join.stderr)\n\(joiner.logTail())")
        for a in cluster.prefix(members) {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, (try? a.ok(["cluster", "list", "--format", "csv"]).split(separator: "\n").count) != members { usleep(100_000) }
        }
    }

    /// Lines of `agent`'s log holding every one of `words`.
    static func logLines(_ agent: TestAgent, containing words: [String]) -> [String] {
        agent.logTail(Int.max).split(separator: "\n").map(String.init).filter { line in words.allSatisfy { line.contains($0) } }
    }

    @Test func aLaunchIsSeenAsLifecycleAndOperationEvents() async throws {
        let m1 = try TestAgent(name: "m1")
        agents.append(m1)
        let client = LXDClient.unixSocket(m1.socket)
        let watcher = try await Watcher(client)
        let logs = try await Watcher(client, types: [.logging])
        // lxdctl monitor, the way an operator watches, alongside.
        let monitorOut = "\(m1.dataDir)/monitor.out"
        _ = FileManager.default.createFile(atPath: monitorOut, contents: nil)
        let monitor = Process()
        monitor.executableURL = URL(fileURLWithPath: Paths.lxdctl)
        monitor.arguments = ["monitor", "--type", "lifecycle", "--format", "json"]
        monitor.environment = ProcessInfo.processInfo.environment.merging(m1.env) { $1 }
        monitor.standardOutput = FileHandle(forWritingAtPath: monitorOut)
        monitor.standardError = FileHandle.nullDevice
        try monitor.run()
        defer { if monitor.isRunning { monitor.terminate(); monitor.waitUntilExit() } }

        try m1.importBusybox()
        await watcher.until("image-created") { $0.contains { $0.type == "lifecycle" && $0.metadata["action"]?.stringValue == "image-created" } }
        // The agent's log records, as logging events, to the watcher that asked for them only.
        await logs.until("the import's log record") { events in
            events.contains { $0.type == "logging" && $0.metadata["message"]?.stringValue == "imported image layer"
                && $0.metadata["level"]?.stringValue == "info" && $0.metadata["context"]?["fingerprint"] != nil && $0.location == "m1" }
        }
        #expect(await logs.log.events.allSatisfy { $0.type == "logging" })
        #expect(await watcher.log.events.allSatisfy { $0.type != "logging" })
        await logs.close()

        try m1.ok(["launch", "busybox", "c1"])
        // The operation's Success is published after the lifecycle events, and events reach a
        // watcher asynchronously, after `launch` has returned: wait for all three.
        await watcher.until("c1 created and started, its operation done") { events in
            events.contains { $0.isLifecycle(.instanceCreated, "/1.0/instances/c1") }
                && events.contains { $0.isLifecycle(.instanceStarted, "/1.0/instances/c1") }
                && events.contains { $0.type == "operation" && $0.metadata["resources"]?["instances"] == .array([.string("/1.0/instances/c1")])
                    && $0.metadata["status"]?.stringValue == "Success" }
        }
        let events = await watcher.log.events
        let created = try #require(events.firstIndex { $0.isLifecycle(.instanceCreated, "/1.0/instances/c1") })
        let started = try #require(events.firstIndex { $0.isLifecycle(.instanceStarted, "/1.0/instances/c1") })
        #expect(created < started)
        #expect(events.allSatisfy { $0.location == "m1" && $0.project == "default" })
        // The create operation: announced running, then successful, about c1.
        let createOps = events.filter { $0.type == "operation" && $0.metadata["resources"]?["instances"] == .array([.string("/1.0/instances/c1")]) }
        let statuses = createOps.compactMap { $0.metadata["status"]?.stringValue }
        #expect(statuses.first == "Running" && statuses.last == "Success", "\(statuses)")

        try m1.ok(["stop", "c1", "--force"])
        try m1.ok(["delete", "c1"])
        await watcher.until("c1 stopped and deleted") { events in
            events.contains { $0.isLifecycle(.instanceStopped, "/1.0/instances/c1") }
                && events.contains { $0.isLifecycle(.instanceDeleted, "/1.0/instances/c1") }
        }

        // The monitor printed the same lifecycle events, one JSON object per line.
        let deadline = Date().addingTimeInterval(10)
        var printed: [Event] = []
        while Date() < deadline {
            let text = (try? String(contentsOfFile: monitorOut, encoding: .utf8)) ?? ""
            printed = text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Event.self, from: Data($0.utf8)) }
            if printed.contains(where: { $0.isLifecycle(.instanceDeleted, "/1.0/instances/c1") }) { break }
            usleep(100_000)
        }
        #expect(printed.contains { $0.isLifecycle(.instanceCreated, "/1.0/instances/c1") }, "monitor printed: \(printed.map(Watcher.describe))")
        #expect(printed.contains { $0.isLifecycle(.instanceDeleted, "/1.0/instances/c1") })
        #expect(printed.allSatisfy { $0.type == "lifecycle" })
        await watcher.close()
    }

    @Test func badEventRequestsAreRefused() async throws {
        let m1 = try TestAgent(name: "m1")
        agents.append(m1)
        let client = LXDClient.unixSocket(m1.socket)
        do {
            _ = try await client.transport.openWebSocket(HTTPRequest(.GET, "/1.0/events", query: [QueryItem("type", "lifecycle,bogus")]))
            Issue.record("an unknown event type was accepted")
        } catch let error as APIError {
            // hummingbird-websocket answers every refused upgrade with an empty 400 of its own.
            #expect(error.status == 400, "\(error)")
        }
        // The same request without the upgrade carries LXD's error body.
        do {
            _ = try await client.raw(HTTPRequest(.GET, "/1.0/events", query: [QueryItem("type", "lifecycle,bogus")]))
            Issue.record("an unknown event type was accepted")
        } catch let error as APIError {
            #expect(error.status == 400 && error.message.contains("Unknown event type \"bogus\""), "\(error)")
        }
        // Not a websocket: a clear 400 rather than an empty 200.
        do {
            _ = try await client.raw(HTTPRequest(.GET, "/1.0/events"))
            Issue.record("a plain GET of /1.0/events was answered")
        } catch let error as APIError {
            #expect(error.status == 400 && error.message.contains("websocket"), "\(error)")
        }
        let cli = try m1.ctl(["monitor", "--type", "nonsense"])
        #expect(cli.status == 1 && cli.stderr.contains("Unknown event type \"nonsense\""), "\(cli.stderr)")
        await client.transport.shutdown()
    }

    /// A watcher on m1 sees what happens on m3, located there, exactly once; a forwarded request
    /// (what members send each other) is answered with the member's own events only; a member
    /// that goes down holds up nobody and is re-dialled when it is back.
    @Test func oneMemberRelaysTheWholeClusterOnce() async throws {
        let begun = Date()
        let m = try (1...3).map { n in try TestAgent(name: "m\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())") }
        agents = m
        let (m1, m2, m3) = (m[0], m[1], m[2])
        func join(_ joiner: TestAgent, via issuer: TestAgent, members: Int) throws {
            try Self.join(joiner, via: issuer, cluster: m, members: members)
        }
        try join(m2, via: m1, members: 2)
        let c1 = LXDClient.unixSocket(m1.socket)
        let whole = try await Watcher(c1)
        let ownOnly = try await Watcher(c1, headers: [(name: "X-LXD-Forwarded", value: "test")])

        // m3 joins while the watcher is connected, admitted by m2: m2's event and then m3's own reach m1.
        try join(m3, via: m2, members: 3)
        print("events test: cluster formed in \(String(format: "%.1f", Date().timeIntervalSince(begun))) s")
        await whole.until("m3 admitted by m2") { $0.contains { $0.isLifecycle(.clusterMemberAdded, "/1.0/cluster/members/m3") && $0.location == "m2" } }
        try m3.importBusybox(alias: "bb")
        let fingerprint = try await LXDClient.unixSocket(m3.socket).resolveImage("bb")

        // Relays come up in the background (m3's once the member list shows it): probe with alias
        // events on m2 and m3 until both arrive.
        var probes = 0
        // Retried: right after a join the database leader may move, and a commit whose outcome
        // is unknown is reported rather than re-run (the probe only needs some event).
        func probe(_ member: TestAgent) async throws -> String {
            var attempt = 0
            while true {
                probes += 1
                attempt += 1
                let name = "probe-\(member.name)-\(probes)"
                do {
                    try await LXDClient.unixSocket(member.socket).createImageAlias(name, target: fingerprint)
                    return name
                } catch where attempt < 5 {
                    print("events: probe on \(member.name) failed, retrying: \(error)")
                    try await Task.sleep(for: .milliseconds(300))
                }
            }
        }
        let watching = Date()
        for member in [m2, m3] {
            let deadline = Date().addingTimeInterval(20)
            var seen = false
            while !seen, Date() < deadline {
                let alias = try await probe(member)
                try? await Task.sleep(for: .milliseconds(300))
                seen = await whole.log.events.contains { $0.isLifecycle(.imageAliasCreated, "/1.0/images/aliases/\(alias)") && $0.location == member.name }
            }
            #expect(seen, "no events from \(member.name) reached the watcher on m1")
        }
        print("events: relays from m2 and m3 delivering \(String(format: "%.2f", Date().timeIntervalSince(watching))) s after m3's image import")

        try m1.ok(["launch", "bb", "c3", "--target", "m3"])
        await whole.until("c3 created on m3") { $0.contains { $0.isLifecycle(.instanceStarted, "/1.0/instances/c3") } }
        // Late duplicates would arrive within moments.
        try await Task.sleep(for: .seconds(1))
        let events = await whole.log.events
        let created = events.filter { $0.isLifecycle(.instanceCreated, "/1.0/instances/c3") }
        #expect(created.count == 1, "instance-created seen \(created.count) times")
        #expect(created.first?.location == "m3")
        #expect(events.contains { $0.type == "operation" && $0.location == "m3" }, "no operation events from m3")
        // The forwarded watcher got m1's own events only.
        let foreign = await ownOnly.log.events.filter { $0.location != "m1" }
        #expect(foreign.isEmpty, "a forwarded events request relayed: \(foreign.map(Watcher.describe))")

        // m2 dies: m3's events still arrive; m2 comes back and is re-dialled without a reconnect.
        m1.waitForVoters(["m1", "m2", "m3"])
        m2.kill9()
        let alias = try await probe(m3)
        await whole.until("m3 events with m2 down") { $0.contains { $0.isLifecycle(.imageAliasCreated, "/1.0/images/aliases/\(alias)") } }
        try m2.start()
        let restarted = Date()
        let deadline = Date().addingTimeInterval(30)
        var back = false
        while !back, Date() < deadline {
            let alias = try await probe(m2)
            try? await Task.sleep(for: .milliseconds(500))
            back = await whole.log.events.contains { $0.isLifecycle(.imageAliasCreated, "/1.0/images/aliases/\(alias)") && $0.location == "m2" }
        }
        #expect(back, "events from m2 did not resume after its restart")
        print("events: m2's events reach the watcher on m1 again \(String(format: "%.2f", Date().timeIntervalSince(restarted))) s after m2 answers again")
        #expect(await !whole.log.ended)

        try m1.ok(["delete", "--force", "c3"])
        await whole.until("c3 deleted on m3") { $0.contains { $0.isLifecycle(.instanceDeleted, "/1.0/instances/c3") && $0.location == "m3" } }

        // A member with a watcher's relay attached still stops promptly (the link is not a request to drain).
        let stopping = Date()
        m2.stop()
        let stopTime = Date().timeIntervalSince(stopping)
        print("events: m2 stopped in \(String(format: "%.2f", stopTime)) s with a relay attached")
        #expect(stopTime < 10, "m2 took \(stopTime) s to stop with an event relay attached")
        // Back up, so the teardown's requests find a quorum until the end.
        try m2.start()
        #expect(await !whole.log.ended)
        await whole.close()
        await ownOnly.close()
        print("events test: body done at \(String(format: "%.1f", Date().timeIntervalSince(begun))) s")
    }

    /// A frozen member (SIGSTOP: its kernel keeps the connection open, it says nothing) is found
    /// out by the relay's pings, declared dead and re-dialled; once it runs again its events reach
    /// the watcher, right after one notice that events from it may have been missed. A frozen
    /// watcher is dropped by the member serving it.
    @Test func aFrozenMemberIsDeclaredDeadAndItsGapAnnounced() async throws {
        // Members started here ping every second: dead after 3-4 s of silence, not 15-20.
        setenv(EventLinkTiming.intervalVariable, "1000", 1)
        defer { unsetenv(EventLinkTiming.intervalVariable) }
        let begun = Date()
        let m = try (1...3).map { n in try TestAgent(name: "m\(n)", httpsAddress: "127.0.0.\(n):\(TestAgent.freePort())") }
        agents = m
        let (m1, m2, m3) = (m[0], m[1], m[2])
        try Self.join(m2, via: m1, cluster: m, members: 2)
        try Self.join(m3, via: m1, cluster: m, members: 3)
        print("frozen-member test: cluster formed in \(String(format: "%.1f", Date().timeIntervalSince(begun))) s")

        // Lifecycle and operation events only: the notice must reach such a watcher too.
        let watcher = try await Watcher(LXDClient.unixSocket(m1.socket))
        try m3.importBusybox(alias: "bb")
        let c3 = LXDClient.unixSocket(m3.socket)
        let fingerprint = try await c3.resolveImage("bb")
        var probes = 0
        /// Creates an alias on m3 (an event located there) until the watcher has one; the alias seen.
        func m3Reaches(within seconds: Double) async -> String? {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                probes += 1
                let alias = "probe-\(probes)"
                guard (try? await c3.createImageAlias(alias, target: fingerprint)) != nil else {
                    try? await Task.sleep(for: .milliseconds(300))
                    continue
                }
                let seen = Date().addingTimeInterval(1.5)
                while Date() < seen {
                    if await watcher.log.events.contains(where: { $0.isLifecycle(.imageAliasCreated, "/1.0/images/aliases/\(alias)") && $0.location == "m3" }) {
                        return alias
                    }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            return nil
        }
        try #require(await m3Reaches(within: 20) != nil, "no events from m3 reached the watcher on m1")

        // A second watcher, lxdctl monitor, to be frozen along with m3.
        let monitor = Process()
        monitor.executableURL = URL(fileURLWithPath: Paths.lxdctl)
        monitor.arguments = ["monitor", "--type", "lifecycle"]
        monitor.environment = ProcessInfo.processInfo.environment.merging(m1.env) { $1 }
        monitor.standardOutput = FileHandle.nullDevice
        monitor.standardError = FileHandle.nullDevice
        try monitor.run()
        defer { kill(monitor.processIdentifier, SIGKILL); monitor.waitUntilExit() }
        try await Task.sleep(for: .seconds(1))

        let deadBefore = Self.logLines(m1, containing: ["event relay from member declared dead", "from=m3"]).count
        let droppedBefore = Self.logLines(m1, containing: ["event watcher stopped answering pings", "watcher=client"]).count
        m1.waitForVoters(["m1", "m2", "m3"])
        let pid = try #require(m3.process?.processIdentifier)
        kill(pid, SIGSTOP)
        kill(monitor.processIdentifier, SIGSTOP)
        var frozen = true
        defer { if frozen { kill(pid, SIGCONT) } }
        let stopped = Date()
        var declaredAfter: Double?
        var droppedAfter: Double?
        while Date().timeIntervalSince(stopped) < 15, declaredAfter == nil || droppedAfter == nil {
            if declaredAfter == nil, Self.logLines(m1, containing: ["event relay from member declared dead", "from=m3"]).count > deadBefore {
                declaredAfter = Date().timeIntervalSince(stopped)
            }
            if droppedAfter == nil, Self.logLines(m1, containing: ["event watcher stopped answering pings", "watcher=client"]).count > droppedBefore {
                droppedAfter = Date().timeIntervalSince(stopped)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(declaredAfter != nil, "m1 did not declare its relay from frozen m3 dead; log:\n\(m1.logTail())")
        #expect(droppedAfter != nil, "m1 did not drop the frozen lxdctl monitor; log:\n\(m1.logTail())")
        print("frozen-member test: relay from m3 declared dead \(declaredAfter.map { String(format: "%.1f", $0) } ?? "never") s after SIGSTOP, "
              + "frozen monitor dropped after \(droppedAfter.map { String(format: "%.1f", $0) } ?? "never") s (ping 1 s, 3 misses)")

        kill(pid, SIGCONT)
        frozen = false
        let resumed = Date()
        let alias = await m3Reaches(within: 20)
        #expect(alias != nil, "events from m3 did not resume after SIGCONT; m1 log:\n\(m1.logTail())")
        print("frozen-member test: m3's events reach the watcher again \(String(format: "%.1f", Date().timeIntervalSince(resumed))) s after SIGCONT")

        let events = await watcher.log.events
        let notices = events.indices.filter { events[$0].type == "logging" && events[$0].metadata["context"]?["member"]?.stringValue == "m3" }
        #expect(notices.count == 1, "missed-events notices for m3: \(notices.map { events[$0].metadata })")
        if let first = notices.first, let alias {
            let notice = events[first]
            #expect(notice.location == "m1")
            let message = notice.metadata["message"]?.stringValue ?? ""
            #expect(message.contains("Events from member m3 between") && message.contains("may have been missed"), "\(message)")
            let (from, to) = (notice.metadata["context"]?["from"]?.stringValue ?? "", notice.metadata["context"]?["to"]?.stringValue ?? "")
            #expect(!from.isEmpty && from < to, "\(from) .. \(to)")
            // The gap starts before the freeze was noticed and ends after the member ran again.
            #expect(to >= OperationRegistry.timestamp(resumed.addingTimeInterval(-1)), "notice ends at \(to), SIGCONT at \(resumed)")
            let back = try #require(events.firstIndex { $0.isLifecycle(.imageAliasCreated, "/1.0/images/aliases/\(alias)") })
            #expect(first < back, "the notice came after m3's first event since it resumed")
        }
        let relayLines = Self.logLines(m1, containing: ["event relay from member", "from=m3"])
        #expect(relayLines.contains { $0.contains("re-established") })
        print("frozen-member test: m1 logged\n" + relayLines.joined(separator: "\n"))
        #expect(await !watcher.log.ended)
        await watcher.close()
        _ = m2
        print("frozen-member test: body done at \(String(format: "%.1f", Date().timeIntervalSince(begun))) s")
    }
}

import APITypes
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Operations

/// `GET /1.0/events?type=operation,lifecycle`: a websocket carrying one JSON event per text frame.
///
/// A client's request gets this member's events plus those of every other member: the serving
/// member opens `/1.0/events` on each of them with the forwarding marker, and such a forwarded
/// request is answered with the answering member's own events only. Every event is therefore
/// relayed at most once, by the member its watcher is connected to, and never loops.
extension APIRoutes {
    func addEventRoutes(_ router: Router<Context>) {
        let r = self
        router.ws("/1.0/events") { req, _ in
            // Refusals must be an LXD error with its status, here and on the plain-HTTP retry
            // Hummingbird makes after a refused upgrade.
            _ = try EventStreamRequest(req)
            return .upgrade([:])
        } onUpgrade: { inbound, outbound, wsContext in
            guard let request = try? EventStreamRequest(wsContext.request) else { return }
            await r.streamEvents(request, inbound: inbound, outbound: outbound, channel: wsContext.requestContext.channel)
        }
    }

    /// Runs one watcher's stream until the client leaves, a write fails, the watcher falls
    /// `EventHub.defaultCapacity` events behind (then it gets what was queued and is disconnected),
    /// or it stops answering pings (a frozen or cut-off client must not hold its subscription).
    func streamEvents(_ request: EventStreamRequest, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                      channel: any Channel, timing: EventLinkTiming = .current) async {
        let mailbox = BoundedMailbox<String>(capacity: EventHub.defaultCapacity)
        let local = operations.events.subscribe(types: request.types)
        var log = logger
        log[metadataKey: "events"] = "\(request.types.map(\.rawValue).sorted().joined(separator: ","))"
        log[metadataKey: "watcher"] = "\(request.forwardedBy.map { "member \($0)" } ?? "client")"
        let relay: EventRelay? = request.forwarded ? nil : forwarder.map { EventRelay(forwarder: $0, types: request.types, logger: log, timing: timing) }
        let arrivals: ServedFrameArrivals?
        do {
            arrivals = try await ServedFrameArrivals.install(on: channel)
        } catch {
            // Hummingbird's own pings (every 30 s) still drop a dead watcher, only later.
            log.warning("cannot watch the events websocket for pongs; dead watchers are dropped later", metadata: ["error": "\(error)"])
            arrivals = nil
        }
        await withTaskGroup(of: Bool.self) { group in
            // The client sends nothing; its close (or a dropped connection) ends the stream.
            group.addTask {
                do { for try await _ in inbound.messages(maxSize: 1 << 16) {} } catch {}
                return true
            }
            group.addTask {
                for await text in mailbox.stream {
                    do { try await outbound.write(.text(text)) } catch { return true }
                }
                return true
            }
            group.addTask {
                for await event in local.stream {
                    guard let text = EventStreamRequest.encode(event) else { continue }
                    if !mailbox.offer(text) { break }
                }
                // Only a cut-off ends the local subscription while the session lives.
                if local.overflowed { mailbox.close() }
                return false
            }
            if let relay {
                group.addTask {
                    await relay.run(into: mailbox)
                    return false
                }
            }
            if let arrivals {
                let log = log
                group.addTask {
                    var liveness = LinkLiveness(missedLimit: timing.missedPings, openedAt: arrivals.last)
                    while true {
                        // Not awaited: a watcher that stopped reading blocks writes, and this
                        // loop must still count its silence. Each ends when the socket does.
                        Task { try? await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer()))) }
                        do { try await Task.sleep(for: timing.pingInterval) } catch { return false }
                        if case .dead(let missed) = liveness.tick(lastHeard: arrivals.last) {
                            log.notice("event watcher stopped answering pings; dropping it", metadata: [
                                "silent": "\(timing.pingInterval * missed)", "missedPings": "\(missed)",
                            ])
                            return true
                        }
                    }
                }
            }
            while let endsSession = await group.next() {
                if endsSession { break }
            }
            group.cancelAll()
        }
        local.close()
        mailbox.close()
        if mailbox.overflowed || local.overflowed {
            log.notice("event watcher fell too far behind and was disconnected", metadata: ["capacity": "\(EventHub.defaultCapacity)"])
        }
    }
}

/// A parsed `/1.0/events` request.
struct EventStreamRequest: Sendable {
    let types: Set<EventType>
    /// Sent by another member: answer with this member's own events only.
    var forwarded: Bool { forwardedBy != nil }
    /// The marker's value: the name of the member relaying (any value marks a forwarded request).
    let forwardedBy: String?

    init(_ req: Request) throws {
        types = try Self.types(req.uri.queryParameters.get("type"))
        guard req.headers[HTTPField.Name("Sec-WebSocket-Key")!] != nil else {
            throw EventRefusal(.badRequest("/1.0/events is a websocket: connect with an HTTP upgrade (lxdctl monitor does)"))
        }
        forwardedBy = req.headers[HTTPField.Name(Forwarding.markerHeader)!]
    }

    static func types(_ text: String?) throws -> Set<EventType> {
        do {
            return try EventType.parseList(text)
        } catch {
            throw EventRefusal(Reply.apiError(from: error))
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func encode(_ event: Event) -> String? {
        (try? encoder.encode(event)).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// An events request refused before the upgrade: rendered as LXD's error body by Hummingbird,
/// and by the forwarding middleware (which maps errors through `APIErrorConvertible`).
struct EventRefusal: HTTPResponseError, APIErrorConvertible {
    let apiError: APIError
    init(_ error: APIError) { apiError = error }
    var status: HTTPResponse.Status { .init(code: apiError.status) }
    func response(from request: Request, context: some RequestContext) throws -> Response { Reply.error(apiError) }
}

/// Brings the events of every other member into one watcher's mailbox: one forwarded websocket
/// per member, and the member list re-read so joining and leaving members are followed. A link
/// is re-dialled with backoff when it drops, cannot be opened, or goes silent: it is pinged every
/// `timing.pingInterval` and given up after `timing.missedPings` intervals with no frame at all
/// (a frozen or partitioned member keeps a TCP connection open and says nothing). A member that
/// is down holds up nobody. When a link that was up comes back, the watcher is sent a `logging`
/// event naming the member and the span its events may be missing for (they are not replayed).
struct EventRelay: Sendable {
    let forwarder: any MemberForwarder
    let types: Set<EventType>
    let logger: Logger
    var timing: EventLinkTiming = .current

    var target: String { "/1.0/events?type=\(types.map(\.rawValue).sorted().joined(separator: ","))" }

    /// Until cancelled.
    func run(into mailbox: BoundedMailbox<String>) async {
        var relays: [String: Task<Void, Never>] = [:]
        defer { for task in relays.values { task.cancel() } }
        while !Task.isCancelled {
            if let members = try? await forwarder.otherMembers() {
                let plan = EventRelayPolicy.plan(running: Set(relays.keys), members: Set(members))
                for name in plan.stop { relays.removeValue(forKey: name)?.cancel() }
                for name in plan.start {
                    relays[name] = Task { await relay(from: name, into: mailbox) }
                }
            }
            do { try await Task.sleep(for: EventRelayPolicy.memberRefresh) } catch { break }
        }
    }

    /// How one link ended.
    enum LinkEnd: Equatable {
        /// The member closed it or the connection dropped.
        case closed
        /// Nothing arrived for `missed` ping intervals.
        case dead(missed: Int)
        /// The watcher is gone (its mailbox closed).
        case watcherLeft
    }

    private func relay(from member: String, into mailbox: BoundedMailbox<String>) async {
        var failures = 0
        // Set while a link that was up is down: when its last frame arrived (events the member
        // published after that may be lost).
        var outageSince: Date?
        while !Task.isCancelled {
            do {
                let socket = try await dial(member)
                let up = Date()
                if let since = outageSince {
                    logger.info("event relay from member re-established", metadata: [
                        "from": "\(member)", "down": "\(String(format: "%.1f", up.timeIntervalSince(since))) s",
                    ])
                    let notice = EventRelayPolicy.missedEventsNotice(member: member, from: since, to: up, location: forwarder.localMemberName)
                    if let text = EventStreamRequest.encode(notice), !mailbox.offer(text) {
                        await socket.close()
                        return
                    }
                } else if failures > 0 {
                    logger.info("event relay from member established", metadata: ["from": "\(member)"])
                }
                outageSince = nil
                failures = 0
                let end = await pump(socket, into: mailbox)
                let silence = ContinuousClock.now - socket.lastHeard
                outageSince = Date().addingTimeInterval(-silence.seconds)
                switch end {
                case .watcherLeft:
                    await socket.close()
                    return
                case .closed:
                    await socket.close()
                    if Task.isCancelled { return }
                    logger.debug("event relay from member ended; re-dialling", metadata: ["from": "\(member)"])
                case .dead(let missed):
                    // Closing waits for the member's answer: not on the way to the re-dial.
                    Task { await socket.close() }
                    if Task.isCancelled { return }
                    logger.warning("event relay from member declared dead: no frame for \(missed) pings; re-dialling", metadata: [
                        "from": "\(member)", "silent": "\(String(format: "%.1f", silence.seconds)) s",
                        "pingInterval": "\(timing.pingInterval)",
                    ])
                }
            } catch {
                // One line per outage, not one per attempt.
                if failures == 0 {
                    logger.notice("cannot relay events from member; retrying with backoff", metadata: ["from": "\(member)", "error": "\(error)"])
                }
            }
            failures += 1
            do { try await Task.sleep(for: EventRelayPolicy.backoff(failures: failures)) } catch { return }
        }
    }

    /// Relays the link's events until it closes, goes silent, or the watcher leaves.
    private func pump(_ socket: any ForwardedWebSocket, into mailbox: BoundedMailbox<String>) async -> LinkEnd {
        let timing = self.timing
        return await withTaskGroup(of: LinkEnd.self) { group in
            group.addTask {
                for await frame in socket.frames {
                    guard case .text(let text) = frame else { continue }
                    if !mailbox.offer(text) { return .watcherLeft }
                }
                return .closed
            }
            group.addTask {
                var liveness = LinkLiveness(missedLimit: timing.missedPings, openedAt: socket.lastHeard)
                while true {
                    socket.ping()
                    do { try await Task.sleep(for: timing.pingInterval) } catch { return .closed }
                    if case .dead(let missed) = liveness.tick(lastHeard: socket.lastHeard) { return .dead(missed: missed) }
                }
            }
            let end = await group.next() ?? .closed
            group.cancelAll()
            return end
        }
    }

    /// Opens the member's events websocket, giving up after `timing.deadAfter`: the connection
    /// and TLS handshake have time limits of their own, but the answer to the upgrade does not,
    /// and a member that freezes after the handshake would hold the dial for as long as it is frozen.
    private func dial(_ member: String) async throws -> any ForwardedWebSocket {
        let (forwarder, target) = (self.forwarder, self.target)
        let opening = Task { try await forwarder.openWebSocket(target: target, to: .name(member)) }
        guard let result = await Deadline.first(opening, within: timing.deadAfter) else {
            opening.cancel()
            // It may open later after all: close it then.
            Task { if let late = try? await opening.value { await late.close() } }
            throw APIError.unavailable("Member \(member) did not open its events websocket within \(timing.deadAfter)")
        }
        return try result.get()
    }
}

fileprivate extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The relay's decisions, kept pure.
public enum EventRelayPolicy {
    /// How often a watcher's relay re-reads the member list.
    public static let memberRefresh: Duration = .seconds(2)
    public static let firstRetry: Duration = .milliseconds(100)
    public static let maxRetry: Duration = .seconds(5)

    /// Wait before re-dialling after `failures` consecutive drops or failed dials: doubling from
    /// `firstRetry`, capped at `maxRetry` (a member that comes back is found within 5 s).
    public static func backoff(failures: Int) -> Duration {
        guard failures > 0 else { return .zero }
        let doublings = min(failures - 1, 16)
        return min(firstRetry * (1 << doublings), maxRetry)
    }

    /// The `logging` event telling a watcher that `member`'s events between `from` and `to` may be
    /// missing (the link relaying them was down; nothing is replayed). It is stamped with the
    /// serving member, `location`, and goes to the watcher whatever types it asked for: it is
    /// about the stream itself.
    public static func missedEventsNotice(member: String, from: Date, to: Date, location: String) -> Event {
        let (start, end) = (OperationRegistry.timestamp(from), OperationRegistry.timestamp(to))
        return Event(type: EventType.logging.rawValue, timestamp: end, metadata: .object([
            "message": .string("Events from member \(member) between \(start) and \(end) may have been missed: the link relaying them was down. Re-read the state you need from it."),
            "level": .string("warning"),
            "context": .object(["member": .string(member), "from": .string(start), "to": .string(end)]),
        ]), location: location)
    }

    /// Which relays to start (new members) and stop (members that left).
    public static func plan(running: Set<String>, members: Set<String>) -> (start: [String], stop: [String]) {
        (members.subtracting(running).sorted(), running.subtracting(members).sorted())
    }
}

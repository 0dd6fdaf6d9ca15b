import APITypes
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
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
            await r.streamEvents(request, inbound: inbound, outbound: outbound)
        }
    }

    /// Runs one watcher's stream until the client leaves, a write fails, or the watcher falls
    /// `EventHub.defaultCapacity` events behind (then it gets what was queued and is disconnected).
    func streamEvents(_ request: EventStreamRequest, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        let mailbox = BoundedMailbox<String>(capacity: EventHub.defaultCapacity)
        let local = operations.events.subscribe(types: request.types)
        var log = logger
        log[metadataKey: "events"] = "\(request.types.map(\.rawValue).sorted().joined(separator: ","))"
        let relay: EventRelay? = request.forwarded ? nil : forwarder.map { EventRelay(forwarder: $0, types: request.types, logger: log) }
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
    let forwarded: Bool

    init(_ req: Request) throws {
        types = try Self.types(req.uri.queryParameters.get("type"))
        guard req.headers[HTTPField.Name("Sec-WebSocket-Key")!] != nil else {
            throw EventRefusal(.badRequest("/1.0/events is a websocket: connect with an HTTP upgrade (lxdctl monitor does)"))
        }
        forwarded = req.headers[HTTPField.Name(Forwarding.markerHeader)!] != nil
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
/// per member, re-dialled with backoff when it drops or cannot be opened (a member that is down
/// holds up nobody), and the member list re-read so joining and leaving members are followed.
struct EventRelay: Sendable {
    let forwarder: any MemberForwarder
    let types: Set<EventType>
    let logger: Logger

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

    private func relay(from member: String, into mailbox: BoundedMailbox<String>) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let socket = try await forwarder.openWebSocket(target: target, to: .name(member))
                if failures > 0 { logger.info("event relay from member re-established", metadata: ["from": "\(member)"]) }
                failures = 0
                for await frame in socket.frames {
                    guard case .text(let text) = frame else { continue }
                    if !mailbox.offer(text) { break }
                }
                await socket.close()
                if Task.isCancelled { return }
                logger.debug("event relay from member ended; re-dialling", metadata: ["from": "\(member)"])
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

    /// Which relays to start (new members) and stop (members that left).
    public static func plan(running: Set<String>, members: Set<String>) -> (start: [String], stop: [String]) {
        (members.subtracting(running).sorted(), running.subtracting(members).sorted())
    }
}

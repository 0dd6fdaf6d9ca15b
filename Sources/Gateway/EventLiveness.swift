import Foundation
import NIOCore
import NIOWebSocket
import Synchronization

/// How often an events websocket is pinged and how much silence makes it dead. Both ends use it:
/// the member relaying another member's events, and the member serving a watcher.
public struct EventLinkTiming: Sendable, Equatable {
    /// One ping per interval on every events link.
    public var pingInterval: Duration
    /// Consecutive intervals with no frame at all (message, ping or pong) after which the link is dead.
    public var missedPings: Int

    public init(pingInterval: Duration, missedPings: Int) {
        precondition(pingInterval > .zero && missedPings > 0, "a link needs a ping interval and at least one allowed miss")
        self.pingInterval = pingInterval
        self.missedPings = missedPings
    }

    /// 5 s: a frozen or partitioned member is noticed within 15-20 s, about what re-dialling it
    /// costs anyway (the backoff is capped at 5 s), for a few bytes per link every 5 s.
    /// 3 misses: one late pong (a member busy starting containers on a shared 2-core host, a
    /// long pause of our own process) must not cost a re-dial and a missed-events notice.
    public static let production = EventLinkTiming(pingInterval: .seconds(5), missedPings: 3)

    /// Overrides the ping interval in milliseconds (the integration tests shorten it to see a
    /// frozen member declared dead in seconds; an operator may lengthen it on a slow network).
    public static let intervalVariable = "LXD_SWIFT_EVENTS_PING_MS"

    /// What this process uses: `production`, with the interval of `intervalVariable` if set.
    public static let current = EventLinkTiming(environment: ProcessInfo.processInfo.environment)

    /// `production`, with the interval from `environment[intervalVariable]` when it is a whole
    /// number of milliseconds between 50 and 600000 (anything else is ignored).
    public init(environment: [String: String]) {
        self = .production
        if let text = environment[Self.intervalVariable], let ms = Int(text), (50...600_000).contains(ms) {
            pingInterval = .milliseconds(ms)
        }
    }

    /// The shortest silence that makes a link dead (it is noticed within one more interval).
    public var deadAfter: Duration { pingInterval * missedPings }
}

/// The liveness bookkeeping of one link, kept pure: called once per ping interval with the
/// instant the last frame arrived, it says whether to ping again or to give the link up.
public struct LinkLiveness: Sendable, Equatable {
    public enum Directive: Sendable, Equatable {
        case ping
        /// Nothing arrived during `missed` consecutive intervals.
        case dead(missed: Int)
    }

    public let missedLimit: Int
    /// Consecutive intervals with nothing heard so far.
    public private(set) var missed = 0
    private var lastSeen: ContinuousClock.Instant

    /// `openedAt`: when the link came up (or the last frame heard by then); ping right away.
    public init(missedLimit: Int, openedAt: ContinuousClock.Instant) {
        self.missedLimit = missedLimit
        lastSeen = openedAt
    }

    /// One interval has passed; `lastHeard` is when the latest frame arrived. Any frame counts,
    /// not only our pong: a member busy sending events is alive even if its pong is queued late.
    public mutating func tick(lastHeard: ContinuousClock.Instant) -> Directive {
        if lastHeard > lastSeen {
            missed = 0
            lastSeen = lastHeard
        } else {
            missed += 1
        }
        return missed >= missedLimit ? .dead(missed: missed) : .ping
    }
}

/// When the last websocket frame arrived on a connection this member serves. Hummingbird
/// answers pings and takes pongs inside its own handler, out of the route's sight, so a small
/// handler placed right behind the frame decoder records every arrival.
final class ServedFrameArrivals: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    func mark() { instant.withLock { $0 = .now } }
    var last: ContinuousClock.Instant { instant.withLock { $0 } }

    /// Installs the recorder on an upgraded websocket connection.
    static func install(on channel: any Channel) async throws -> ServedFrameArrivals {
        try await channel.eventLoop.submit {
            let arrivals = ServedFrameArrivals()
            let ops = channel.pipeline.syncOperations
            let decoder = try ops.handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
            try ops.addHandler(FrameArrivalRecorder(arrivals), position: .after(decoder))
            return arrivals
        }.get()
    }
}

/// Passes every inbound frame on, noting the time it arrived.
private final class FrameArrivalRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    let arrivals: ServedFrameArrivals

    init(_ arrivals: ServedFrameArrivals) { self.arrivals = arrivals }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        arrivals.mark()
        context.fireChannelRead(data)
    }
}

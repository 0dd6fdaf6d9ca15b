import APITypes
import Operations

/// Lifecycle events of the instance and image use cases, published on this member's hub (the
/// one its operation registry carries): the member where a thing happens announces it.
extension InstanceContext {
    var events: EventHub { operations.events }

    /// After a create operation's work: `instance-created`, then `instance-started` when it was started too.
    func announceCreated(_ name: String, started: Bool) {
        events.instance(.instanceCreated, name)
        if started { events.instance(.instanceStarted, name) }
    }

    /// After a state change: the action's lifecycle event (`start` → `instance-started`, ...).
    func announceStateChange(_ name: String, action: String, stateful: Bool) {
        switch action {
        case "start": events.instance(.instanceStarted, name)
        case "stop": events.instance(.instanceStopped, name, context: stateful ? ["stateful": .bool(true)] : nil)
        case "restart": events.instance(.instanceRestarted, name)
        default: break
        }
    }
}

extension ImageService {
    var events: EventHub { operations.events }

    func announceImage(_ action: LifecycleAction, fingerprint: String) {
        events.lifecycle(action, source: "/1.0/images/\(fingerprint)", name: fingerprint)
    }

    func announceAlias(_ action: LifecycleAction, name: String) {
        events.lifecycle(action, source: "/1.0/images/aliases/\(name)", name: name)
    }
}

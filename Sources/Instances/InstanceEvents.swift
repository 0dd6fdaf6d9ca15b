import APITypes
import InstanceConfig
import Operations

/// Lifecycle events of the instance and image use cases, published on this member's hub (the
/// one its operation registry carries): the member where a thing happens announces it.
extension InstanceContext {
    var events: EventHub { operations.events }

    /// An instance lifecycle event (`instance-started`, ...), its source the instance's API path
    /// (`/1.0/instances/NAME`, with `?project=P` outside the default project).
    func announce(_ action: LifecycleAction, _ instance: InstanceRef, context: [String: JSONValue]? = nil) {
        events.lifecycle(action, source: instance.apiPath, name: instance.name, context: context)
    }

    /// After a create operation's work: `instance-created`, then `instance-started` when it was started too.
    func announceCreated(_ instance: InstanceRef, started: Bool) {
        announce(.instanceCreated, instance)
        if started { announce(.instanceStarted, instance) }
    }

    /// After a state change: the action's lifecycle event (`start` → `instance-started`, ...).
    func announceStateChange(_ instance: InstanceRef, action: String, stateful: Bool) {
        switch action {
        case "start": announce(.instanceStarted, instance)
        case "stop": announce(.instanceStopped, instance, context: stateful ? ["stateful": .bool(true)] : nil)
        case "restart": announce(.instanceRestarted, instance)
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
